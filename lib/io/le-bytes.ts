/**
 * Little-endian helpers shared by the checkpoint readers (llama2.c, GGUF, tokenizer files): typed copies out of a
 * byte buffer whatever its alignment and the host's byte order, and exact positioned reads from a file handle.
 * @internal
 * @packageDocumentation
 */
import * as fs from 'node:fs';
import { CorruptFileError, InvalidArgumentError } from '../errors';
import { describe } from '../tensor';

/** True on little-endian hosts (every platform Node ships for today). */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A Uint8Array (or Buffer) from any realm (jest's vm contexts included). */
export function isBytes(x: unknown): x is Uint8Array {
  return ArrayBuffer.isView(x) && Object.prototype.toString.call(x) === '[object Uint8Array]';
}

/** Throws InvalidArgumentError unless `bytes` is a Uint8Array. */
export function checkBytes(bytes: unknown, name = 'bytes'): Uint8Array {
  if (!isBytes(bytes)) throw new InvalidArgumentError(`Expected a Uint8Array for ${name} but received ${describe(bytes)}`);
  return bytes;
}

/** Throws InvalidArgumentError unless `path` is a non-empty string. */
export function checkPath(path: unknown, name = 'path'): string {
  if (typeof path !== 'string' || path.length === 0) throw new InvalidArgumentError(`Expected a file path string for ${name} but received ${describe(path)}`);
  return path;
}

/** Swaps each `size`-byte group in place (host big-endian only). */
function swapInPlace(b: Uint8Array, size: number): void {
  for (let i = 0; i + size <= b.length; i += size) {
    for (let a = i, z = i + size - 1; a < z; a++, z--) {
      const t = b[a];
      b[a] = b[z];
      b[z] = t;
    }
  }
}

/** Converts freshly read little-endian bytes (owned by the caller) to host order in place. */
export function leToHost(b: Uint8Array, itemSize: number): void {
  if (!HOST_LITTLE_ENDIAN && itemSize > 1) swapInPlace(b, itemSize);
}

type TypedCtor<T> = { new (buffer: ArrayBuffer, byteOffset?: number, length?: number): T; BYTES_PER_ELEMENT: number };

/** A host-order typed copy of `count` little-endian items at `offset` (any alignment). The caller checked bounds. */
export function copyLE<T>(Ctor: TypedCtor<T>, bytes: Uint8Array, offset: number, count: number): T {
  const n = count * Ctor.BYTES_PER_ELEMENT;
  const copy = bytes.slice(offset, offset + n);
  leToHost(copy, Ctor.BYTES_PER_ELEMENT);
  return new Ctor(copy.buffer as ArrayBuffer, 0, count);
}

/**
 * Fills `target` from `fh` starting at file `position`, looping over short reads.
 * @throws CorruptFileError when the file ends first (it changed since it was measured).
 */
export async function readExactly(fh: fs.promises.FileHandle, target: Uint8Array, position: number, source: string): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const { bytesRead } = await fh.read(target, done, target.length - done, position + done);
    if (bytesRead === 0) {
      throw new CorruptFileError(`Expected ${target.length} bytes at offset ${position} in ${source} but received ${done} (the file ended early)`);
    }
    done += bytesRead;
  }
}

/**
 * Opens a file for reading and returns its handle and size; the caller closes the handle.
 */
export async function openForRead(path: string): Promise<{ fh: fs.promises.FileHandle; size: number }> {
  const fh = await fs.promises.open(path, 'r');
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new InvalidArgumentError(`Expected a regular file for path but received ${JSON.stringify(path)}`);
    return { fh, size: st.size };
  } catch (err) {
    await fh.close();
    throw err;
  }
}
