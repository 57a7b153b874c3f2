/**
 * A model's weights as safetensors (the Node / Hugging Face ecosystem format): one tensor per Keras weight, named by
 * its place in the Keras weights tree (`layers/dense/vars/0`, …), so quantized weights keep their Keras layouts and
 * load back into a model of the same structure.
 * @packageDocumentation
 */
import { CorruptFileError } from '../errors';
import type { Layer } from '../layers/layer';
import { Tensor } from '../tensor';
import { h5Dataset, H5Dataset, H5DType, H5Group, h5Group } from './hdf5';
import { applyWeightsTree, weightsTree } from './keras';
import { readSafetensors, readSafetensorsFile, writeSafetensors, writeSafetensorsFile } from './safetensors';

const TENSOR_DTYPE: Partial<Record<H5DType, Tensor['dtype']>> = {
  float32: 'float32',
  float16: 'float16',
  bfloat16: 'bfloat16',
  int8: 'int8',
  uint8: 'uint8',
  int32: 'int32',
};

function flatten(group: H5Group, prefix: string, out: Array<[string, Tensor]>): void {
  for (const [name, node] of group.children) {
    const p = prefix ? `${prefix}/${name}` : name;
    if (node.kind === 'group') flatten(node, p, out);
    else {
      const dt = TENSOR_DTYPE[node.dtype];
      if (!dt) throw new CorruptFileError(`weight '${p}' has dtype ${node.dtype}, which safetensors export does not support`);
      out.push([p, new Tensor(dt, node.shape, node.data as never)]);
    }
  }
}

/**
 * The model's weights as safetensors bytes (metadata records the format and the model's name).
 * @example
 * ```ts
 * fs.writeFileSync('model.safetensors', exportSafetensors(model));
 * ```
 */
export function exportSafetensors(model: Layer): Uint8Array {
  const { entries, meta } = safetensorsEntries(model);
  return writeSafetensors(entries, meta);
}

/**
 * {@link exportSafetensors} straight to a file, tensor by tensor (no in-memory copy of the whole file), atomically.
 * @example
 * ```ts
 * await exportSafetensorsFile(model, 'model.safetensors');
 * ```
 */
export async function exportSafetensorsFile(model: Layer, path: string): Promise<void> {
  const { entries, meta } = safetensorsEntries(model);
  await writeSafetensorsFile(path, entries, meta);
}

/**
 * {@link importSafetensors} from a file, reading each tensor straight into its own buffer (the file is never held
 * in memory as a whole). Everything is checked before any layer changes. `options.maxBytes`: the memory budget
 * (default `getMaxLoadBytes()`).
 * @example
 * ```ts
 * await importSafetensorsFile(model, 'model.safetensors');
 * ```
 */
export async function importSafetensorsFile(model: Layer, path: string, options: { maxBytes?: number } = {}): Promise<void> {
  const { tensors, metadata } = await readSafetensorsFile(path, { source: path, maxBytes: options.maxBytes });
  applySafetensors(model, tensors, metadata, path);
}

function safetensorsEntries(model: Layer): { entries: Array<[string, Tensor]>; meta: Record<string, string> } {
  const entries: Array<[string, Tensor]> = [];
  flatten(weightsTree(model), '', entries);
  // 3-bit GPTQ kernels (one level per byte in the Keras layout) are stored bit-packed: 3 bits per level.
  const packed: Record<string, number[]> = {};
  const threeBit = new Set(gptq3KernelNames(model, ''));
  for (let i = 0; i < entries.length; i++) {
    const [name, t] = entries[i];
    if (!threeBit.has(name) || t.dtype !== 'uint8') continue;
    packed[name] = [...t.shape];
    const bytes = pack3(t.data as Uint8Array);
    entries[i] = [name, new Tensor('uint8', [bytes.length], bytes)];
  }
  const meta: Record<string, string> = { format: 'quantkit-keras-weights', model: model.name };
  if (Object.keys(packed).length > 0) meta.qk_bitpacked3 = JSON.stringify(packed);
  return { entries, meta };
}

