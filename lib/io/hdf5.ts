/**
 * HDF5, the subset Keras uses for `model.weights.h5`: groups, attributes, and contiguous datasets of float32,
 * float16, float64, int8, uint8, int16, int32, int64, bool and bfloat16 (stored as Keras does through h5py:
 * 2-byte opaque elements holding the bfloat16 bits, with a `dtype="bfloat16"` attribute).
 *
 * Files are parsed and produced by the HDF5 C library compiled to WebAssembly (h5wasm), run in a
 * `worker_thread` (`hdf5-worker.mjs`, next to this module): the event loop stays free, and a WebAssembly abort
 * caused by a hostile file ends only the worker and becomes a {@link CorruptFileError}. The worker is started
 * on first use, kept for later calls, and never keeps the process alive while idle.
 *
 * A file is read into a plain tree ({@link H5Group} / {@link H5Dataset}) and a tree is written to bytes; there
 * is no partial I/O. Written files use superblock version 0 and version-1 object headers, like h5py's defaults.
 *
 * @example
 * ```ts
 * import { h5Group, h5Dataset, writeHdf5, readHdf5 } from 'quantkit/io';
 * const vars = h5Group({ name: 'dense' });
 * vars.children.set('0', h5Dataset('int8', [2, 2], new Int8Array([1, -2, 3, -4])));
 * const root = h5Group();
 * root.children.set('vars', vars);
 * const back = await readHdf5(await writeHdf5(root));
 * ```
 * @packageDocumentation
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { CorruptFileError, InternalError, InvalidArgumentError, UnsupportedError } from '../errors';
import { describe } from '../tensor';
import { resolveMaxLoadBytes } from './limits';

/** Dataset element types {@link readHdf5} and {@link writeHdf5} handle. */
export type H5DType =
  | 'float32'
  | 'float16'
  | 'float64'
  | 'int8'
  | 'uint8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'bool'
  | 'bfloat16';

/**
 * A dataset: a dtype, a shape and row-major data. float16 and bfloat16 ride in `Uint16Array` (raw bits), bool in
 * `Uint8Array` (0/1), int64 in `BigInt64Array`.
 */
export interface H5Dataset {
  kind: 'dataset';
  dtype: H5DType;
  shape: number[];
  data: Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Int32Array | BigInt64Array | Uint16Array;
  /**
   * Attributes. Read back as: strings → string / string[]; integers and floats → number / number[] (bigint for
   * int64 values beyond 2^53); h5py booleans → boolean / boolean[]; multi-dimensional attributes flattened;
   * other attribute types are skipped. For bfloat16 datasets the `dtype` attribute is implied, not listed.
   */
  attrs: Record<string, unknown>;
}

/** A group: attributes and named children, in the file's (alphabetical) order when read. */
export interface H5Group {
  kind: 'group';
  attrs: Record<string, unknown>;
  children: Map<string, H5Group | H5Dataset>;
}

const CONTAINER: Record<H5DType, new (n: number) => H5Dataset['data']> = {
  float32: Float32Array,
  float16: Uint16Array,
  float64: Float64Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  bool: Uint8Array,
  bfloat16: Uint16Array,
};

const HDF5_SIGNATURE = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];
const MAX_DEPTH = 64;
const WORKER_FILE = 'hdf5-worker.mjs';

/**
 * Creates an empty group.
 * @param attrs - attributes (copied)
 * @example
 * ```ts
 * const vars = h5Group({ name: 'dense' });
 * ```
 */
export function h5Group(attrs: Record<string, unknown> = {}): H5Group {
  checkAttrs(attrs, 'attrs');
  return { kind: 'group', attrs: { ...attrs }, children: new Map() };
}

