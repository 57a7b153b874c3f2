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

/** The temporary name {@link writeFileAtomic} uses for `target`: `.<name>.<pid>.<12 hex>.tmp` next to it. */
function tempName(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes temporary files that an interrupted {@link writeFileAtomic} (a process killed mid-write, a power cut)
 * left next to `file`: names `.<basename>.<pid>.<12 hex>.tmp` whose process no longer exists. Temporary files of
 * live processes (a save in progress elsewhere) are kept. Every atomic write calls this for its target first, so
 * stale files disappear with the next save of the same path; call it yourself to clean up without saving.
 *
 * @param file - the target path whose stale temporary files to remove
 * @returns the paths removed
 * @example
 * ```ts
 * await cleanStaleTempFiles('models/int8.keras'); // e.g. ['models/.int8.keras.4242.a1b2c3d4e5f6.tmp']
 * ```
 */
export async function cleanStaleTempFiles(file: string): Promise<string[]> {
  if (typeof file !== 'string' || file.length === 0) {
    throw new InvalidArgumentError(`Expected a non-empty string for file but received ${describe(file)}`);
  }
  const target = path.resolve(file);
  const dir = path.dirname(target);
  const base = path.basename(target);
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return [];
  }
  const prefix = `.${base}.`;
  const removed: string[] = [];
  for (const n of names) {
    if (!n.startsWith(prefix) || !n.endsWith('.tmp')) continue;
    const m = /^(\d+)\.[0-9a-f]{12}\.tmp$/.exec(n.slice(prefix.length));
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || isAlive(pid)) continue;
    try {
      await fsp.unlink(path.join(dir, n));
      removed.push(path.join(dir, n));
    } catch {
      // gone already or not ours to remove
    }
  }
  return removed;
}

/**
 * Writes `bytes` to `file` atomically: a temporary file in the same directory (so the rename stays on one file
 * system) is written, fsync'ed and renamed over `file`; the directory is then fsync'ed where the platform allows
 * it. An existing target keeps its permission bits. If anything fails, the temporary file is removed, the old
 * file is left untouched, and the file-system error (with its `code`, e.g. `ENOSPC`) is rethrown. If the process
 * dies mid-write the target is untouched and the temporary file (`.<name>.<pid>.<hex>.tmp`) stays until the next
 * atomic write of the same target or {@link cleanStaleTempFiles} removes it.
 *
 * @param file - destination path
 * @param bytes - the complete new contents, or a list of chunks written one after the other (no concatenated copy)
 * @throws InvalidArgumentError for a non-string path or non-Uint8Array bytes; the underlying Node.js error for
 *   I/O failures.
 * @example
 * ```ts
 * await writeFileAtomic('/models/tiny.safetensors', writeSafetensors(tensors));
 * await writeFileAtomic('/models/big.bin', [header, body]);
 * ```
 */
export async function writeFileAtomic(file: string, bytes: Uint8Array | readonly Uint8Array[]): Promise<void> {
  if (typeof file !== 'string' || file.length === 0) {
    throw new InvalidArgumentError(`Expected a non-empty string for path but received ${describe(file)}`);
  }
  const chunks = isUint8Array(bytes) ? [bytes] : Array.isArray(bytes) && bytes.every(isUint8Array) ? (bytes as Uint8Array[]) : null;
  if (!chunks) {
    throw new InvalidArgumentError(`Expected a Uint8Array or an array of them for bytes but received ${describe(bytes)}`);
  }
  const target = path.resolve(file);
  const dir = path.dirname(target);
  await cleanStaleTempFiles(target).catch(() => undefined);
  const tmp = tempName(target);
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
    let pos = 0;
    for (const c of chunks) {
      let off = 0;
      while (off < c.length) {
        const { bytesWritten } = await handle.write(c, off, c.length - off, pos);
        if (bytesWritten <= 0) throw new Error(`write to ${tmp} made no progress`);
        off += bytesWritten;
        pos += bytesWritten;
      }
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
