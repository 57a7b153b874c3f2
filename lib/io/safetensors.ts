/**
 * safetensors (the Hugging Face tensor file): an 8-byte little-endian header length, a JSON header
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__: { key: value } }`, then the data buffer.
 *
 * The reader validates the header length against the file and a limit, the JSON, every dtype, shape and offset
 * (in range, ordered, non-overlapping, contiguous, size = elements × item size, no overflow) before it touches
 * the data. quantkit's sub-byte dtypes (int4/uint4) are stored as `U8` bytes of the packed container, with a
 * `__metadata__` entry `quantkit.dtype.<name>` = `{"dtype":"int4","shape":[...]}` recording the logical dtype
 * and shape; the reader restores them and hides those entries from the returned metadata.
 *
 * @example
 * ```ts
 * import { readSafetensors, writeSafetensors } from 'quantkit/io';
 * const bytes = writeSafetensors([['w', tensor([1, 2, 3], [3])]], { format: 'pt' });
 * readSafetensors(bytes).tensors.get('w')!.data; // Float32Array [1, 2, 3]
 * ```
 * @packageDocumentation
 */
import * as fs from 'fs';
import type { DType } from '../dtype';
import { CorruptFileError, InvalidArgumentError, UnsupportedError } from '../errors';
import { Tensor, containerLengthForShape, describe } from '../tensor';
import { writeFileAtomic } from './atomic';
import { checkedByteSize, checkLoadBudget, resolveMaxLoadBytes } from './limits';

/** A Uint8Array (or Buffer) from any realm (jest's vm contexts included). */
function isUint8Array(x: unknown): x is Uint8Array {
  return ArrayBuffer.isView(x) && Object.prototype.toString.call(x) === '[object Uint8Array]';
}

/** Largest header {@link readSafetensors} accepts by default (the Hugging Face reader's limit). */
const DEFAULT_MAX_HEADER = 100_000_000;
const METADATA_PREFIX = 'quantkit.dtype.';

type Ctor = { new (buf: ArrayBufferLike, off: number, len: number): ArrayBufferView & { length: number }; BYTES_PER_ELEMENT: number };

interface StDType {
  /** quantkit dtype the data becomes (after conversion for F64/I64). */
  dtype: DType;
  /** Bytes per element on disk. */
  size: number;
}

const READ_DTYPES: Record<string, StDType> = {
  F32: { dtype: 'float32', size: 4 },
  F16: { dtype: 'float16', size: 2 },
  BF16: { dtype: 'bfloat16', size: 2 },
  I8: { dtype: 'int8', size: 1 },
  U8: { dtype: 'uint8', size: 1 },
  BOOL: { dtype: 'uint8', size: 1 },
  I32: { dtype: 'int32', size: 4 },
  F64: { dtype: 'float32', size: 8 },
  I64: { dtype: 'int32', size: 8 },
  F8_E4M3: { dtype: 'float8_e4m3fn', size: 1 },
  F8_E5M2: { dtype: 'float8_e5m2', size: 1 },
};

const WRITE_DTYPES: Partial<Record<DType, string>> = {
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  int8: 'I8',
  uint8: 'U8',
  int32: 'I32',
  float8_e4m3fn: 'F8_E4M3',
  float8_e5m2: 'F8_E5M2',
  int4: 'U8',
  uint4: 'U8',
};

const CONTAINERS: Record<string, Ctor> = {
  float32: Float32Array as unknown as Ctor,
  float16: Uint16Array as unknown as Ctor,
  bfloat16: Uint16Array as unknown as Ctor,
  int8: Int8Array as unknown as Ctor,
  uint8: Uint8Array as unknown as Ctor,
  int32: Int32Array as unknown as Ctor,
  float8_e4m3fn: Uint8Array as unknown as Ctor,
  float8_e5m2: Uint8Array as unknown as Ctor,
  int4: Int8Array as unknown as Ctor,
  uint4: Uint8Array as unknown as Ctor,
};