/**
 * Creates a dataset after checking that `data` is the container of `dtype` with exactly `prod(shape)` elements.
 * The data is not copied.
 * @throws InvalidArgumentError for an unknown dtype, a bad shape, or data of the wrong type or length.
 * @example
 * ```ts
 * const kernel = h5Dataset('int8', [10, 32], new Int8Array(320));
 * const bf = h5Dataset('bfloat16', [4], new Uint16Array([0x3f80, 0x4000, 0, 0xbf80])); // 1, 2, 0, -1
 * ```
 */
export function h5Dataset(
  dtype: H5DType,
  shape: readonly number[],
  data: H5Dataset['data'],
  attrs: Record<string, unknown> = {},
): H5Dataset {
  const ds: H5Dataset = { kind: 'dataset', dtype, shape: Array.isArray(shape) ? [...shape] : (shape as never), data, attrs: { ...attrs } };
  checkDataset(ds, 'dataset');
  return ds;
}

/**
 * Looks up a `/`-separated path (leading `/` optional) in a tree.
 * @returns the node, or `undefined` when a segment is missing
 * @example
 * ```ts
 * const k = h5Get(root, 'layers/dense/vars/0'); // H5Dataset | undefined
 * ```
 */
export function h5Get(root: H5Group, p: string): H5Group | H5Dataset | undefined {
  let node: H5Group | H5Dataset | undefined = root;
  for (const seg of p.split('/').filter((s) => s.length > 0)) {
    if (!node || node.kind !== 'group') return undefined;
    node = node.children.get(seg);
  }
  return node;
}

function checkAttrs(attrs: unknown, where: string): void {
  if (attrs === null || typeof attrs !== 'object' || Array.isArray(attrs)) {
    throw new InvalidArgumentError(`Expected an object for ${where} but received ${describe(attrs)}`);
  }
  for (const [k, v] of Object.entries(attrs as Record<string, unknown>)) {
    const ok =
      typeof v === 'string' ||
      typeof v === 'number' ||
      typeof v === 'bigint' ||
      (ArrayBuffer.isView(v) && !(v instanceof DataView)) ||
      (Array.isArray(v) &&
        (v.every((x) => typeof x === 'string') || v.every((x) => typeof x === 'number' || typeof x === 'bigint')));
    if (!ok || k.length === 0) {
      throw new InvalidArgumentError(
        `Expected a string, number, bigint, TypedArray or an array of strings or numbers for ${where}.${k} but received ${describe(v)}`,
      );
    }
  }
}

function checkName(name: unknown, where: string): void {
  if (typeof name !== 'string' || name.length === 0 || name.includes('/') || name === '.' || name.includes('\0')) {
    throw new InvalidArgumentError(`Expected a non-empty name without '/' for a child of ${where} but received ${describe(name)}`);
  }
}

/** True for a `ctorName` TypedArray from any realm (jest's vm contexts, worker messages). */
function isTyped(x: unknown, ctorName: string): boolean {
  return ArrayBuffer.isView(x) && Object.prototype.toString.call(x) === `[object ${ctorName}]`;
}

function isMap(x: unknown): x is Map<unknown, unknown> {
  return Object.prototype.toString.call(x) === '[object Map]';
}

function checkDataset(ds: H5Dataset, where: string): void {
  const C = CONTAINER[ds.dtype as H5DType];
  if (!C) {
    throw new InvalidArgumentError(`Expected one of ${Object.keys(CONTAINER).join(', ')} for the dtype of ${where} but received ${describe(ds.dtype)}`);
  }
  if (!Array.isArray(ds.shape)) throw new InvalidArgumentError(`Expected an array shape for ${where} but received ${describe(ds.shape)}`);
  let n = 1;
  ds.shape.forEach((d, i) => {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new InvalidArgumentError(`Expected a non-negative integer for shape[${i}] of ${where} but received ${describe(d)}`);
    }
    n *= d;
  });
  if (!isTyped(ds.data, C.name)) {
    throw new InvalidArgumentError(`Expected a ${C.name} for the data of ${ds.dtype} ${where} but received ${describe(ds.data)}`);
  }
  if (ds.data.length !== n) {
    throw new InvalidArgumentError(`Expected ${n} elements (shape [${ds.shape.join(', ')}]) for the data of ${where} but received ${ds.data.length}`);
  }
  checkAttrs(ds.attrs, `${where} attrs`);
  if (ds.dtype === 'bfloat16' && ds.attrs.dtype !== undefined && ds.attrs.dtype !== 'bfloat16') {
    throw new InvalidArgumentError(`Expected no "dtype" attribute (it is implied) for bfloat16 ${where} but received ${describe(ds.attrs.dtype)}`);
  }
}

