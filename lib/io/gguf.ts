/**
 * GGUF (llama.cpp's model file, versions 2 and 3, little-endian): the header, every metadata value type
 * (integers, floats, bools, strings, arrays, nested arrays), tensor infos, alignment and data offsets; F32, F16
 * and BF16 tensors become float32 {@link Tensor}s, I8/I32 become int8/int32; quantized ggml types (Q4_0, Q8_0,
 * Q4_K, IQ2_XS, …) are recognised (their sizes are validated) but refused when read, with an
 * {@link UnsupportedError} naming the tensor and the type.
 *
 * Layout: `"GGUF"`, uint32 version, uint64 tensor_count, uint64 kv_count; kv_count × (string key, uint32 value
 * type, value); tensor_count × (string name, uint32 n_dims, n_dims × uint64 ne (ne[0] innermost), uint32 ggml
 * type, uint64 offset); padding to `general.alignment` (default 32); the data section, where every tensor's offset
 * is relative to the section start and a multiple of the alignment. A string is a uint64 byte length and UTF-8
 * bytes; an array is a uint32 item type, a uint64 count and the items.
 *
 * Every count and length is checked against the bytes that remain before anything is allocated (a string
 * length, an array count × its smallest item size, the number of keys and tensors), duplicate keys and tensor
 * names are refused, and every tensor's byte range must lie inside the data section, be aligned and not overlap
 * another. Problems are {@link CorruptFileError}s naming the file, what was expected and what was found.
 *
 * Shapes: ggml lists dimensions innermost first (`ne[0]` = row length), so a ggml `[in, out]` tensor is the
 * row-major `[out, in]` array: {@link GgufTensorInfo.shape} is `ne` reversed, and the bytes need no transpose.
 *
 * @example
 * ```ts
 * import { readGgufFile } from 'quantkit';
 * const gguf = await readGgufFile('stories260K.gguf');
 * gguf.metadata.get('general.architecture')!.value; // 'llama'
 * gguf.tensors.get('blk.0.attn_k.weight')!.shape; // [32, 64]
 * ```
 * @packageDocumentation
 */
import { CorruptFileError, InvalidArgumentError, UnsupportedError } from '../errors';
import { describe, Tensor } from '../tensor';
import { checkBytes, checkPath, copyLE, leToHost, openForRead, readExactly } from './le-bytes';
import { checkedByteSize, checkLoadBudget, resolveMaxLoadBytes } from './limits';

/** "GGUF" as a little-endian uint32. */
const GGUF_MAGIC = 0x46554747;
const DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_DIMS. */
const MAX_DIMS = 4;
/** Deepest array nesting accepted (real files use none). */
const MAX_ARRAY_DEPTH = 8;

/**
 * GGUF metadata value types, by their on-disk number.
 * @example
 * ```ts
 * GGUF_VALUE_TYPES[8]; // 'string'
 * ```
 */
export const GGUF_VALUE_TYPES = Object.freeze([
  'uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'float32', 'bool', 'string', 'array', 'uint64', 'int64', 'float64',
] as const);

/**
 * A GGUF metadata value type name.
 * @example
 * ```ts
 * const t: GgufValueType = gguf.metadata.get('llama.block_count')!.type; // 'uint32'
 * ```
 */
export type GgufValueType = (typeof GGUF_VALUE_TYPES)[number];

/**
 * A metadata value: numbers for 8–32-bit integers and floats, bigint for 64-bit integers, booleans, strings, and
 * arrays (a TypedArray for numeric items, `boolean[]`, `string[]`, or `GgufValue[]` for nested arrays).
 * @example
 * ```ts
 * const scores = gguf.metadata.get('tokenizer.ggml.scores')!.value as Float32Array;
 * ```
 */
export type GgufValue =
  | number
  | bigint
  | boolean
  | string
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array
  | boolean[]
  | string[]
  | GgufValue[];

/**
 * One metadata entry.
 * @example
 * ```ts
 * const e: GgufMetadataEntry = gguf.metadata.get('tokenizer.ggml.tokens')!;
 * e.type; // 'array'
 * e.itemType; // 'string'
 * ```
 */
export interface GgufMetadataEntry {
  /** The value's type. */
  type: GgufValueType;
  /** For arrays: the items' type. */
  itemType?: GgufValueType;
  /** The value. */
  value: GgufValue;
}

