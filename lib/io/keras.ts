/**
 * The `.keras` archive (Keras 3's format) and `.weights.h5` files: `saveModel` / `loadModel` /
 * `saveWeights` / `loadWeights`. Layout (spec §5.3): a zip with `metadata.json`, `config.json` (the serialized
 * model, per-layer dtype policies and quantization configs) and `model.weights.h5`, whose groups follow the object
 * graph (`layers/<snake_case class>[_k]/vars/0..n`, nested layers under their attribute names). Variables are stored
 * in Keras's positional order per quantization mode, so files move between quantkit and Keras.
 *
 * Loading never executes code from the file: classes are looked up in quantkit's registry by name (custom layers
 * must be registered with `registerLayer`), every size is checked, and a failed load returns no model.
 * @packageDocumentation
 */
import * as fs from 'fs';
import * as path from 'path';
import { createHash } from 'crypto';

import { DType } from '../dtype';
import { CorruptFileError, InvalidArgumentError, QkError } from '../errors';
import type { Layer } from '../layers/layer';
import { deserializeLayer, serializeLayer } from '../models/graph';
import { Model } from '../models/model';
import { Tensor, describe } from '../tensor';
import { writeFileAtomic } from './atomic';
import { h5Dataset, h5Group, H5Dataset, H5DType, H5Group, readHdf5, writeHdf5 } from './hdf5';
import { readZip, writeZip, ZipLimits } from './zip';
import { readFileWithinBudget, resolveMaxLoadBytes } from './limits';
import { runWithAllocationBudget } from '../alloc-budget';
import type { FromConfigOptions } from '../models/graph';

/**
 * The Keras version quantkit's files declare (the format they follow).
 * @example
 * ```ts
 * KERAS_FORMAT_VERSION; // '3.16.0'
 * ```
 */
export const KERAS_FORMAT_VERSION = '3.16.0';

/** Options of {@link loadModel}. */
export interface LoadModelOptions extends FromConfigOptions {
  /** Limits for the zip reader (entry count, sizes, compression ratio). */
  limits?: ZipLimits;
  /**
   * Memory budget of the load in bytes: the archive file, its uncompressed entries and the weights' dataset bytes
   * must each fit (default {@link getMaxLoadBytes}: `setMaxLoadBytes()`, `QK_MAX_LOAD_BYTES`, or min(total
   * memory, 16 GiB)). Exceeding it gives `QK_OUT_OF_MEMORY` before the memory is allocated.
   */
  maxBytes?: number;
  /** Largest total of HDF5 dataset bytes accepted (default: the budget `maxBytes`). */
  maxWeightsBytes?: number;
}


const H5_OF_DTYPE: Partial<Record<DType, H5DType>> = {
  float32: 'float32',
  float16: 'float16',
  bfloat16: 'bfloat16',
  int8: 'int8',
  uint8: 'uint8',
  int32: 'int32',
};

function toDataset(t: Tensor, where: string): H5Dataset {
  const h5 = H5_OF_DTYPE[t.dtype];
  if (!h5) throw new InvalidArgumentError(`Expected a savable dtype for ${where} but received a ${t.dtype} tensor`);
  return h5Dataset(h5, [...t.shape], t.data as H5Dataset['data']);
}

/** Converts a dataset to a tensor of `want` (exact conversions only: ints and narrower floats to float32). */
function toTensor(ds: H5Dataset, want: DType | null, where: string): Tensor {
  const shape = ds.shape;
  const n = shape.reduce((a, b) => a * b, 1);
  if (ds.data.length !== n) throw new CorruptFileError(`${where}: dataset holds ${ds.data.length} values for shape [${shape.join(', ')}]`);
  const direct: Partial<Record<H5DType, DType>> = { float32: 'float32', int8: 'int8', uint8: 'uint8', int32: 'int32', float16: 'float16', bfloat16: 'bfloat16' };
  const own = direct[ds.dtype];
  if (own && (want === null || want === own)) return new Tensor(own, shape, ds.data as never);
  if (want === 'float32') {
    if (ds.dtype === 'float16' || ds.dtype === 'bfloat16') return new Tensor(ds.dtype, shape, ds.data as Uint16Array).toFloat32();
    if (ds.dtype === 'int8' || ds.dtype === 'uint8' || ds.dtype === 'int16' || ds.dtype === 'int32' || ds.dtype === 'float64' || ds.dtype === 'bool') {
      return new Tensor('float32', shape, Float32Array.from(ds.data as ArrayLike<number>));
    }
  }
  if (want === 'int8' && ds.dtype === 'uint8') {
    // some writers store packed int4 bytes as uint8; the bits are what matter
    return new Tensor('int8', shape, new Int8Array((ds.data as Uint8Array).buffer, (ds.data as Uint8Array).byteOffset, n));
  }
  throw new CorruptFileError(`${where}: expected ${want ?? 'a supported dtype'} but the file stores ${ds.dtype}`);
}

