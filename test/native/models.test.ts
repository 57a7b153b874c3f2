// Models: Sequential, functional graphs (several inputs/outputs, shared layers), subclassed models, paths,
// predict batching, summary, getLayer, Keras configs (checked against a config.json written by Keras).
import * as fs from 'fs';
import * as path from 'path';
import { strFromU8, unzipSync } from 'fflate';
import { Dense } from '../../lib/layers/dense';
import { Layer } from '../../lib/layers/layer';
import { registerLayer } from '../../lib/layers/registry';
import {
  applySymbolic,
  Input,
  InputLayer,
  layerNodes,
  Model,
  Sequential,
  SymbolicTensor,
} from '../../lib/models';
import { InvalidArgumentError, ShapeMismatchError, UnsupportedError } from '../../lib/errors';
import { Tensor } from '../../lib/tensor';
import { randomF32 } from '../helpers';

// ---- independent references -------------------------------------------------------------------------------

/** y = act(x @ W + b) in float64, from the layer's float weights. */
function denseRef(x: Float32Array, rows: number, w: Float32Array, b: Float32Array | null, inDim: number, units: number, relu = false): Float64Array {
  const y = new Float64Array(rows * units);
  for (let r = 0; r < rows; r++) {
    for (let u = 0; u < units; u++) {
      let s = b ? b[u] : 0;
      for (let k = 0; k < inDim; k++) s += x[r * inDim + k] * w[k * units + u];
      y[r * units + u] = relu ? Math.max(0, s) : s;
    }
  }
  return y;
}

function weights(d: Dense): { w: Float32Array; b: Float32Array | null } {
  return { w: d.kernel!.value.data as Float32Array, b: (d.bias?.value.data as Float32Array) ?? null };
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-5): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (Math.abs(actual[i] - expected[i]) > tol * (1 + Math.abs(expected[i]))) {
      throw new Error(`element ${i}: ${actual[i]} vs ${expected[i]}`);
    }
  }
}

// ---- small test layers ------------------------------------------------------------------------------------

/** Sums a list of same-shaped inputs (a multi-input layer). */
class SumLayer extends Layer {
  build(): void {
    this.built = true;
  }
  async call(inputs: Tensor | Tensor[]): Promise<Tensor> {
    const list = Array.isArray(inputs) ? inputs : [inputs];
    const out = new Float32Array(list[0].size);
    for (const t of list) (t.data as Float32Array).forEach((v, i) => (out[i] += v));
    return new Tensor('float32', list[0].shape, out);
  }
  static fromConfig(c: Record<string, unknown>): SumLayer {
    return new SumLayer({ name: c.name as string });
  }
}
registerLayer(SumLayer);

/** Multiplies by a learned per-feature scale (has a weight, no quantize support). */
class ScaleLayer extends Layer {
  scale: Tensor<'float32'> | null = null;
  build(shape: readonly (number | null)[]): void {
    const n = shape[shape.length - 1] as number;
    this.scale = this.addWeight('scale', new Tensor('float32', [n], Float32Array.from({ length: n }, (_, i) => 1 + i))).value;
    this.built = true;
  }
  async call(x: Tensor | Tensor[]): Promise<Tensor> {
    const t = x as Tensor<'float32'>;
    const n = this.scale!.size;
    return new Tensor('float32', t.shape, (t.data as Float32Array).map((v, i) => v * this.scale!.data[i % n]));
  }
  static fromConfig(c: Record<string, unknown>): ScaleLayer {
    return new ScaleLayer({ name: c.name as string });
  }
}
registerLayer(ScaleLayer);

function input(rows: number, cols: number, seed: number): Tensor<'float32'> {
  return new Tensor('float32', [rows, cols], randomF32(rows * cols, seed));
}

// ---- Sequential ---------------------------------------------------------------------------------------------