/** Tensor names (weights-tree paths) of the kernels of 3-bit GPTQ layers under `layer`. */
function gptq3KernelNames(layer: Layer, where: string): string[] {
  const out: string[] = [];
  const st = (layer as { gptqState?: { bits: number } | null }).gptqState;
  if (st && st.bits === 3) {
    const i = layer.variables.findIndex((v) => v.name === 'kernel');
    if (i >= 0) out.push(`${where}vars/${i}`);
  }
  for (const [key, child] of layer.savableChildren()) out.push(...gptq3KernelNames(child, `${where}${key}/`));
  return out;
}

/** Little-endian bit stream: level i occupies bits [3i, 3i + 3). Values must be < 8. */
export function pack3(levels: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil((levels.length * 3) / 8));
  for (let i = 0; i < levels.length; i++) {
    const bit = i * 3;
    const v = levels[i] & 7;
    out[bit >> 3] |= (v << (bit & 7)) & 0xff;
    if ((bit & 7) > 5) out[(bit >> 3) + 1] |= v >> (8 - (bit & 7));
  }
  return out;
}

/** Inverse of {@link pack3} for `n` levels. */
export function unpack3(bytes: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const bit = i * 3;
    const lo = bytes[bit >> 3] >> (bit & 7);
    const hi = (bit & 7) > 5 ? bytes[(bit >> 3) + 1] << (8 - (bit & 7)) : 0;
    out[i] = (lo | hi) & 7;
  }
  return out;
}

/**
 * Loads weights exported by {@link exportSafetensors} into a model of the same structure (and quantization).
 * @example
 * ```ts
 * importSafetensors(model, fs.readFileSync('model.safetensors'));
 * ```
 */
export function importSafetensors(model: Layer, bytes: Uint8Array, source = 'safetensors', options: { maxBytes?: number } = {}): void {
  const { tensors, metadata } = readSafetensors(bytes, { source, maxBytes: options.maxBytes });
  applySafetensors(model, tensors, metadata, source);
}

function applySafetensors(model: Layer, tensors: Map<string, Tensor>, metadata: Record<string, string>, source: string): void {
  if (metadata.qk_bitpacked3 !== undefined) {
    let packed: unknown;
    try {
      packed = JSON.parse(metadata.qk_bitpacked3);
    } catch {
      throw new CorruptFileError(`${source}: metadata qk_bitpacked3 is not valid JSON`);
    }
    if (packed === null || typeof packed !== 'object' || Array.isArray(packed)) throw new CorruptFileError(`${source}: metadata qk_bitpacked3 must be an object`);
    for (const [name, shape] of Object.entries(packed as Record<string, unknown>)) {
      const t = tensors.get(name);
      if (!Array.isArray(shape) || shape.length !== 2 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0) || !t || t.dtype !== 'uint8') {
        throw new CorruptFileError(`${source}: bit-packed 3-bit tensor '${name}' is missing or has a bad shape ${JSON.stringify(shape)}`);
      }
      const n = (shape[0] as number) * (shape[1] as number);
      if (!Number.isSafeInteger(n) || t.size !== Math.ceil((n * 3) / 8)) {
        throw new CorruptFileError(`${source}: bit-packed 3-bit tensor '${name}' holds ${t.size} bytes, expected ${Math.ceil((n * 3) / 8)} for shape [${shape.join(', ')}]`);
      }
      tensors.set(name, new Tensor('uint8', shape as number[], unpack3(t.data as Uint8Array, n)));
    }
  }
  const root = h5Group();
  for (const [name, t] of tensors) {
    const segs = name.split('/');
    if (segs.some((s) => s.length === 0)) throw new CorruptFileError(`${source}: tensor name '${name}' is not a weights-tree path`);
    let g = root;
    for (const s of segs.slice(0, -1)) {
      let next = g.children.get(s);
      if (!next) {
        next = h5Group();
        g.children.set(s, next);
      }
      if (next.kind !== 'group') throw new CorruptFileError(`${source}: '${name}' nests under a tensor`);
      g = next;
    }
    const h5: H5DType = t.dtype === 'bfloat16' ? 'bfloat16' : (t.dtype as H5DType);
    g.children.set(segs[segs.length - 1], h5Dataset(h5, [...t.shape], t.data as H5Dataset['data']));
  }
  applyWeightsTree(model, root, source);
}