function checkTree(g: H5Group, where: string, depth: number, seen: Set<object>): void {
  if (g === null || typeof g !== 'object' || g.kind !== 'group' || !isMap(g.children)) {
    throw new InvalidArgumentError(`Expected an H5Group (h5Group()) for ${where} but received ${describe(g)}`);
  }
  if (depth > MAX_DEPTH) throw new InvalidArgumentError(`Expected groups nested at most ${MAX_DEPTH} deep for ${where} but received deeper`);
  if (seen.has(g)) throw new InvalidArgumentError(`Expected a tree (each group once) for ${where} but received a group that appears twice`);
  seen.add(g);
  checkAttrs(g.attrs, `${where} attrs`);
  for (const [name, child] of g.children) {
    checkName(name, where);
    const p = where === '/' ? `/${name}` : `${where}/${name}`;
    if (child && (child as H5Dataset).kind === 'dataset') checkDataset(child as H5Dataset, p);
    else checkTree(child as H5Group, p, depth + 1, seen);
  }
}

// ------------------------------------------------------------------------------------------------ worker pool

interface Pending {
  op: 'read' | 'write';
  source: string;
  tmp: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer?: NodeJS.Timeout;
}

interface WorkerReply {
  id?: number;
  ready?: boolean;
  ok?: boolean;
  root?: H5Group;
  bytes?: Uint8Array;
  kind?: 'corrupt' | 'unsupported' | 'invalid' | 'internal';
  message?: string;
  fatal?: boolean;
}

/** One worker and the requests sent to it. A retired slot takes no new requests and ends when drained. */
interface Slot {
  w: Worker;
  pending: Map<number, Pending>;
  retired: boolean;
  stopped: boolean;
}

let current: Slot | undefined;
let nextId = 1;

function workerPath(): string {
  const tried = [path.join(__dirname, WORKER_FILE), path.resolve(__dirname, '..', '..', 'lib', 'io', WORKER_FILE)];
  for (const p of tried) if (fs.existsSync(p)) return p;
  throw new InternalError(`Expected the HDF5 worker script at one of ${tried.join(', ')} but received none (run scripts/copy-assets.js after tsc)`);
}

function startSlot(): Slot {
  // No stdout/stderr capture: piped worker streams would keep the process alive while the worker idles.
  const w = new Worker(workerPath());
  const slot: Slot = { w, pending: new Map(), retired: false, stopped: false };
  w.on('message', (m: WorkerReply) => onReply(slot, m));
  w.on('error', (err) => stopSlot(slot, `it failed: ${err.message}`));
  w.on('exit', (code) => stopSlot(slot, `it exited with code ${code}`));
  w.unref();
  return slot;
}