describe('Sequential', () => {
  test('10→32→1 equals the hand computation, builds lazily, and reports shapes and params', async () => {
    const d1 = new Dense({ units: 32, activation: 'relu', name: 'hidden' });
    const d2 = new Dense({ units: 1, name: 'out' });
    const model = new Sequential({ layers: [d1, d2], name: 'mlp' });
    expect(model.built).toBe(false);
    const x = input(5, 10, 1);
    const y = await model.apply(x);
    expect(model.built).toBe(true);
    expect(y.shape).toEqual([5, 1]);
    const h = denseRef(x.data, 5, weights(d1).w, weights(d1).b, 10, 32, true);
    const ref = denseRef(Float32Array.from(h), 5, weights(d2).w, weights(d2).b, 32, 1);
    expectClose(y.data as Float32Array, ref);

    expect(model.layers).toEqual([d1, d2]);
    expect(model.variables.length).toBe(4);
    expect(model.countParams()).toBe(10 * 32 + 32 + 32 + 1);
    const s = model.summary();
    expect(s).toContain('Model: "mlp"');
    expect(s).toMatch(/hidden \(Dense\)\s+\(None, 32\)\s+352/);
    expect(s).toMatch(/out \(Dense\)\s+\(None, 1\)\s+33/);
    expect(s).toContain('Total params: 385');
    expect(s).toContain('Trainable params: 385');
    expect(s).toContain('Non-trainable params: 0');
    expect(d1.path).toBe('hidden');
    expect(d1.kernel!.path).toBe('hidden/kernel');
  });

  test('the layers can be passed directly as in Keras, with options second; passing them twice or a non-object is refused', async () => {
    const d1 = new Dense({ units: 3, name: 'first' });
    const d2 = new Dense({ units: 2 });
    const m = new Sequential([Input({ shape: [4] }), d1, d2], { name: 'direct' });
    expect(m.name).toBe('direct');
    expect(m.layers).toEqual([d1, d2]);
    const y = await m.apply(input(2, 4, 7));
    expect(y.shape).toEqual([2, 2]);
    expect(() => new Sequential([d2], { layers: [d1] } as never)).toThrow(InvalidArgumentError);
    expect(() => new Sequential(5 as never)).toThrow(/layersOrOptions/);
  });

  test('an Input first builds at once; build(shape) works without one; add() after build rebuilds', async () => {
    const m = new Sequential({ layers: [Input({ shape: [3] }), new Dense({ units: 2 })] });
    await m.build();
    expect(m.built).toBe(true);
    expect(m.layers.length).toBe(1);
    expect(m.inputLayer).toBeInstanceOf(InputLayer);

    const n = new Sequential();
    const a = new Dense({ units: 4 });
    n.add(a);
    await n.build([null, 6]);
    expect(a.built).toBe(true);
    expect(a.kernel!.shape).toEqual([6, 4]);
    const b = new Dense({ units: 2 });
    n.add(b);
    expect(n.built).toBe(false);
    const y = await n.apply(input(3, 6, 2));
    expect(y.shape).toEqual([3, 2]);
    expect(() => n.add(new Dense({ units: 2, name: b.name }))).toThrow(/unique names/);
    expect(() => n.add(new InputLayer({ shape: [6] }))).toThrow(InvalidArgumentError);
    await expect(n.apply(input(3, 5, 2))).rejects.toThrow(ShapeMismatchError);
  });

  test('predict in batches equals a single call', async () => {
    const model = new Sequential({ layers: [new Dense({ units: 16, activation: 'relu' }), new Dense({ units: 3 })] });
    const x = input(23, 8, 3);
    const whole = await model.apply(x);
    for (const bs of [1, 4, 7, 23, 100]) {
      const y = await model.predict(x, { batchSize: bs });
      expect(y.shape).toEqual([23, 3]);
      expect(Array.from(y.data as Float32Array)).toEqual(Array.from(whole.data as Float32Array));
    }
    await expect(model.predict(x, { batchSize: 0 })).rejects.toThrow(InvalidArgumentError);
  });

  test('getLayer by name, index and path; unknown names raise', async () => {
    const model = new Sequential({ layers: [new Dense({ units: 2, name: 'a' }), new Dense({ units: 2, name: 'b' })] });
    await model.build([null, 2]);
    expect(model.getLayer('b').name).toBe('b');
    expect(model.getLayer(0).name).toBe('a');
    expect(() => model.getLayer('nope')).toThrow(/No such layer: nope. Existing layers are: \['a', 'b'\]/);
    expect(() => model.getLayer(5)).toThrow(InvalidArgumentError);
  });
});

// ---- functional ---------------------------------------------------------------------------------------------