function ensureGroup(root: H5Group, segments: string[]): H5Group {
  let g = root;
  for (const s of segments) {
    let next = g.children.get(s);
    if (!next) {
      next = h5Group();
      g.children.set(s, next);
    }
    if (next.kind !== 'group') throw new InvalidArgumentError(`'${s}' is both a dataset and a group`);
    g = next;
  }
  return g;
}

/**
 * The HDF5 tree of a model's (or layer's) weights in Keras's layout.
 * @example
 * ```ts
 * const tree = weightsTree(model); // then writeHdf5(tree)
 * ```
 */
export function weightsTree(layer: Layer, dynamicFloat8?: string[]): H5Group {
  const root = h5Group();
  fillTree(layer, root, '', dynamicFloat8 ?? []);
  return root;
}

/** Layers whose float8 activations use quantkit's dynamic scale (Keras files have no way to say so). */
function isDynamicFloat8(layer: Layer): boolean {
  return layer.quantizationMode === 'float8' && (layer as { float8InputScale?: number | null }).float8InputScale === null;
}

function fillTree(layer: Layer, group: H5Group, where: string, dynamicFloat8: string[]): void {
  if (isDynamicFloat8(layer)) dynamicFloat8.push(where);
  const vars = h5Group({ name: layer.name });
  layer.saveOwnVariables().forEach((t, i) => vars.children.set(String(i), toDataset(t, `${where}vars/${i}`)));
  group.children.set('vars', vars);
  for (const [key, child] of layer.savableChildren()) {
    fillTree(child, ensureGroup(group, key.split('/')), `${where}${key}/`, dynamicFloat8);
  }
}

/**
 * Loads a Keras weights tree into a built model (positional `vars/0..n` per layer). Everything is read and checked
 * first; layers are only changed once every group has been found and converted.
 * @example
 * ```ts
 * applyWeightsTree(model, await readHdf5(bytes));
 * ```
 */
export function applyWeightsTree(layer: Layer, root: H5Group, source = 'weights', dynamicFloat8: readonly string[] = []): void {
  const plan: Array<[Layer, Tensor[], string]> = [];
  collect(layer, root, '', plan, source);
  for (const [l, tensors, where] of plan) {
    l.loadOwnVariables(tensors);
    if (dynamicFloat8.includes(where) && l.quantizationMode === 'float8') (l as { float8InputScale?: number | null }).float8InputScale = null;
  }
}

function collect(layer: Layer, group: H5Group, where: string, plan: Array<[Layer, Tensor[], string]>, source: string): void {
  const vars = group.children.get('vars');
  const expectVars = layer.loadSpec();
  if (!vars || vars.kind !== 'group') {
    if (expectVars.length > 0) throw new CorruptFileError(`${source}: missing the weights group '${where}vars' of layer '${layer.name}'`);
  } else {
    const keys = [...vars.children.keys()];
    const n = keys.length;
    for (let i = 0; i < n; i++) {
      if (!vars.children.has(String(i))) {
        throw new CorruptFileError(`${source}: the weights of layer '${layer.name}' ('${where}vars') are not numbered 0..${n - 1} (keys: ${keys.join(', ')})`);
      }
    }
    if (n !== expectVars.length) {
      throw new CorruptFileError(
        `${source}: Layer '${layer.name}' expected ${expectVars.length} variables, but received ${n} variables during loading ('${where}vars')`,
      );
    }
    const tensors: Tensor[] = [];
    for (let i = 0; i < n; i++) {
      const ds = vars.children.get(String(i)) as H5Group | H5Dataset;
      if (ds.kind !== 'dataset') throw new CorruptFileError(`${source}: '${where}vars/${i}' is a group, expected a dataset`);
      const want = expectVars[i];
      if (ds.shape.length !== want.shape.length || ds.shape.some((d, j) => d !== want.shape[j])) {
        throw new CorruptFileError(
          `${source}: expected shape [${want.shape.join(', ')}] for '${where}vars/${i}' of layer '${layer.name}' but the file stores [${ds.shape.join(', ')}]`,
        );
      }
      tensors.push(toTensor(ds, want.dtype, `${source}: '${where}vars/${i}' of layer '${layer.name}'`));
    }
    plan.push([layer, tensors, where]);
  }
  for (const [key, child] of layer.savableChildren()) {
    let g: H5Group | H5Dataset | undefined = group;
    for (const seg of key.split('/')) g = g && g.kind === 'group' ? g.children.get(seg) : undefined;
    if (!g || g.kind !== 'group') {
      if (child.loadSpec().length === 0 && child.savableChildren().length === 0) continue;
      throw new CorruptFileError(`${source}: missing the weights group '${where}${key}' of layer '${child.name}'`);
    }
    collect(child, g, `${where}${key}/`, plan, source);
  }
}