function onReply(slot: Slot, m: WorkerReply): void {
  if (m.ready || m.id === undefined) return;
  const p = slot.pending.get(m.id);
  if (!p) return;
  slot.pending.delete(m.id);
  if (p.timer) clearTimeout(p.timer);
  if (m.ok) {
    // Rebuild in this realm: values from a worker message belong to the main context, which is not the
    // caller's realm under jest's vm contexts (instanceof Map / Float32Array would fail there).
    p.resolve(p.op === 'read' ? adoptGroup(m.root!) : new Uint8Array(m.bytes!.buffer, m.bytes!.byteOffset, m.bytes!.byteLength));
  } else {
    removeTmp(p.tmp);
    const msg = `${p.source}: ${m.message}`;
    const err =
      m.kind === 'corrupt'
        ? new CorruptFileError(msg)
        : m.kind === 'unsupported'
          ? new UnsupportedError(msg)
          : m.kind === 'invalid'
            ? new InvalidArgumentError(msg)
            : new InternalError(msg);
    p.reject(err);
  }
  // After a failure the worker's HDF5 state is suspect: new requests go to a fresh worker.
  if (m.fatal) retire(slot);
  if (slot.pending.size === 0) {
    slot.w.unref();
    if (slot.retired) stopSlot(slot, 'retired');
  }
}

function adoptValue(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(adoptValue);
  return v;
}

function adoptAttrs(a: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(a)) out[k] = adoptValue(v);
  return out;
}

function adoptGroup(g: H5Group): H5Group {
  const out: H5Group = { kind: 'group', attrs: adoptAttrs(g.attrs), children: new Map() };
  for (const [k, c] of g.children) {
    if (c.kind === 'group') out.children.set(k, adoptGroup(c));
    else {
      const C = CONTAINER[c.dtype] as unknown as new (b: ArrayBufferLike, o: number, n: number) => H5Dataset['data'];
      out.children.set(k, { kind: 'dataset', dtype: c.dtype, shape: [...c.shape], data: new C(c.data.buffer, c.data.byteOffset, c.data.length), attrs: adoptAttrs(c.attrs) });
    }
  }
  return out;
}

function retire(slot: Slot): void {
  slot.retired = true;
  if (current === slot) current = undefined;
}

function removeTmp(tmp: string): void {
  try {
    fs.rmSync(tmp, { force: true });
  } catch {
    // best effort
  }
}

function stopSlot(slot: Slot, why: string): void {
  if (slot.stopped) return;
  slot.stopped = true;
  retire(slot);
  void slot.w.terminate().catch(() => undefined);
  for (const [id, p] of slot.pending) {
    slot.pending.delete(id);
    if (p.timer) clearTimeout(p.timer);
    removeTmp(p.tmp);
    const msg = `${p.source}: Expected the HDF5 worker to finish but received a stop: ${why}`;
    p.reject(p.op === 'read' ? new CorruptFileError(msg) : new InternalError(msg));
  }
}

function request<T>(op: 'read' | 'write', source: string, payload: Record<string, unknown>, timeoutMs: number): Promise<T> {
  if (!current) current = startSlot();
  const slot = current;
  const id = nextId++;
  const tmp = path.join(os.tmpdir(), `quantkit-h5-${process.pid}-${randomBytes(8).toString('hex')}.h5`);
  return new Promise<T>((resolve, reject) => {
    const p: Pending = { op, source, tmp, resolve: resolve as (v: unknown) => void, reject };
    slot.pending.set(id, p);
    slot.w.ref();
    p.timer = setTimeout(() => stopSlot(slot, `it took longer than ${timeoutMs} ms (options.timeoutMs)`), timeoutMs);
    p.timer.unref();
    try {
      slot.w.postMessage({ id, op, tmp, ...payload });
    } catch (err) {
      slot.pending.delete(id);
      clearTimeout(p.timer);
      if (slot.pending.size === 0) slot.w.unref();
      reject(new InternalError(`${source}: Expected the data to reach the HDF5 worker but received an error: ${(err as Error).message}`, { cause: err }));
    }
  });
}

/**
 * Stops the HDF5 worker (a new one starts on the next call). Pending calls are rejected. Not needed for a clean
 * exit (an idle worker never keeps the process alive); useful in test teardown.
 * @example
 * ```ts
 * afterAll(() => terminateHdf5Worker());
 * ```
 */