describe('functional Model', () => {
  test('Input gives a symbolic tensor; connecting runs no maths on it', async () => {
    const x = Input({ shape: [4], name: 'feat' });
    expect(x).toBeInstanceOf(SymbolicTensor);
    expect(x.shape).toEqual([null, 4]);
    expect(x.layer.name).toBe('feat');
    const y = await applySymbolic(new Dense({ units: 7 }), x);
    expect(y.shape).toEqual([null, 7]);
    expect(y.dtype).toBe('float32');
    const seq = Input({ shape: [null, 4] });
    const z = await applySymbolic(new Dense({ units: 3 }), seq);
    expect(z.shape).toEqual([null, null, 3]);
    await expect(applySymbolic(new Dense({ units: 3 }), input(1, 4, 0) as unknown as SymbolicTensor)).rejects.toThrow(InvalidArgumentError);
  });

  test('two inputs, two outputs and a shared layer give the same results as calling the layers by hand', async () => {
    const a = Input({ shape: [4], name: 'a' });
    const b = Input({ shape: [4], name: 'b' });
    const shared = new Dense({ units: 3, name: 'shared' });
    const sa = await applySymbolic(shared, a);
    const sb = await applySymbolic(shared, b);
    const sum = await applySymbolic(new SumLayer({ name: 'sum' }), [sa, sb]);
    const head = new Dense({ units: 2, name: 'head' });
    const out1 = await applySymbolic(head, sum);
    const model = new Model({ inputs: [a, b], outputs: [out1, sa], name: 'two' });
    expect(layerNodes(shared).length).toBe(2);
    expect(model.layers.map((l) => l.name)).toEqual(['a', 'b', 'shared', 'sum', 'head']);

    const xa = input(3, 4, 10);
    const xb = input(3, 4, 11);
    const [y1, y2] = await model.apply([xa, xb]);
    const w = weights(shared);
    const ra = denseRef(xa.data, 3, w.w, w.b, 4, 3);
    const rb = denseRef(xb.data, 3, w.w, w.b, 4, 3);
    const rs = Float32Array.from(ra.map((v, i) => v + rb[i]));
    const h = weights(head);
    expectClose(y1.data as Float32Array, denseRef(rs, 3, h.w, h.b, 3, 2));
    expectClose(y2.data as Float32Array, ra);

    // predict with several inputs and outputs
    const [p1, p2] = await model.predict([xa, xb], { batchSize: 2 });
    expect(Array.from(p1.data)).toEqual(Array.from(y1.data));
    expect(Array.from(p2.data)).toEqual(Array.from(y2.data));

    // the config records both nodes of the shared layer and the node index in keras_history
    const cfg = model.getConfig() as { layers: Array<Record<string, any>>; input_layers: unknown; output_layers: unknown };
    const sharedEntry = cfg.layers.find((l) => l.name === 'shared')!;
    expect(sharedEntry.inbound_nodes.length).toBe(2);
    const sumEntry = cfg.layers.find((l) => l.name === 'sum')!;
    expect(sumEntry.inbound_nodes[0].args[0].map((r: any) => r.config.keras_history)).toEqual([
      ['shared', 0, 0],
      ['shared', 1, 0],
    ]);
    expect(cfg.input_layers).toEqual([['a', 0, 0], ['b', 0, 0]]);
    expect(cfg.output_layers).toEqual([['head', 0, 0], ['shared', 0, 0]]);
  });

  test('disconnected graphs and bad inputs are refused', async () => {
    const a = Input({ shape: [4] });
    const other = Input({ shape: [4] });
    const y = await applySymbolic(new Dense({ units: 2 }), other);
    expect(() => new Model({ inputs: a, outputs: y })).toThrow(/Graph disconnected/);
    const h = await applySymbolic(new Dense({ units: 2 }), a);
    expect(() => new Model({ inputs: h, outputs: h })).toThrow(/made by Input/);
    const m = new Model({ inputs: a, outputs: await applySymbolic(new Dense({ units: 2 }), a) });
    await expect(m.apply(input(2, 5, 1))).rejects.toThrow(ShapeMismatchError);
    // the InputLayer checks the rank even where the next layer would accept the tensor
    await expect(m.apply(new Tensor('float32', [1, 2, 4]))).rejects.toThrow(/Expected shape \[null, 4\] for input/);
  });

  test('Keras functional config round-trips through fromConfig with registered layers', async () => {
    const x = Input({ shape: [3], name: 'x' });
    const s = await applySymbolic(new ScaleLayer({ name: 'sc' }), x);
    const t = await applySymbolic(new SumLayer({ name: 'add' }), [s, x]);
    const model = new Model({ inputs: x, outputs: t, name: 'fn' });
    const cfg = JSON.parse(JSON.stringify(model.getConfig()));
    expect(cfg.input_layers).toEqual(['x', 0, 0]);
    expect(cfg.output_layers).toEqual(['add', 0, 0]);
    expect(cfg.layers[0]).toMatchObject({ class_name: 'InputLayer', name: 'x', inbound_nodes: [], config: { batch_shape: [null, 3], dtype: 'float32' } });
    expect(cfg.layers[1].build_config).toEqual({ input_shape: [null, 3] });
    const back = await Model.fromConfig(cfg);
    const xv = input(2, 3, 5);
    const y = await back.apply(xv);
    const ref = Array.from(xv.data as Float32Array).map((v, i) => v * (1 + (i % 3)) + v);
    expectClose(y.data as Float32Array, ref);
    expect(JSON.parse(JSON.stringify(back.getConfig()))).toEqual(cfg);
    // the wrapped form too
    const wrapped = await Model.fromConfig({ module: 'keras.src.models.functional', class_name: 'Functional', config: cfg, registered_name: 'Functional' });
    expect(wrapped.name).toBe('fn');
    // unknown classes name the class and say how to register it
    const bad = JSON.parse(JSON.stringify(cfg));
    bad.layers[1].class_name = 'Mystery';
    await expect(Model.fromConfig(bad)).rejects.toThrow(/'Mystery'.*registerLayer\(Mystery\)/);
  });

  test('a Sequential nested in a functional model runs, flattens and round-trips its config', async () => {
    const x = Input({ shape: [3], name: 'x' });
    const inner = new Sequential({ layers: [new ScaleLayer({ name: 'inner_s' })], name: 'inner' });
    const y = await applySymbolic(inner, x);
    const model = new Model({ inputs: x, outputs: await applySymbolic(new ScaleLayer({ name: 'outer_s' }), y), name: 'nest' });
    expect(model.flattenLayers({ includeSelf: false }).map((l) => l.path)).toEqual(['x', 'inner', `inner/${inner.inputLayer!.name}`, 'inner/inner_s', 'outer_s']);
    const xv = input(2, 3, 4);
    const ref = Array.from(xv.data as Float32Array).map((v, i) => v * (1 + (i % 3)) ** 2);
    expectClose((await model.apply(xv)).data as Float32Array, ref);
    const cfg = JSON.parse(JSON.stringify(model.getConfig()));
    const entry = cfg.layers.find((l: any) => l.name === 'inner');
    expect(entry).toMatchObject({ module: 'keras', class_name: 'Sequential', build_config: { input_shape: [null, 3] } });
    const back = await Model.fromConfig(cfg);
    expectClose((await back.apply(xv)).data as Float32Array, ref);
    expect(back.getLayer('inner')).toBeInstanceOf(Sequential);
  });

  test('rebuilds the graph of a config.json written by Keras and writes the same nodes back', async () => {
    const file = '/work/shared/fixtures/keras-quantized/fn_float32.keras';
    if (!fs.existsSync(file)) return;
    const cfg = JSON.parse(strFromU8(unzipSync(fs.readFileSync(file))['config.json']));
    // Stand-ins that only reproduce each layer's output shape (the graph logic is what is under test).
    const shapeOf = (name: string, c: Record<string, any>) => (s: (number | null)[]): (number | null)[] => {
      if (name === 'Embedding') return [...s, c.output_dim];
      if (name === 'EinsumDense') return [s[0], ...c.output_shape];
      if (name === 'Dense') return [...s.slice(0, -1), c.units];
      return [...s];
    };
    const stub = (name: string) => ({
      fromConfig(c: Record<string, any>): Layer {
        class Stub extends Layer {
          build(): void {
            this.built = true;
          }
          async call(): Promise<Tensor> {
            throw new Error('not run');
          }
          computeOutputShape(s: (number | null)[]): (number | null)[] {
            return shapeOf(name, c)(s);
          }
        }
        return new Stub({ name: c.name });
      },
    });
    const customObjects = Object.fromEntries(['Embedding', 'EinsumDense', 'LayerNormalization', 'Dense'].map((n) => [n, stub(n)]));
    const model = await Model.fromConfig(cfg.config, { customObjects });
    const names = cfg.config.layers.map((l: any) => l.name);
    expect(model.layers.map((l) => l.name)).toEqual(names);
    const mine = model.getConfig() as Record<string, any>;
    expect(mine.input_layers).toEqual(cfg.config.input_layers);
    expect(mine.output_layers).toEqual(cfg.config.output_layers);
    const strip = (nodes: any[]) => nodes.map((n) => ({ ...n, args: n.args.map((a: any) => ({ ...a, config: { ...a.config, dtype: undefined } })) }));
    mine.layers.forEach((l: any, i: number) => {
      expect(strip(l.inbound_nodes)).toEqual(strip(cfg.config.layers[i].inbound_nodes));
    });
  });
});