/**
 * Reads a safetensors file. Dtypes: F32, F16, BF16, I8, U8, I32, F8_E4M3, F8_E5M2; BOOL reads as uint8; F64
 * reads as float32 (rounded to nearest even) and I64 as int32 (an {@link UnsupportedError} when a value does
 * not fit). Tensors own their data (copied out of `bytes`).
 *
 * @param bytes - the whole file
 * @param options - `source` names the file in errors; `maxHeaderBytes` bounds the JSON header (default 100 MB);
 *   `maxBytes` the memory budget of the tensor data (default {@link getMaxLoadBytes}; exceeding it gives
 *   `QK_OUT_OF_MEMORY` before anything is copied)
 * @throws CorruptFileError for any inconsistency (the message names `source` and the tensor);
 *   UnsupportedError for a dtype quantkit cannot hold (e.g. U16, F8_E8M0).
 * @example
 * ```ts
 * const { metadata, tensors } = readSafetensors(await fs.promises.readFile('model.safetensors'), {
 *   source: 'model.safetensors',
 * });
 * ```
 */
interface StEntry { name: string; st: StDType; stName: string; shape: number[]; begin: number; end: number }

/**
 * Validates the header (the first `8 + n` bytes of `head`) of a safetensors file of `total` bytes.
 * @internal
 */