function dateSaved(): string {
  const d = new Date();
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}@${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/**
 * The bytes of a `.keras` archive for `model`.
 * @example
 * ```ts
 * const bytes = await modelToKerasBytes(model);
 * ```
 */
export async function modelToKerasBytes(model: Model): Promise<Uint8Array> {
  if (!(model instanceof Model)) throw new InvalidArgumentError(`Expected a Model for model but received ${describe(model)}`);
  if (!model.built) throw new InvalidArgumentError(`Expected a built model for model '${model.name}': call it once or build() it before saving`);
  const entry = serializeLayer(model);
  const config = { ...entry, compile_config: null };
  const dynamicFloat8: string[] = [];
  const weights = await writeHdf5(weightsTree(model, dynamicFloat8));
  const enc = new TextEncoder();
  const entries: Array<[string, Uint8Array]> = [
    ['config.json', enc.encode(JSON.stringify(config))],
    ['model.weights.h5', weights],
  ];
  // quantkit's own settings that Keras's format cannot express (Keras ignores extra entries)
  if (dynamicFloat8.length > 0) entries.push([QUANTKIT_ENTRY, enc.encode(JSON.stringify({ format: 1, float8_dynamic_inputs: dynamicFloat8 }))]);
  // SHA-256 of every other entry, in an extra metadata.json key (Keras never reads metadata.json when loading)
  const sha256: Record<string, string> = {};
  for (const [name, bytes] of entries) sha256[name] = sha256Hex(bytes);
  const metadata = { keras_version: KERAS_FORMAT_VERSION, date_saved: dateSaved(), quantkit_version: packageVersion(), quantkit: { sha256 } };
  return writeZip([['metadata.json', enc.encode(JSON.stringify(metadata))], ...entries]);
}

/**
 * Saves `model` as a `.keras` archive, atomically (a temporary file renamed over the target, so an interrupted save
 * never destroys the previous file).
 * @example
 * ```ts
 * await model.quantize('int8');
 * await saveModel(model, 'int8.keras');
 * ```
 */
export async function saveModel(model: Model, file: string): Promise<void> {
  if (typeof file !== 'string' || !file.endsWith('.keras')) {
    throw new InvalidArgumentError(`Expected a path ending in .keras for file but received ${describe(file)}`);
  }
  await writeFileAtomic(file, await modelToKerasBytes(model));
}

/**
 * Loads a `.keras` archive (written by quantkit or by Keras 3), including quantized layers.
 * @param file - a path or the archive's bytes
 * @throws CorruptFileError for broken or hostile files; InvalidArgumentError for unknown layer classes
 * @example
 * ```ts
 * const model = await loadModel('int8.keras');
 * const y = await model.predict(x);
 * ```
 */
export async function loadModel(file: string | Uint8Array, options: LoadModelOptions = {}): Promise<Model> {
  const source = typeof file === 'string' ? path.basename(file) : 'archive';
  if (typeof file !== 'string' && !ArrayBuffer.isView(file)) throw new InvalidArgumentError(`Expected a path or a Uint8Array for file but received ${describe(file)}`);
  const budget = resolveMaxLoadBytes(options.maxBytes);
  const bytes = typeof file === 'string' ? await readFileWithinBudget(file, budget, 'the file', source) : new Uint8Array(file.buffer, file.byteOffset, file.byteLength);
  const entries = readZip(bytes, { limits: options.limits, source, maxBytes: budget });
  verifyChecksums(entries, source);
  const configBytes = entries.get('config.json');
  if (!configBytes) throw new CorruptFileError(`${source}: not a .keras archive (no config.json entry)`);
  let config: unknown;
  try {
    config = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(configBytes));
  } catch (err) {
    throw new CorruptFileError(`${source}: config.json is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  // Every weight the config makes quantkit allocate (layer builds) is charged against the budget first.
  const model = await runWithAllocationBudget(budget, source, async () => {
    let m: Layer;
    try {
      m = await deserializeLayer(config, options);
    } catch (err) {
      if (err instanceof QkError) throw err;
      throw new CorruptFileError(`${source}: config.json could not be rebuilt: ${(err as Error).message}`, { cause: err });
    }
    if (!(m instanceof Model)) throw new CorruptFileError(`${source}: config.json describes a ${m.constructor.name}, not a model`);
    if (!m.built) {
      const bc = (config as { build_config?: unknown }).build_config;
      if (bc && typeof bc === 'object') await m.buildFromConfig(bc as Record<string, unknown>);
    }
    return m;
  });
  const weightsBytes = entries.get('model.weights.h5');
  if (!weightsBytes) {
    if (model.variables.length > 0) throw new CorruptFileError(`${source}: the archive has no model.weights.h5 but the model has ${model.variables.length} variables`);
    return model;
  }
  const maxWeights = Math.min(budget, resolveMaxLoadBytes(options.maxWeightsBytes, 'options.maxWeightsBytes'));
  const tree = await readHdf5(weightsBytes, { source: `${source}/model.weights.h5`, maxBytes: maxWeights });
  applyWeightsTree(model, tree, `${source}/model.weights.h5`, readQuantkitEntry(entries.get(QUANTKIT_ENTRY), source));
  return model;
}

/**
 * Saves only the weights (`.weights.h5`, the same tree as inside a `.keras` archive).
 * @example
 * ```ts
 * await saveWeights(model, 'model.weights.h5');
 * ```
 */
export async function saveWeights(model: Model, file: string): Promise<void> {
  if (typeof file !== 'string' || !file.endsWith('.weights.h5')) {
    throw new InvalidArgumentError(`Expected a path ending in .weights.h5 for file but received ${describe(file)}`);
  }
  await writeFileAtomic(file, await writeHdf5(weightsTree(model)));
}

/**
 * Loads weights saved by {@link saveWeights} (or Keras's `save_weights`) into a model with the same structure
 * (for quantized weights: the same quantization, e.g. `quantize('int8')` first).
 * @example
 * ```ts
 * await loadWeights(model, 'model.weights.h5');
 * ```
 */
export async function loadWeights(model: Model, file: string | Uint8Array, options: { maxBytes?: number } = {}): Promise<void> {
  const source = typeof file === 'string' ? path.basename(file) : 'weights';
  const budget = resolveMaxLoadBytes(options.maxBytes);
  const bytes = typeof file === 'string' ? await readFileWithinBudget(file, budget, 'the file', source) : file;
  applyWeightsTree(model, await readHdf5(bytes, { source, maxBytes: budget }), source);
}

const QUANTKIT_ENTRY = 'quantkit.json';

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Verifies the SHA-256 checksums quantkit records in `metadata.json` (`quantkit.sha256`: entry name → hex digest)
 * against the archive's entries. Archives without them (written by Keras) pass.
 * @throws CorruptFileError naming the entry whose digest differs or that is missing, or a malformed record
 * @example
 * ```ts
 * verifyChecksums(readZip(bytes), 'model.keras');
 * ```
 */
export function verifyChecksums(entries: Map<string, Uint8Array>, source: string): void {
  const metaBytes = entries.get('metadata.json');
  if (!metaBytes) return;
  let meta: unknown;
  try {
    meta = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(metaBytes));
  } catch (err) {
    throw new CorruptFileError(`Expected valid JSON in metadata.json of ${source} but received an error: ${(err as Error).message}`, { cause: err });
  }
  const qk = meta !== null && typeof meta === 'object' ? (meta as { quantkit?: unknown }).quantkit : undefined;
  if (qk === undefined) return;
  const sums = qk !== null && typeof qk === 'object' ? (qk as { sha256?: unknown }).sha256 : undefined;
  if (sums === undefined) return;
  if (sums === null || typeof sums !== 'object' || Array.isArray(sums) || !Object.values(sums).every((v) => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v))) {
    throw new CorruptFileError(`Expected an object of entry name -> 64 hex digits for quantkit.sha256 in metadata.json of ${source} but received ${describe(sums)}`);
  }
  for (const [name, want] of Object.entries(sums as Record<string, string>)) {
    const bytes = entries.get(name);
    if (!bytes) throw new CorruptFileError(`Expected the entry ${JSON.stringify(name)} that metadata.json lists a checksum for in ${source} but received none`);
    const got = sha256Hex(bytes);
    if (got !== want) {
      throw new CorruptFileError(`Expected SHA-256 ${want} for zip entry ${JSON.stringify(name)} in ${source} (recorded in metadata.json) but received ${got}: the entry was modified or corrupted`);
    }
  }
}

function readQuantkitEntry(bytes: Uint8Array | undefined, source: string): string[] {
  if (!bytes) return [];
  try {
    const j = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as { float8_dynamic_inputs?: unknown };
    const list = j.float8_dynamic_inputs;
    if (list === undefined) return [];
    if (!Array.isArray(list) || !list.every((x) => typeof x === 'string')) throw new Error('float8_dynamic_inputs must be a list of strings');
    return list as string[];
  } catch (err) {
    throw new CorruptFileError(`${source}: ${QUANTKIT_ENTRY} is invalid: ${(err as Error).message}`, { cause: err });
  }
}

let version: string | undefined;
function packageVersion(): string {
  if (version) return version;
  try {
    let dir = __dirname;
    for (let i = 0; i < 4 && !fs.existsSync(path.join(dir, 'package.json')); i++) dir = path.dirname(dir);
    version = (JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    version = 'unknown';
  }
  return version;
}
