// Save/load round trip for every quantization mode x layer type: a model is built around the layer, quantized,
// saved as .keras, reloaded, and must give bit-identical outputs; policies and variable layouts survive.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  applySymbolic,
  Dense,
  EinsumDense,
  Embedding,
  Input,
  Int4QuantizationConfig,
  Layer,
  loadModel,
  Model,
  MultiHeadAttention,
  ReversibleEmbedding,
  Tensor,
  terminateHdf5Worker,
} from '../../lib';
import { randomF32 } from '../helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-rt-'));
afterAll(async () => {
  await terminateHdf5Worker();
  fs.rmSync(tmp, { recursive: true, force: true });
});

type Case = [string, () => Layer, number[], 'float32' | 'int32'];
const cases: Case[] = [
  ['Dense', () => new Dense({ units: 12, seed: 1, biasInitializer: 'uniform' }), [6, 20], 'float32'],
  ['EinsumDense', () => new EinsumDense({ equation: 'abc,cde->abde', outputShape: [null, 3, 4], biasAxes: 'de', seed: 2 }), [2, 5, 16], 'float32'],
  ['Embedding', () => new Embedding({ inputDim: 40, outputDim: 24, seed: 3, embeddingsInitializer: 'glorot_uniform' }), [2, 7], 'int32'],
  ['ReversibleEmbedding', () => new ReversibleEmbedding({ inputDim: 40, outputDim: 24, tieWeights: false, seed: 4 }), [2, 7], 'int32'],
  ['MultiHeadAttention', () => new MultiHeadAttention({ numHeads: 2, keyDim: 8, seed: 5 }), [2, 6, 16], 'float32'],
];
const modes: Array<[string, (l: Layer) => boolean, Parameters<Model['quantize']>]> = [
  ['int8', () => true, ['int8', { verbose: false }]],
  ['int4 g128', () => true, ['int4', { verbose: false }]],
  ['int4 g8', () => true, ['int4', { config: new Int4QuantizationConfig({ blockSize: 8 }), verbose: false }]],
  ['int4 per-channel', () => true, ['int4', { config: new Int4QuantizationConfig({ blockSize: null }), verbose: false }]],
  ['float8', (l) => !(l instanceof Embedding), ['float8', { verbose: false }]],
];

async function build(make: () => Layer, shape: number[], dtype: 'float32' | 'int32'): Promise<Model> {
  const inp = Input({ shape: shape.slice(1), dtype });
  const layer = make();
  const out = layer instanceof MultiHeadAttention ? await applySymbolic(layer, [inp, inp]) : await applySymbolic(layer, inp);
  return new Model({ inputs: inp, outputs: out, name: 'rt' });
}

function input(shape: number[], dtype: 'float32' | 'int32'): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (dtype === 'int32') return new Tensor('int32', shape, Int32Array.from({ length: n }, (_, i) => (i * 7) % 40));
  return new Tensor('float32', shape, randomF32(n, 11));
}

describe.each(cases)('%s', (name, make, shape, dtype) => {
  test.each(modes)('%s: save -> load -> identical outputs', async (mode, applies, args) => {
    if (!applies(make())) return;
    const model = await build(make, shape, dtype);
    const x = input(shape, dtype);
    await model.quantize(...args);
    const want = (await model.predict(x)) as Tensor;
    const file = path.join(tmp, `${name}-${mode.replace(/ /g, '_')}.keras`);
    await model.save(file);
    const loaded = await loadModel(file);
    const got = (await loaded.predict(x)) as Tensor;
    expect(got.shape).toEqual(want.shape);
    expect(Array.from(got.data)).toEqual(Array.from(want.data));
    const policies = (m: Model) => m.flattenLayers().filter((l) => l.isQuantized).map((l) => `${l.path}:${l.dtypePolicy.name}:${l.variables.map((v) => `${v.name}${JSON.stringify(v.shape)}${v.dtype}`).join(',')}`);
    expect(policies(loaded)).toEqual(policies(model));
    expect(policies(model).length).toBeGreaterThan(0);
  });
});