// ---- subclassed --------------------------------------------------------------------------------------------

class Tower extends Model {
  encoder = new Sequential({ layers: [new Dense({ units: 8, activation: 'relu', name: 'e1' }), new Dense({ units: 4, name: 'e2' })], name: 'encoder' });
  blocks = [new Dense({ units: 4, name: 'b0' }), new Dense({ units: 4, name: 'b1' })];
  head = new Dense({ units: 1, name: 'head' });
  override async call(x: Tensor): Promise<Tensor> {
    let h = await this.encoder.apply(x);
    for (const b of this.blocks) h = await b.apply(h);
    return this.head.apply(h);
  }
}

describe('subclassed Model', () => {
  test('tracks layer properties in order, sets nested paths, and flattens recursively', async () => {
    const m = new Tower({ name: 'tower' });
    expect(m.built).toBe(false);
    expect(m.layers.map((l) => l.name)).toEqual(['encoder', 'b0', 'b1', 'head']);
    const x = input(2, 5, 9);
    const y = await m.apply(x);
    expect(m.built).toBe(true);
    const e = m.encoder.layers as Dense[];
    let h = Float32Array.from(denseRef(x.data, 2, weights(e[0]).w, weights(e[0]).b, 5, 8, true));
    h = Float32Array.from(denseRef(h, 2, weights(e[1]).w, weights(e[1]).b, 8, 4));
    for (const b of m.blocks) h = Float32Array.from(denseRef(h, 2, weights(b).w, weights(b).b, 4, 4));
    expectClose(y.data as Float32Array, denseRef(h, 2, weights(m.head).w, weights(m.head).b, 4, 1));

    const flat = m.flattenLayers();
    expect(flat[0]).toBe(m);
    const inputName = m.encoder.inputLayer!.name;
    expect(inputName).toMatch(/^input_layer(_\d+)?$/);
    expect(flat.slice(1).map((l) => l.path)).toEqual(['encoder', `encoder/${inputName}`, 'encoder/e1', 'encoder/e2', 'b0', 'b1', 'head']);
    expect(e[0].kernel!.path).toBe('encoder/e1/kernel');
    expect(m.getLayer('encoder/e2')).toBe(e[1]);
    expect(m.variables.length).toBe(10);
    expect(m.summary()).toMatch(/encoder \(Sequential\)\s+\?\s+84/);
    // Keras saves a subclassed model's tracked layers as layers/<snake_case class>[_k] (see the nested_container fixture)
    expect(m.savableChildren().map(([k]) => k)).toEqual(['layers/sequential', 'layers/dense', 'layers/dense_1', 'layers/dense_2']);
  });

  test('build(shape) runs one call; a model without call() cannot run', async () => {
    const m = new Tower();
    await m.build([null, 3]);
    expect(m.built).toBe(true);
    expect(m.head.kernel!.shape).toEqual([4, 1]);
    await expect(new Model().apply(input(1, 2, 0))).rejects.toThrow(UnsupportedError);
  });
});