export async function terminateHdf5Worker(): Promise<void> {
  const slot = current;
  if (!slot) return;
  stopSlot(slot, 'terminateHdf5Worker() was called');
  await slot.w.terminate().catch(() => undefined);
}

function hasSignature(bytes: Uint8Array): boolean {
  // The superblock may follow a user block of 512, 1024, 2048, ... bytes.
  for (let off = 0; off + 8 <= bytes.length; off = off === 0 ? 512 : off * 2) {
    if (HDF5_SIGNATURE.every((b, i) => bytes[off + i] === b)) return true;
  }
  return false;
}

/**
 * Reads an HDF5 file into a tree. A 2-byte dataset (opaque, as Keras/h5py write it, or 16-bit integer) with the
 * attribute `dtype="bfloat16"` reads as dtype `'bfloat16'` (raw bits in a `Uint16Array`). External links are
 * refused; soft links are followed.
 *
 * @param bytes - the whole file
 * @param options - `source` names the file in errors; `maxBytes` bounds the total dataset bytes (default
 *   {@link getMaxLoadBytes}: `setMaxLoadBytes()`, `QK_MAX_LOAD_BYTES`, or min(total memory, 16 GiB)); chunked
 *   (possibly compressed) datasets may declare at most 1024 × the file size plus 1 MiB;
 *   `timeoutMs` bounds the parse (default 60 s plus 10 ms per MB)
 * @throws CorruptFileError for garbage, a truncated or inconsistent file, sizes beyond the file or `maxBytes`,
 *   or a WebAssembly abort; UnsupportedError for dataset types outside the subset (e.g. uint32, strings).
 * @example
 * ```ts
 * const root = await readHdf5(files.get('model.weights.h5')!, { source: 'model.keras/model.weights.h5' });
 * const kernel = h5Get(root, 'layers/dense/vars/0') as H5Dataset;
 * ```
 */
export async function readHdf5(
  bytes: Uint8Array,
  options: { source?: string; maxBytes?: number; timeoutMs?: number } = {},
): Promise<H5Group> {
  if (!isTyped(bytes, 'Uint8Array')) throw new InvalidArgumentError(`Expected a Uint8Array for bytes but received ${describe(bytes)}`);
  const source = options.source ?? 'HDF5 file';
  const maxBytes = options.maxBytes === 0 ? 0 : resolveMaxLoadBytes(options.maxBytes);
  const timeoutMs = options.timeoutMs ?? 60_000 + bytes.length / 100_000;
  if (!hasSignature(bytes)) {
    const head = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new CorruptFileError(`${source}: Expected the HDF5 signature 89 48 44 46 0d 0a 1a 0a but received ${head ? `bytes ${head}` : 'an empty file'}`);
  }
  // Structured cloning copies a view's whole ArrayBuffer: send exactly the file.
  const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
  return request<H5Group>('read', source, { bytes: own, maxBytes }, timeoutMs);
}

/**
 * Writes a tree as an HDF5 file (superblock v0, like h5py). bfloat16 datasets are stored as Keras stores them
 * (2-byte opaque elements plus a `dtype="bfloat16"` attribute; Keras reads them back as bfloat16), float16 as
 * IEEE half, and bool as h5py's enum. Attribute values: string →
 * variable-length UTF-8; integer number or bigint → int64; other numbers → float64; arrays likewise;
 * TypedArrays keep their element type.
 *
 * @throws InvalidArgumentError for a malformed tree (bad names, data/shape/dtype mismatch, unsupported attribute
 *   values, a group reachable twice).
 * @example
 * ```ts
 * const bytes = await writeHdf5(root);
 * await writeFileAtomic('model.weights.h5', bytes);
 * ```
 */
export async function writeHdf5(root: H5Group, options: { timeoutMs?: number } = {}): Promise<Uint8Array> {
  checkTree(root, '/', 0, new Set());
  return request<Uint8Array>('write', 'HDF5 writer', { root }, options.timeoutMs ?? 600_000);
}
