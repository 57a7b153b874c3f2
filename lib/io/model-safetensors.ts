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
import { readSafetensors, writeSafetensors } from './safetensors';

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
  const entries: Array<[string, Tensor]> = [];
  flatten(weightsTree(model), '', entries);
  return writeSafetensors(entries, { format: 'quantkit-keras-weights', model: model.name });
}

/**
 * Loads weights exported by {@link exportSafetensors} into a model of the same structure (and quantization).
 * @example
 * ```ts
 * importSafetensors(model, fs.readFileSync('model.safetensors'));
 * ```
 */
export function importSafetensors(model: Layer, bytes: Uint8Array, source = 'safetensors'): void {
  const { tensors } = readSafetensors(bytes, { source });
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