interface GgmlTypeInfo {
  name: string;
  /** Elements per block. */
  block: number;
  /** Bytes per block. */
  bytes: number;
}

/** ggml tensor types by id (ids 4, 5, 31–33 and 36–38 were removed from ggml and are not valid). */
const GGML_TYPES: Record<number, GgmlTypeInfo> = {
  0: { name: 'F32', block: 1, bytes: 4 },
  1: { name: 'F16', block: 1, bytes: 2 },
  2: { name: 'Q4_0', block: 32, bytes: 18 },
  3: { name: 'Q4_1', block: 32, bytes: 20 },
  6: { name: 'Q5_0', block: 32, bytes: 22 },
  7: { name: 'Q5_1', block: 32, bytes: 24 },
  8: { name: 'Q8_0', block: 32, bytes: 34 },
  9: { name: 'Q8_1', block: 32, bytes: 36 },
  10: { name: 'Q2_K', block: 256, bytes: 84 },
  11: { name: 'Q3_K', block: 256, bytes: 110 },
  12: { name: 'Q4_K', block: 256, bytes: 144 },
  13: { name: 'Q5_K', block: 256, bytes: 176 },
  14: { name: 'Q6_K', block: 256, bytes: 210 },
  15: { name: 'Q8_K', block: 256, bytes: 292 },
  16: { name: 'IQ2_XXS', block: 256, bytes: 66 },
  17: { name: 'IQ2_XS', block: 256, bytes: 74 },
  18: { name: 'IQ3_XXS', block: 256, bytes: 98 },
  19: { name: 'IQ1_S', block: 256, bytes: 50 },
  20: { name: 'IQ4_NL', block: 32, bytes: 18 },
  21: { name: 'IQ3_S', block: 256, bytes: 110 },
  22: { name: 'IQ2_S', block: 256, bytes: 82 },
  23: { name: 'IQ4_XS', block: 256, bytes: 136 },
  24: { name: 'I8', block: 1, bytes: 1 },
  25: { name: 'I16', block: 1, bytes: 2 },
  26: { name: 'I32', block: 1, bytes: 4 },
  27: { name: 'I64', block: 1, bytes: 8 },
  28: { name: 'F64', block: 1, bytes: 8 },
  29: { name: 'IQ1_M', block: 256, bytes: 56 },
  30: { name: 'BF16', block: 1, bytes: 2 },
  34: { name: 'TQ1_0', block: 256, bytes: 54 },
  35: { name: 'TQ2_0', block: 256, bytes: 66 },
  39: { name: 'MXFP4', block: 32, bytes: 17 },
};

/**
 * One tensor's description from the GGUF header.
 * @example
 * ```ts
 * const info = gguf.tensorInfos.find((t) => t.name === 'token_embd.weight')!;
 * info.dims; // [64, 512] (ggml order)
 * info.shape; // [512, 64] (row-major)
 * ```
 */
export interface GgufTensorInfo {
  /** Tensor name. */
  name: string;
  /** ggml type name (`'F32'`, `'F16'`, `'Q4_0'`, …). */
  type: string;
  /** ggml type id. */
  typeId: number;
  /** ggml `ne`: dimensions innermost first. */
  dims: number[];
  /** Row-major shape (`dims` reversed). */
  shape: number[];
  /** Absolute byte offset of the data in the file. */
  offset: number;
  /** Bytes of data. */
  byteLength: number;
}

/**
 * A parsed GGUF header (everything but the tensor data).
 * @example
 * ```ts
 * const h = parseGgufHeader(bytes);
 * h.version; h.alignment; h.dataOffset; h.tensorInfos.length;
 * ```
 */
export interface GgufHeader {
  /** Format version (2 or 3). */
  version: number;
  /** Metadata in file order. */
  metadata: Map<string, GgufMetadataEntry>;
  /** Tensor descriptions in file order. */
  tensorInfos: GgufTensorInfo[];
  /** `general.alignment` (default 32). */
  alignment: number;
  /** Absolute offset of the data section. */
  dataOffset: number;
  /** Size of the file the header was validated against. */
  fileSize: number;
}

/**
 * A GGUF file: the header plus the tensors that were read.
 * @example
 * ```ts
 * const { metadata, tensors } = readGguf(bytes, { source: 'model.gguf' });
 * ```
 */