// ---- Sequential config ---------------------------------------------------------------------------------------

describe('Sequential config', () => {
  test('has the Keras layout and round-trips with registered layers', async () => {
    const m = new Sequential({ layers: [Input({ shape: [4] }), new ScaleLayer({ name: 's1' }), new ScaleLayer({ name: 's2' })], name: 'seq' });
    await m.build();
    const cfg = JSON.parse(JSON.stringify(m.getConfig()));
    expect(cfg.name).toBe('seq');
    expect(cfg.build_input_shape).toEqual([null, 4]);
    expect(cfg.layers.map((l: any) => l.class_name)).toEqual(['InputLayer', 'ScaleLayer', 'ScaleLayer']);
    expect(cfg.layers[0].config).toEqual({ batch_shape: [null, 4], dtype: 'float32', sparse: false, ragged: false, name: m.inputLayer!.name, optional: false });
    expect(cfg.layers[1].build_config).toEqual({ input_shape: [null, 4] });
    expect(cfg.dtype).toMatchObject({ class_name: 'DTypePolicy', config: { name: 'float32' } });
    const back = await Sequential.fromConfig(cfg);
    expect(back.built).toBe(true);
    expect(back.layers.map((l) => l.name)).toEqual(['s1', 's2']);
    expect(JSON.parse(JSON.stringify(back.getConfig()))).toEqual(cfg);
    expect(m.savableChildren().map(([k]) => k)).toEqual(['layers/scale_layer', 'layers/scale_layer_1']);
  });
});
