/**
 * Crash-safe file replacement: write a temporary file next to the target, flush it to disk, then rename it
 * over the target. Readers see either the old file or the complete new one, never a partial file.
 *
 * @example
 * ```ts
 * import { writeFileAtomic } from 'quantkit/io';
 * await writeFileAtomic('model.keras', bytes);
 * ```
 * @packageDocumentation
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { InvalidArgumentError } from '../errors';
import { describe } from '../tensor';

/** A Uint8Array (or Buffer) from any realm (jest's vm contexts included). */
function isUint8Array(x: unknown): x is Uint8Array {
  return ArrayBuffer.isView(x) && Object.prototype.toString.call(x) === '[object Uint8Array]';
}

/**
 * Writes `bytes` to `file` atomically: a temporary file in the same directory (so the rename stays on one file
 * system) is written, fsync'ed and renamed over `file`; the directory is then fsync'ed where the platform allows
 * it. An existing target keeps its permission bits. If anything fails, the temporary file is removed, the old
 * file is left untouched, and the file-system error (with its `code`, e.g. `ENOSPC`) is rethrown.
 *
 * @param file - destination path
 * @param bytes - the complete new contents
 * @throws InvalidArgumentError for a non-string path or non-Uint8Array bytes; the underlying Node.js error for
 *   I/O failures.
 * @example
 * ```ts
 * await writeFileAtomic('/models/tiny.safetensors', writeSafetensors(tensors));
 * ```
 */
export async function writeFileAtomic(file: string, bytes: Uint8Array): Promise<void> {
  if (typeof file !== 'string' || file.length === 0) {
    throw new InvalidArgumentError(`Expected a non-empty string for path but received ${describe(file)}`);
  }
  if (!isUint8Array(bytes)) {
    throw new InvalidArgumentError(`Expected a Uint8Array for bytes but received ${describe(bytes)}`);
  }
  const target = path.resolve(file);
  const dir = path.dirname(target);
  const tmp = path.join(dir, `.${path.basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let keepMode: number | undefined;
  try {
    keepMode = (await fsp.stat(target)).mode & 0o7777;
  } catch {
    // no existing file: default mode (the umask applies)
  }
  let handle: Awaited<ReturnType<typeof fsp.open>> | undefined;
  try {
    handle = await fsp.open(tmp, 'wx', 0o666);
    if (keepMode !== undefined) await handle.chmod(keepMode);
    let off = 0;
    while (off < bytes.length) {
      const { bytesWritten } = await handle.write(bytes, off, bytes.length - off, off);
      if (bytesWritten <= 0) throw new Error(`write to ${tmp} made no progress`);
      off += bytesWritten;
    }
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fsp.rename(tmp, target);
  } catch (err) {
    if (handle) await handle.close().catch(() => undefined);
    await fsp.unlink(tmp).catch(() => undefined);
    throw err;
  }
  // Make the rename itself durable (not supported on every platform, e.g. Windows).
  try {
    const d = await fsp.open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    // best effort
  }
}