export interface GgufFile extends GgufHeader {
  /** Tensors by name: float32 for F32/F16/BF16/F64, int8 for I8, int32 for I32. */
  tensors: Map<string, Tensor>;
}

/**
 * Options of the GGUF readers.
 * @example
 * ```ts
 * await readGgufFile('model.gguf', { names: ['token_embd.weight'] });
 * ```
 */
export interface GgufReadOptions {
  /** Names the file in error messages (default the path, or "GGUF file"). */
  source?: string;
  /** Read only these tensors (default all); unknown names are an InvalidArgumentError. */
  names?: readonly string[];
  /**
   * Memory budget in bytes for the header and the tensors as returned (F16/BF16 become float32: twice their file
   * size). Default `getMaxLoadBytes()`; exceeding it gives `QK_OUT_OF_MEMORY` before anything is allocated.
   */
  maxBytes?: number;
}

/** Bytes {@link readGguf} allocates for `infos`: the raw bytes plus the float32 copy of F16/BF16/F64 tensors. */
function loadBytes(infos: readonly GgufTensorInfo[]): number {
  let n = 0;
  for (const t of infos) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    n += t.byteLength + (t.type === 'F16' || t.type === 'BF16' || t.type === 'F64' ? count * 4 : 0);
  }
  return n;
}