function parseSafetensorsHeader(
  head: Uint8Array,
  total: number,
  source: string,
  maxHeader: number,
): { metadata: Record<string, string>; entries: StEntry[]; dataStart: number } {
  const fail = (what: string, received: string): never => {
    throw new CorruptFileError(`Expected ${what} in ${source} but received ${received}`);
  };
  if (total < 8 || head.length < 8) fail('an 8-byte header length', `${total} bytes`);
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const n64 = dv.getBigUint64(0, true);
  if (n64 > BigInt(maxHeader)) fail(`a header of at most ${maxHeader} bytes (options.maxHeaderBytes)`, `${n64} bytes`);
  const n = Number(n64);
  if (8 + n > total) fail(`a header of at most ${total - 8} bytes (the file size)`, `${n} bytes`);
  if (n < 2) fail('a JSON object header', `${n} bytes`);
  if (head.length < 8 + n) fail(`${8 + n} header bytes`, `${head.length}`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(head.subarray(8, 8 + n)));
  } catch (err) {
    throw new CorruptFileError(`Expected a UTF-8 JSON header in ${source} but received invalid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) fail('a JSON object header', describe(header));
  const h = header as Record<string, unknown>;

  const metadata: Record<string, string> = {};
  const raw = h.__metadata__;
  if (raw !== undefined) {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('an object of strings for __metadata__', describe(raw));
    for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
      if (typeof v !== 'string') fail(`a string for __metadata__.${k}`, describe(v));
      metadata[k] = v as string;
    }
  }

  const dataStart = 8 + n;
  const dataLen = total - dataStart;
  const entries: StEntry[] = [];
  for (const [name, info] of Object.entries(h)) {
    if (name === '__metadata__') continue;
    const tfail = (what: string, received: string): never => {
      throw new CorruptFileError(`Expected ${what} for tensor ${JSON.stringify(name)} in ${source} but received ${received}`);
    };
    if (info === null || typeof info !== 'object' || Array.isArray(info)) tfail('an object {dtype, shape, data_offsets}', describe(info));
    const { dtype, shape, data_offsets: offs } = info as Record<string, unknown>;
    if (typeof dtype !== 'string') tfail('a string dtype', describe(dtype));
    const st = READ_DTYPES[dtype as string];
    if (!st) {
      throw new UnsupportedError(
        `Expected one of ${Object.keys(READ_DTYPES).join(', ')} for the dtype of tensor ${JSON.stringify(name)} in ${source} but received ${JSON.stringify(dtype)}`,
      );
    }
    if (!Array.isArray(shape)) tfail('an array shape', describe(shape));
    // every dimension an integer in [0, 2^31 - 1] (the native kernels' int32 sizes), the byte size below 2^53
    const count = checkedByteSize(shape as number[], st.size, `tensor ${JSON.stringify(name)}`, source) / st.size;
    if (!Array.isArray(offs) || offs.length !== 2) tfail('data_offsets [begin, end]', describe(offs));
    const [begin, end] = offs as unknown[];
    for (const v of [begin, end]) {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) tfail('non-negative integer data_offsets', describe(v));
    }
    const b = begin as number;
    const e = end as number;
    if (e < b) tfail('data_offsets with begin <= end', `[${b}, ${e}]`);
    if (e > dataLen) tfail(`data_offsets within the ${dataLen}-byte data buffer`, `[${b}, ${e}]`);
    if (e - b !== count * st.size) tfail(`${count * st.size} bytes (${count} × ${st.size}) for shape [${(shape as number[]).join(', ')}]`, `${e - b} bytes`);
    entries.push({ name, st, stName: dtype as string, shape: shape as number[], begin: b, end: e });
  }
  // Offsets must tile the buffer exactly: sorted, no overlap, no hole, nothing left over.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const e of sorted) {
    if (e.begin !== pos) {
      fail(
        `tensor ${JSON.stringify(e.name)} to start at byte ${pos} of the data buffer (offsets contiguous and non-overlapping)`,
        `data_offsets [${e.begin}, ${e.end}]`,
      );
    }
    pos = e.end;
  }
  if (pos !== dataLen) fail(`a ${pos}-byte data buffer (the end of the last tensor)`, `${dataLen} bytes`);

  return { metadata, entries, dataStart };
}

/** One tensor from its (owned, aligned) bytes. */
function entryTensor(e: StEntry, slice: Uint8Array, source: string): Tensor {
  const buf = slice.buffer;
  let t: Tensor;
  if (e.stName === 'F64') {
    const src = new Float64Array(buf, 0, slice.length / 8);
    t = new Tensor('float32', e.shape, Float32Array.from(src));
  } else if (e.stName === 'I64') {
    const src = new BigInt64Array(buf, 0, slice.length / 8);
    const out = new Int32Array(src.length);
    for (let i = 0; i < src.length; i++) {
      const v = src[i];
      if (v < -2147483648n || v > 2147483647n) {
        throw new UnsupportedError(
          `Expected I64 values within the int32 range for tensor ${JSON.stringify(e.name)} in ${source} but received ${v} at index ${i}`,
        );
      }
      out[i] = Number(v);
    }
    t = new Tensor('int32', e.shape, out);
  } else {
    const C = CONTAINERS[e.st.dtype];
    t = new Tensor(e.st.dtype, e.shape, new C(buf, 0, slice.length / C.BYTES_PER_ELEMENT) as never);
  }
  return t;
}

/** Restores sub-byte tensors recorded in the metadata, and hides those records. */
function restoreSubByte(metadata: Record<string, string>, tensors: Map<string, Tensor>, source: string): void {
  // Restore sub-byte tensors recorded in the metadata, and hide those records.
  for (const key of Object.keys(metadata)) {
    if (!key.startsWith(METADATA_PREFIX)) continue;
    const name = key.slice(METADATA_PREFIX.length);
    const mfail = (what: string, received: string): never => {
      throw new CorruptFileError(`Expected ${what} for __metadata__.${key} in ${source} but received ${received}`);
    };
    let rec: unknown;
    try {
      rec = JSON.parse(metadata[key]);
    } catch {
      mfail('JSON {"dtype", "shape"}', JSON.stringify(metadata[key]));
    }
    const { dtype, shape } = (rec ?? {}) as { dtype?: unknown; shape?: unknown };
    if (dtype !== 'int4' && dtype !== 'uint4') mfail('dtype "int4" or "uint4"', describe(dtype));
    if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
      mfail('an array of non-negative integers for shape', describe(shape));
    }
    const stored = tensors.get(name);
    if (!stored) mfail(`a tensor ${JSON.stringify(name)} in the file`, 'none');
    const lshape = shape as number[];
    const need = containerLengthForShape(dtype as DType, lshape);
    if (stored!.dtype !== 'uint8' || stored!.data.length !== need) {
      mfail(`a U8 tensor of ${need} bytes holding ${dtype as string} [${lshape.join(', ')}]`, `${stored!.dtype} ${stored!.toString()}`);
    }
    const d = stored!.data as Uint8Array;
    const data = dtype === 'int4' ? new Int8Array(d.buffer, d.byteOffset, d.length) : d;
    tensors.set(name, new Tensor(dtype as DType, lshape, data as never));
    delete metadata[key];
  }
}

export function readSafetensors(
  bytes: Uint8Array,
  options: { source?: string; maxHeaderBytes?: number; maxBytes?: number } = {},
): { metadata: Record<string, string>; tensors: Map<string, Tensor> } {
  if (!isUint8Array(bytes)) {
    throw new InvalidArgumentError(`Expected a Uint8Array for bytes but received ${describe(bytes)}`);
  }
  const source = options.source ?? 'safetensors file';
  const maxHeader = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER;
  if (typeof maxHeader !== 'number' || !(maxHeader > 0)) {
    throw new InvalidArgumentError(`Expected a positive number for options.maxHeaderBytes but received ${describe(maxHeader)}`);
  }
  const budget = resolveMaxLoadBytes(options.maxBytes);
  const { metadata, entries, dataStart } = parseSafetensorsHeader(bytes, bytes.length, source, maxHeader);
  checkLoadBudget(bytes.length - dataStart, budget, 'the tensor data', source);
  const tensors = new Map<string, Tensor>();
  for (const e of entries) tensors.set(e.name, entryTensor(e, bytes.slice(dataStart + e.begin, dataStart + e.end), source)); // copies: aligned, owned
  restoreSubByte(metadata, tensors, source);
  return { metadata, tensors };
}

/**
 * Reads a safetensors FILE without holding it in memory: the header is read and validated against the file size
 * first, then each tensor is read straight into its own buffer (positional reads, asynchronous). Same checks and
 * results as {@link readSafetensors}.
 * @example
 * ```ts
 * const { tensors, metadata } = await readSafetensorsFile('model.safetensors');
 * ```
 * @throws CorruptFileError for a malformed file, InvalidArgumentError for a missing one.
 */
export async function readSafetensorsFile(
  path: string,
  options: { source?: string; maxHeaderBytes?: number; maxBytes?: number } = {},
): Promise<{ metadata: Record<string, string>; tensors: Map<string, Tensor> }> {
  const source = options.source ?? path;
  const budget = resolveMaxLoadBytes(options.maxBytes);
  const maxHeader = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER;
  if (typeof maxHeader !== 'number' || !(maxHeader > 0)) {
    throw new InvalidArgumentError(`Expected a positive number for options.maxHeaderBytes but received ${describe(maxHeader)}`);
  }
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(path, 'r');
  } catch (err) {
    throw new InvalidArgumentError(`Expected a readable safetensors file but '${path}' could not be opened: ${(err as Error).message}`);
  }
  try {
    const total = (await fh.stat()).size;
    const readAt = async (pos: number, len: number): Promise<Uint8Array> => {
      const out = new Uint8Array(len);
      let got = 0;
      while (got < len) {
        const { bytesRead } = await fh.read(out, got, len - got, pos + got);
        if (bytesRead === 0) throw new CorruptFileError(`${source}: unexpected end of file at byte ${pos + got}`);
        got += bytesRead;
      }
      return out;
    };
    if (total < 8) parseSafetensorsHeader(new Uint8Array(0), total, source, maxHeader);
    const lenBytes = await readAt(0, 8);
    const n64 = new DataView(lenBytes.buffer).getBigUint64(0, true);
    const n = n64 > BigInt(maxHeader) || 8n + n64 > BigInt(total) ? 0 : Number(n64);
    const head = n > 0 ? await readAt(0, 8 + n) : lenBytes;
    const { metadata, entries, dataStart } = parseSafetensorsHeader(head, total, source, maxHeader);
    checkLoadBudget(total - dataStart, budget, 'the tensor data', source);
    const tensors = new Map<string, Tensor>();
    for (const e of entries) tensors.set(e.name, entryTensor(e, await readAt(dataStart + e.begin, e.end - e.begin), source));
    restoreSubByte(metadata, tensors, source);
    return { metadata, tensors };
  } finally {
    await fh.close();
  }
}

/** Validates tensors and metadata and lays out a safetensors file: header bytes and data chunks in file order. */
function layoutSafetensors(
  tensors: Array<[string, Tensor]>,
  metadata: Record<string, string>,
): { head: Uint8Array; chunks: Uint8Array[]; dataBytes: number } {
  if (!Array.isArray(tensors)) throw new InvalidArgumentError(`Expected an array of [name, Tensor] for tensors but received ${describe(tensors)}`);
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) {
    throw new InvalidArgumentError(`Expected an object of strings for metadata but received ${describe(metadata)}`);
  }
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new InvalidArgumentError(`Expected a string for metadata.${k} but received ${describe(v)}`);
    if (k.startsWith(METADATA_PREFIX)) throw new InvalidArgumentError(`Expected a key not starting with "${METADATA_PREFIX}" for metadata but received ${JSON.stringify(k)}`);
    meta[k] = v;
  }
  const seen = new Set<string>();
  const items = tensors.map((pair, i) => {
    if (!Array.isArray(pair) || typeof pair[0] !== 'string' || !(pair[1] instanceof Tensor)) {
      throw new InvalidArgumentError(`Expected a [string, Tensor] pair for tensors[${i}] but received ${describe(pair)}`);
    }
    const [name, t] = pair;
    if (name.length === 0 || name === '__metadata__') throw new InvalidArgumentError(`Expected a non-empty name other than "__metadata__" for tensors[${i}] but received ${JSON.stringify(name)}`);
    if (seen.has(name)) throw new InvalidArgumentError(`Expected a unique name for tensors[${i}] but received a duplicate ${JSON.stringify(name)}`);
    seen.add(name);
    const st = WRITE_DTYPES[t.dtype];
    if (!st) throw new UnsupportedError(`Expected a dtype safetensors can hold for tensors[${i}] but received ${t.dtype}`);
    const packed = t.dtype === 'int4' || t.dtype === 'uint4';
    let shape = [...t.shape];
    if (packed) {
      meta[METADATA_PREFIX + name] = JSON.stringify({ dtype: t.dtype, shape });
      const last = shape.length === 0 ? 1 : shape[shape.length - 1];
      shape = shape.length === 0 ? [1] : [...shape.slice(0, -1), Math.ceil(last / 2)];
    }
    const data = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    return { name, st, shape, data, item: t.data.BYTES_PER_ELEMENT, order: i };
  });
  const layout = [...items].sort((a, b) => b.item - a.item || a.order - b.order);
  const header: Record<string, unknown> = {};
  if (Object.keys(meta).length > 0) header.__metadata__ = meta;
  const offsets = new Map<string, [number, number]>();
  let pos = 0;
  for (const it of layout) {
    offsets.set(it.name, [pos, pos + it.data.length]);
    pos += it.data.length;
  }
  for (const it of items) header[it.name] = { dtype: it.st, shape: it.shape, data_offsets: offsets.get(it.name) };
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const head = new Uint8Array(8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(json.length), true);
  head.set(json, 8);
  return { head, chunks: layout.map((it) => it.data), dataBytes: pos };
}

/**
 * Writes a safetensors file. Dtypes: float32 → F32, float16 → F16, bfloat16 → BF16, int8 → I8, uint8 → U8,
 * int32 → I32, float8_e4m3fn → F8_E4M3, float8_e5m2 → F8_E5M2; int4/uint4 → U8 packed bytes plus a
 * `quantkit.dtype.<name>` metadata record of the logical dtype and shape. Tensors are laid out by decreasing
 * item size (then in the given order), so every tensor's data is aligned to its item size; the header is padded
 * with spaces to a multiple of 8 bytes.
 * @throws InvalidArgumentError for bad names, non-string metadata or a non-Tensor value.
 * @example
 * ```ts
 * const bytes = writeSafetensors([['layer.kernel', q], ['layer.scale', s]], { format: 'pt' });
 * ```
 */
export function writeSafetensors(tensors: Array<[string, Tensor]>, metadata: Record<string, string> = {}): Uint8Array {
  const { head, chunks, dataBytes } = layoutSafetensors(tensors, metadata);
  const out = new Uint8Array(head.length + dataBytes);
  out.set(head, 0);
  let off = head.length;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/**
 * Writes a safetensors FILE tensor by tensor (no in-memory copy of the whole file), atomically: the data goes to
 * a temporary file in the same folder that is renamed over `path` only when complete.
 * @example
 * ```ts
 * await writeSafetensorsFile('model.safetensors', [['w', tensor([1, 2, 3], [3])]], { format: 'pt' });
 * ```
 */
export async function writeSafetensorsFile(path: string, tensors: Array<[string, Tensor]>, metadata: Record<string, string> = {}): Promise<void> {
  const { head, chunks } = layoutSafetensors(tensors, metadata);
  await writeFileAtomic(path, [head, ...chunks]);
}