/** Thrown by the parser when the header continues past the bytes read so far (files only). */
class NeedMore {
  constructor(readonly end: number) {}
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const looseUtf8 = new TextDecoder('utf-8', { ignoreBOM: true });

/** An error-message label, built only when an error is reported. */
type Label = string | (() => string);
const lbl = (l: Label): string => (typeof l === 'string' ? l : l());

class Cursor {
  pos = 0;
  private readonly dv: DataView;
  constructor(
    private readonly buf: Uint8Array,
    readonly fileSize: number,
    readonly source: string,
  ) {
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  fail(what: Label, received: string): never {
    what = lbl(what);
    throw new CorruptFileError(`Expected ${what} in ${this.source} but received ${received}`);
  }

  /** Ensures `n` more bytes exist (else the file is truncated) and have been read (else NeedMore). */
  need(n: number, what: Label): void {
    const end = this.pos + n;
    if (!Number.isSafeInteger(end) || end > this.fileSize) this.fail(`${lbl(what)} (${n} bytes at offset ${this.pos})`, `${Math.max(0, this.fileSize - this.pos)} bytes left in a ${this.fileSize}-byte file`);
    if (end > this.buf.length) throw new NeedMore(end);
  }

  remaining(): number {
    return this.fileSize - this.pos;
  }

  u8(what: Label): number {
    this.need(1, what);
    return this.dv.getUint8(this.pos++);
  }
  u32(what: Label): number {
    this.need(4, what);
    const v = this.dv.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  /** A uint64 that must be a safe integer (counts, lengths, dims, offsets). */
  u64(what: Label): number {
    this.need(8, what);
    const v = this.dv.getBigUint64(this.pos, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${lbl(what)} below 2^53 at offset ${this.pos}`, `${v}`);
    this.pos += 8;
    return Number(v);
  }

  string(what: Label, strict: boolean): string {
    const at = this.pos;
    const len = this.u64(() => `the byte length of ${lbl(what)}`);
    if (len > this.remaining()) this.fail(`a length of at most ${this.remaining()} (the bytes left) for ${lbl(what)} at offset ${at}`, `${len}`);
    this.need(len, what);
    const bytes = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    // Fast path for short ASCII strings (vocabularies are mostly that).
    if (len <= 32) {
      let ascii = true;
      for (let i = 0; i < len; i++) if (bytes[i] >= 0x80) ascii = false;
      if (ascii) return String.fromCharCode.apply(null, bytes as unknown as number[]);
    }
    if (!strict) return looseUtf8.decode(bytes);
    try {
      return strictUtf8.decode(bytes);
    } catch {
      return this.fail(`UTF-8 text for ${lbl(what)} at offset ${at}`, 'invalid UTF-8');
    }
  }

  /** Little-endian typed items (copied). */
  typed<T>(Ctor: { new (b: ArrayBuffer, o?: number, l?: number): T; BYTES_PER_ELEMENT: number }, count: number, what: Label): T {
    this.need(count * Ctor.BYTES_PER_ELEMENT, what);
    const out = copyLE(Ctor, this.buf, this.pos, count);
    this.pos += count * Ctor.BYTES_PER_ELEMENT;
    return out;
  }

  scalar(type: number, what: Label): GgufValue {
    this.need(SCALAR_SIZE[type], what);
    const p = this.pos;
    const dv = this.dv;
    this.pos += SCALAR_SIZE[type];
    switch (type) {
      case 0: return dv.getUint8(p);
      case 1: return dv.getInt8(p);
      case 2: return dv.getUint16(p, true);
      case 3: return dv.getInt16(p, true);
      case 4: return dv.getUint32(p, true);
      case 5: return dv.getInt32(p, true);
      case 6: return dv.getFloat32(p, true);
      case 7: {
        const b = dv.getUint8(p);
        if (b > 1) this.fail(`a bool of 0 or 1 for ${lbl(what)} at offset ${p}`, `${b}`);
        return b === 1;
      }
      case 10: return dv.getBigUint64(p, true);
      case 11: return dv.getBigInt64(p, true);
      case 12: return dv.getFloat64(p, true);
      default: return this.fail(`a scalar value type for ${lbl(what)}`, `${type}`);
    }
  }

  value(type: number, what: Label, depth: number): { value: GgufValue; itemType?: GgufValueType } {
    if (type === 8) return { value: this.string(what, false) };
    if (type !== 9) return { value: this.scalar(type, what) };
    if (depth >= MAX_ARRAY_DEPTH) this.fail(`arrays nested at most ${MAX_ARRAY_DEPTH} deep for ${lbl(what)}`, 'deeper nesting');
    const at = this.pos;
    const itemType = this.u32(() => `the item type of array ${lbl(what)}`);
    if (itemType >= GGUF_VALUE_TYPES.length) this.fail(`a GGUF value type in [0, ${GGUF_VALUE_TYPES.length - 1}] for the items of ${lbl(what)} at offset ${at}`, `${itemType}`);
    const count = this.u64(() => `the item count of array ${lbl(what)}`);
    const minItem = itemType === 8 ? 8 : itemType === 9 ? 12 : SCALAR_SIZE[itemType];
    if (count * minItem > this.remaining()) {
      this.fail(`an item count of at most ${Math.floor(this.remaining() / minItem)} (the bytes left / ${minItem}) for array ${lbl(what)} at offset ${at}`, `${count}`);
    }
    const name = GGUF_VALUE_TYPES[itemType];
    const ctor = TYPED_ITEMS[itemType];
    if (ctor) return { value: this.typed(ctor as never, count, what) as GgufValue, itemType: name };
    if (itemType === 7) {
      const out: boolean[] = new Array(count);
      for (let i = 0; i < count; i++) out[i] = this.scalar(7, () => `${lbl(what)}[${i}]`) as boolean;
      return { value: out, itemType: name };
    }
    if (itemType === 8) {
      const out: string[] = new Array(count);
      for (let i = 0; i < count; i++) out[i] = this.string(() => `${lbl(what)}[${i}]`, false);
      return { value: out, itemType: name };
    }
    // Items of an array of arrays are arrays without a type tag of their own: item type, count, items.
    const out: GgufValue[] = new Array(count);
    for (let i = 0; i < count; i++) out[i] = this.value(9, () => `${lbl(what)}[${i}]`, depth + 1).value;
    return { value: out, itemType: name };
  }
}

/** Byte size of each scalar type (0 for string/array). */
const SCALAR_SIZE = [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8];
const TYPED_ITEMS: Array<unknown> = [
  Uint8Array, Int8Array, Uint16Array, Int16Array, Uint32Array, Int32Array, Float32Array, null, null, null, BigUint64Array, BigInt64Array, Float64Array,
];

function parseHeader(buf: Uint8Array, fileSize: number, source: string): GgufHeader {
  const c = new Cursor(buf, fileSize, source);
  const magic = c.u32('the GGUF magic');
  if (magic !== GGUF_MAGIC) {
    c.fail('the magic "GGUF"', JSON.stringify(String.fromCharCode(magic & 0xff, (magic >> 8) & 0xff, (magic >> 16) & 0xff, magic >>> 24)));
  }
  const version = c.u32('the GGUF version');
  if (version === 1) throw new UnsupportedError(`Expected GGUF version 2 or 3 in ${source} but received version 1 (32-bit counts; re-convert the file with a current llama.cpp)`);
  if ((version & 0xffff) === 0 && version !== 0) {
    throw new UnsupportedError(`Expected a little-endian GGUF file in ${source} but received a big-endian one (version bytes ${version.toString(16)})`);
  }
  if (version !== 2 && version !== 3) c.fail('GGUF version 2 or 3', `${version}`);
  const tensorCount = c.u64('the tensor count');
  const kvCount = c.u64('the metadata key/value count');
  // Smallest possible entries: a key/value is >= 8 + 4 + 1 bytes, a tensor info >= 8 + 4 + 4 + 8 bytes.
  if (kvCount * 13 > c.remaining()) c.fail(`a metadata count of at most ${Math.floor(c.remaining() / 13)} (the bytes left / 13)`, `${kvCount}`);
  if (tensorCount * 24 > c.remaining()) c.fail(`a tensor count of at most ${Math.floor(c.remaining() / 24)} (the bytes left / 24)`, `${tensorCount}`);

  const metadata = new Map<string, GgufMetadataEntry>();
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`metadata key ${i}`, true);
    if (metadata.has(key)) c.fail(`unique metadata keys`, `a second ${JSON.stringify(key)}`);
    const at = c.pos;
    const type = c.u32(`the value type of ${key}`);
    if (type >= GGUF_VALUE_TYPES.length) c.fail(`a GGUF value type in [0, ${GGUF_VALUE_TYPES.length - 1}] for ${JSON.stringify(key)} at offset ${at}`, `${type}`);
    const { value, itemType } = c.value(type, JSON.stringify(key), 0);
    metadata.set(key, itemType ? { type: GGUF_VALUE_TYPES[type], itemType, value } : { type: GGUF_VALUE_TYPES[type], value });
  }

  let alignment = DEFAULT_ALIGNMENT;
  const al = metadata.get('general.alignment');
  if (al !== undefined) {
    const v = al.value;
    if (al.type !== 'uint32' || typeof v !== 'number' || v === 0 || (v & (v - 1)) !== 0) {
      c.fail('a uint32 power of two for general.alignment', `${al.type} ${describe(v)}`);
    }
    alignment = v as number;
  }

  const raw: Array<Omit<GgufTensorInfo, 'offset'> & { rel: number }> = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string(`the name of tensor ${i}`, true);
    const what = `tensor ${JSON.stringify(name)}`;
    if (names.has(name)) c.fail('unique tensor names', `a second ${what}`);
    names.add(name);
    const nDims = c.u32(`the dimension count of ${what}`);
    if (nDims > MAX_DIMS) c.fail(`at most ${MAX_DIMS} dimensions for ${what}`, `${nDims}`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(c.u64(`dimension ${d} of ${what}`));
    const typeId = c.u32(`the ggml type of ${what}`);
    const t = GGML_TYPES[typeId];
    if (!t) c.fail(`a known ggml type id for ${what}`, `${typeId}`);
    const rel = c.u64(`the data offset of ${what}`);
    // every dimension in [0, 2^31 - 1] (the native kernels' int32 sizes), the element count below 2^53
    const count = checkedByteSize(dims, 1, what, source);
    const rowLen = dims.length > 0 ? dims[0] : 1;
    if (rowLen % t.block !== 0) c.fail(`a row length that is a multiple of ${t.block} (the ${t.name} block) for ${what}`, `${rowLen}`);
    const byteLength = (count / t.block) * t.bytes;
    if (!Number.isSafeInteger(byteLength)) c.fail(`a byte size below 2^53 for ${what}`, `dims [${dims.join(', ')}] of ${t.name}`);
    if (rel % alignment !== 0) c.fail(`a data offset that is a multiple of the alignment ${alignment} for ${what}`, `${rel}`);
    raw.push({ name, type: t.name, typeId, dims, shape: [...dims].reverse(), rel, byteLength });
  }
  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  if (tensorCount > 0 && dataOffset > fileSize) c.fail(`a data section starting at offset ${dataOffset} inside the file`, `a ${fileSize}-byte file`);
  const dataLen = fileSize - dataOffset;
  for (const r of raw) {
    if (r.rel + r.byteLength > dataLen) {
      c.fail(`tensor ${JSON.stringify(r.name)} (${r.byteLength} bytes at data offset ${r.rel}) inside the ${dataLen}-byte data section`, `an end at ${r.rel + r.byteLength}`);
    }
  }
  const sorted = [...raw].sort((a, b) => a.rel - b.rel);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1];
    const b = sorted[i];
    if (a.byteLength > 0 && b.byteLength > 0 && b.rel < a.rel + a.byteLength) {
      c.fail(`non-overlapping tensor data`, `${JSON.stringify(a.name)} [${a.rel}, ${a.rel + a.byteLength}) overlapping ${JSON.stringify(b.name)} at ${b.rel}`);
    }
  }
  const tensorInfos: GgufTensorInfo[] = raw.map(({ rel, ...r }) => ({ ...r, offset: dataOffset + rel }));
  return { version, metadata, tensorInfos, alignment, dataOffset, fileSize };
}

/**
 * Parses and validates a GGUF header (metadata and tensor infos; no tensor data is read or needed beyond what the
 * header itself occupies).
 *
 * @param bytes - the file, or at least its header when `options.fileSize` gives the full size
 * @param options - `source` names the file in errors; `fileSize` when `bytes` is only a prefix
 * @throws CorruptFileError for any inconsistency; UnsupportedError for GGUF v1 and big-endian files.
 * @example
 * ```ts
 * const h = parseGgufHeader(bytes);
 * h.tensorInfos.map((t) => `${t.name} ${t.type} [${t.shape}]`);
 * ```
 */
export function parseGgufHeader(bytes: Uint8Array, options: { source?: string; fileSize?: number } = {}): GgufHeader {
  checkBytes(bytes);
  const source = options.source ?? 'GGUF file';
  const fileSize = options.fileSize ?? bytes.length;
  if (!Number.isSafeInteger(fileSize) || fileSize < bytes.length) {
    throw new InvalidArgumentError(`Expected an integer >= ${bytes.length} (bytes.length) for options.fileSize but received ${describe(options.fileSize)}`);
  }
  try {
    return parseHeader(bytes, fileSize, source);
  } catch (err) {
    if (err instanceof NeedMore) {
      throw new InvalidArgumentError(`Expected at least the first ${err.end} bytes of ${source} (its header) for bytes but received ${bytes.length}`);
    }
    throw err;
  }
}

/** Reads and parses the header of an open file, reading more as the parser asks for it. */
async function readHeader(fh: import('node:fs').promises.FileHandle, size: number, source: string, budget: number): Promise<GgufHeader> {
  let buf = new Uint8Array(Math.min(size, 1 << 20));
  await readExactly(fh, buf, 0, source);
  for (;;) {
    try {
      return parseHeader(buf, size, source);
    } catch (err) {
      if (!(err instanceof NeedMore)) throw err;
      const len = Math.min(size, Math.max(err.end + (1 << 16), buf.length * 2));
      checkLoadBudget(err.end, budget, 'the header (metadata and tensor infos)', source);
      const next = new Uint8Array(len);
      next.set(buf);
      await readExactly(fh, next.subarray(buf.length), buf.length, source);
      buf = next;
    }
  }
}

/** Converts one tensor's raw little-endian bytes (owned) into a Tensor, or refuses its type. */
function toTensor(info: GgufTensorInfo, raw: Uint8Array, source: string): Tensor {
  const count = info.shape.reduce((a, b) => a * b, 1);
  const buf = raw.buffer as ArrayBuffer;
  switch (info.type) {
    case 'F32':
      leToHost(raw, 4);
      return new Tensor('float32', info.shape, new Float32Array(buf, raw.byteOffset, count));
    case 'F16':
      leToHost(raw, 2);
      return new Tensor('float16', info.shape, new Uint16Array(buf, raw.byteOffset, count)).toFloat32();
    case 'BF16':
      leToHost(raw, 2);
      return new Tensor('bfloat16', info.shape, new Uint16Array(buf, raw.byteOffset, count)).toFloat32();
    case 'F64': {
      leToHost(raw, 8);
      return new Tensor('float32', info.shape, Float32Array.from(new Float64Array(buf, raw.byteOffset, count)));
    }
    case 'I8':
      return new Tensor('int8', info.shape, new Int8Array(buf, raw.byteOffset, count));
    case 'I32':
      leToHost(raw, 4);
      return new Tensor('int32', info.shape, new Int32Array(buf, raw.byteOffset, count));
    default:
      throw new UnsupportedError(
        `Expected an F32, F16, BF16, F64, I8 or I32 tensor for ${JSON.stringify(info.name)} in ${source} but received ggml type ${info.type}` +
          ' (quantized GGUF tensors are not supported; convert the model from its float weights)',
      );
  }
}

function selectInfos(h: GgufHeader, names: readonly string[] | undefined, source: string): GgufTensorInfo[] {
  if (names === undefined) return h.tensorInfos;
  if (!Array.isArray(names)) throw new InvalidArgumentError(`Expected an array of tensor names for options.names but received ${describe(names)}`);
  const byName = new Map(h.tensorInfos.map((t) => [t.name, t]));
  return names.map((n) => {
    const t = byName.get(n);
    if (!t) throw new InvalidArgumentError(`Expected the name of a tensor in ${source} for options.names but received ${describe(n)}`);
    return t;
  });
}

/**
 * Reads a GGUF file from bytes, synchronously: header, metadata and tensors (see the module documentation for
 * the dtypes).
 * @throws CorruptFileError for any inconsistency; UnsupportedError for quantized tensors (naming the tensor and
 *   its ggml type), GGUF v1 and big-endian files.
 * @example
 * ```ts
 * const gguf = readGguf(new Uint8Array(fs.readFileSync('stories260K.gguf')), { source: 'stories260K.gguf' });
 * gguf.metadata.get('llama.block_count')!.value; // 5
 * ```
 */
export function readGguf(bytes: Uint8Array, options: GgufReadOptions = {}): GgufFile {
  checkBytes(bytes);
  const source = options.source ?? 'GGUF file';
  const budget = resolveMaxLoadBytes(options.maxBytes);
  const h = parseHeader(bytes, bytes.length, source);
  const infos = selectInfos(h, options.names, source);
  checkLoadBudget(loadBytes(infos), budget, `the ${infos.length} tensors`, source);
  const tensors = new Map<string, Tensor>();
  for (const info of infos) {
    tensors.set(info.name, toTensor(info, bytes.slice(info.offset, info.offset + info.byteLength), source));
  }
  return { ...h, tensors };
}

/**
 * Reads a GGUF file asynchronously: the header (read incrementally, as far as it goes), then each tensor with a
 * positioned read straight into its own buffer (the file is never held whole; pass `names` to read a subset).
 * @throws as {@link readGguf}; the fs error when the file cannot be opened.
 * @example
 * ```ts
 * const gguf = await readGgufFile('stories260K.gguf');
 * [...gguf.tensors.keys()].length; // 48
 * ```
 */
export async function readGgufFile(path: string, options: GgufReadOptions = {}): Promise<GgufFile> {
  checkPath(path);
  const source = options.source ?? path;
  const budget = resolveMaxLoadBytes(options.maxBytes);
  const { fh, size } = await openForRead(path);
  try {
    const h = await readHeader(fh, size, source, budget);
    const infos = selectInfos(h, options.names, source);
    checkLoadBudget(loadBytes(infos), budget, `the ${infos.length} tensors`, source);
    const tensors = new Map<string, Tensor>();
    for (const info of infos) {
      if (!['F32', 'F16', 'BF16', 'F64', 'I8', 'I32'].includes(info.type)) toTensor(info, new Uint8Array(0), source); // refuse before reading
      const raw = new Uint8Array(info.byteLength);
      await readExactly(fh, raw, info.offset, source);
      tensors.set(info.name, toTensor(info, raw, source));
    }
    return { ...h, tensors };
  } finally {
    await fh.close();
  }
}

/**
 * Reads only the header of a GGUF file (metadata and tensor infos), however large the file.
 * @example
 * ```ts
 * const h = await readGgufHeaderFile('model.gguf');
 * h.metadata.get('general.name')?.value;
 * ```
 */
export async function readGgufHeaderFile(path: string, options: { source?: string; maxBytes?: number } = {}): Promise<GgufHeader> {
  checkPath(path);
  const source = options.source ?? path;
  const budget = resolveMaxLoadBytes(options.maxBytes);
  const { fh, size } = await openForRead(path);
  try {
    return await readHeader(fh, size, source, budget);
  } finally {
    await fh.close();
  }
}
