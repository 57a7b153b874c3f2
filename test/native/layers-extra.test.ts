// Normalization, activation, merge and reshaping layers against float64 references written here; Keras-format
// configs (fromConfig(getConfig()) round trips for every built-in layer, including quantized Dense /
// EinsumDense / Embedding / ReversibleEmbedding, and configs copied from the Keras fixtures); the registry; errors.
import { Tensor } from '../../lib/tensor';
import { Float8QuantizationConfig, Int4QuantizationConfig, Int8QuantizationConfig } from '../../lib/quantizers';
import { Dense } from '../../lib/layers/dense';
import { EinsumDense } from '../../lib/layers/einsum';
import { Embedding, ReversibleEmbedding } from '../../lib/layers/embedding';
import { LayerNormalization, RMSNormalization } from '../../lib/layers/normalization';
import { Activation, Add, Dropout, Flatten, Identity, Multiply, Reshape, Softmax } from '../../lib/layers/core-layers';
import { Layer } from '../../lib/layers/layer';
import { getLayerClass, registeredLayerNames } from '../../lib/layers/registry';
import '../../lib/layers/builtin';
import { randomF32 } from '../helpers';

const f32 = (shape: number[], seed: number, scale = 1) => new Tensor('float32', shape, randomF32(shape.reduce((a, b) => a * b, 1), seed, scale));
function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
const json = <T>(v: T): T => JSON.parse(JSON.stringify(v));

/** erf by Simpson integration of 2/sqrt(pi) exp(-t^2) (independent of the library's series). */
function erfRef(x: number): number {
  const n = 2000;
  const h = x / n;
  let s = 1 + Math.exp(-x * x);
  for (let i = 1; i < n; i++) s += (i % 2 ? 4 : 2) * Math.exp(-((i * h) ** 2));
  return ((s * h) / 3) * (2 / Math.sqrt(Math.PI));
}

describe('LayerNormalization', () => {
  function lnRef(x: Tensor, axesSet: number[], gamma: Float32Array | null, beta: Float32Array | null, eps: number, rms = false): Float64Array {
    // enumerate groups by brute force over coordinates
    const shape = x.shape;
    const n = x.size;
    const coords = (i: number) => {
      const c: number[] = [];
      for (let d = shape.length - 1; d >= 0; d--) {
        c.unshift(i % shape[d]);
        i = Math.floor(i / shape[d]);
      }
      return c;
    };
    const key = (c: number[]) => c.map((v, d) => (axesSet.includes(d) ? '*' : v)).join(',');
    const pidx = (c: number[]) => axesSet.reduce((acc, d) => acc * shape[d] + c[d], 0);
    const groups = new Map<string, number[]>();
    for (let i = 0; i < n; i++) {
      const k = key(coords(i));
      if (!groups.has(k)) groups.set(k, []);
      (groups.get(k) as number[]).push(i);
    }
    const out = new Float64Array(n);
    const d = x.data as Float32Array;
    for (const idx of groups.values()) {
      const mean = idx.reduce((a, i) => a + d[i], 0) / idx.length;
      const v = idx.reduce((a, i) => a + (d[i] - mean) ** 2, 0) / idx.length;
      for (const i of idx) {
        let y = (rms ? d[i] : d[i] - mean) / Math.sqrt(v + eps);
        const p = pidx(coords(i));
        if (gamma) y *= gamma[p];
        if (beta) y += beta[p];
        out[i] = y;
      }
    }
    return out;
  }

  test.each([
    [[2, 3, 8], -1, 1e-3, true, true],
    [[2, 3, 8], [1, 2], 1e-5, true, true],
    [[4, 5, 6], [0, 2], 1e-3, false, true],
    [[3, 7], 1, 1e-2, true, false],
  ] as const)('shape %j axis %j eps %f center %s scale %s', async (shape, axis, eps, center, scale) => {
    const ln = new LayerNormalization({ axis: axis as number | number[], epsilon: eps, center, scale });
    const x = f32([...shape], 5, 3);
    await ln.apply(x);
    if (ln.gamma) ln.gamma.assign(new Tensor('float32', ln.gamma.shape, randomF32(ln.gamma.value.size, 6).map((v) => v + 1)));
    if (ln.beta) ln.beta.assign(new Tensor('float32', ln.beta.shape, randomF32(ln.beta.value.size, 7)));
    const y = await ln.apply(x);
    const axes = (typeof axis === 'number' ? [axis] : [...axis]).map((a) => (a < 0 ? a + shape.length : a)).sort();
    expect(ln.variables.map((v) => v.name)).toEqual([...(scale ? ['gamma'] : []), ...(center ? ['beta'] : [])]);
    expect(maxAbsDiff(y.data as Float32Array, lnRef(x, axes, ln.gamma?.value.data ?? null, ln.beta?.value.data ?? null, eps))).toBeLessThan(2e-6);
    expect(ln.getConfig().axis).toEqual(axes);
  });

  test('deprecated rms_scaling scales by the variance (Keras quirk), gamma only', async () => {
    const ln = new LayerNormalization({ rmsScaling: true });
    const x = f32([3, 10], 8, 2);
    const y = await ln.apply(x);
    expect(ln.variables.map((v) => v.name)).toEqual(['gamma']);
    expect(maxAbsDiff(y.data as Float32Array, lnRef(x, [1], null, null, 1e-3, true))).toBeLessThan(2e-6);
  });

  test('fixture config (gptq_tiny.keras "ln") and errors', async () => {
    const cfg = {
      name: 'ln',
      trainable: true,
      dtype: { module: 'keras', class_name: 'DTypePolicy', config: { name: 'float32' }, registered_name: null },
      axis: [2],
      epsilon: 0.001,
      center: true,
      scale: true,
      rms_scaling: false,
      beta_initializer: { module: 'keras.initializers', class_name: 'Zeros', config: {}, registered_name: null },
      gamma_initializer: { module: 'keras.initializers', class_name: 'Ones', config: {}, registered_name: null },
      beta_regularizer: null,
      gamma_regularizer: null,
      beta_constraint: null,
      gamma_constraint: null,
    };
    const ln = LayerNormalization.fromConfig(cfg);
    ln.build([null, 16, 32]);
    expect(ln.saveOwnVariables().map((t) => t.shape)).toEqual([[32], [32]]);
    expect(json(ln.getConfig())).toEqual(cfg);
    await expect(ln.apply(f32([1, 16, 31], 1))).rejects.toThrow(/Expected inputs with sizes \[32\]/);
    expect(() => new LayerNormalization({ axis: 'x' as unknown as number })).toThrow(/axis/);
    expect(() => new LayerNormalization({ epsilon: -1 })).toThrow(/epsilon/);
    await expect(new LayerNormalization({ axis: 3 }).apply(f32([2, 3], 1))).rejects.toThrow(/\[-2, 2\)/);
  });
});

describe('RMSNormalization', () => {
  test('x * rsqrt(mean(x^2) + eps) * scale', async () => {
    const norm = new RMSNormalization({ epsilon: 1e-6 });
    const x = f32([2, 4, 12], 9, 2);
    await norm.apply(x);
    expect(norm.variables.map((v) => [v.name, v.shape])).toEqual([['scale', [12]]]);
    const s = randomF32(12, 10).map((v) => v + 1);
    (norm.scale as NonNullable<RMSNormalization['scale']>).assign(new Tensor('float32', [12], s));
    const y = await norm.apply(x);
    const d = x.data as Float32Array;
    const ref = new Float64Array(d.length);
    for (let r = 0; r < 8; r++) {
      let ms = 0;
      for (let j = 0; j < 12; j++) ms += d[r * 12 + j] ** 2;
      ms /= 12;
      for (let j = 0; j < 12; j++) ref[r * 12 + j] = (d[r * 12 + j] / Math.sqrt(ms + 1e-6)) * s[j];
    }
    expect(maxAbsDiff(y.data as Float32Array, ref)).toBeLessThan(2e-6);
    const cfg = json(norm.getConfig());
    expect(cfg).toMatchObject({ axis: [-1], epsilon: 1e-6 });
    expect(json(RMSNormalization.fromConfig(cfg).getConfig())).toEqual(cfg);
  });
});

describe('Activation and Softmax', () => {
  const x = f32([3, 7], 11, 4);
  const d = Array.from(x.data as Float32Array);
  const refs: Record<string, (v: number) => number> = {
    relu: (v) => Math.max(0, v),
    gelu: (v) => 0.5 * v * (1 + erfRef(v / Math.SQRT2)),
    gelu_approximate: (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))),
    silu: (v) => v / (1 + Math.exp(-v)),
    tanh: Math.tanh,
    sigmoid: (v) => 1 / (1 + Math.exp(-v)),
    linear: (v) => v,
  };
  test.each(Object.keys(refs))('%s', async (name) => {
    const act = new Activation({ activation: name as 'relu' });
    const y = await act.apply(x);
    expect(maxAbsDiff(y.data as Float32Array, d.map(refs[name]))).toBeLessThan(2e-6);
    expect(json(Activation.fromConfig(json(act.getConfig())).getConfig())).toEqual(json(act.getConfig()));
  });

  test('softmax activation (last axis) and the Softmax layer over several axes with a mask', async () => {
    const y = await new Activation({ activation: 'softmax' }).apply(x);
    const ref: number[] = [];
    for (let r = 0; r < 3; r++) {
      const row = d.slice(r * 7, r * 7 + 7);
      const m = Math.max(...row);
      const z = row.reduce((a, v) => a + Math.exp(v - m), 0);
      ref.push(...row.map((v) => Math.exp(v - m) / z));
    }
    expect(maxAbsDiff(y.data as Float32Array, ref)).toBeLessThan(1e-6);

    const t = f32([2, 3, 4], 12, 3);
    const td = t.data as Float32Array;
    const mask = new Tensor('uint8', [1, 3, 4], new Uint8Array([1, 1, 0, 1, 0, 0, 0, 0, 1, 0, 1, 1]));
    const sm = new Softmax({ axis: [1, 2] });
    const p = await sm.apply(t, { mask });
    const want = new Float64Array(24);
    for (let b = 0; b < 2; b++) {
      let z = 0;
      for (let i = 0; i < 12; i++) if (mask.data[i]) z += Math.exp(td[b * 12 + i]);
      for (let i = 0; i < 12; i++) want[b * 12 + i] = mask.data[i] ? Math.exp(td[b * 12 + i]) / z : 0;
    }
    expect(maxAbsDiff(p.data as Float32Array, want)).toBeLessThan(1e-6);
    // a fully masked row gives zeros (Keras Softmax layer)
    const q = await new Softmax().apply(t, { mask: new Tensor('uint8', [4], new Uint8Array(4)) });
    expect(Array.from(q.data as Float32Array).every((v) => v === 0)).toBe(true);
    expect(json(Softmax.fromConfig(json(sm.getConfig())).getConfig())).toEqual(json(sm.getConfig()));
    await expect(sm.apply(t, { mask: new Tensor('uint8', [2, 2, 4]) })).rejects.toThrow(/broadcastable/);
    expect(() => new Activation({ activation: 'nope' as 'relu' })).toThrow(/activation/);
  });
});

describe('merge, dropout and reshaping layers', () => {
  test('Add and Multiply broadcast like NumPy', async () => {
    const a = f32([2, 3, 4], 21);
    const b = f32([3, 1], 22);
    const c = f32([4], 23);
    const sum = await new Add().apply([a, b, c]);
    const prod = await new Multiply().apply([a, b, c]);
    const ad = a.data as Float32Array;
    const bd = b.data as Float32Array;
    const cd = c.data as Float32Array;
    const rs: number[] = [];
    const rp: number[] = [];
    for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) for (let k = 0; k < 4; k++) {
      const x = ad[(i * 3 + j) * 4 + k];
      rs.push(x + bd[j] + cd[k]);
      rp.push(x * bd[j] * cd[k]);
    }
    expect(sum.shape).toEqual([2, 3, 4]);
    expect(maxAbsDiff(sum.data as Float32Array, rs)).toBeLessThan(1e-6);
    expect(maxAbsDiff(prod.data as Float32Array, rp)).toBeLessThan(1e-6);
    await expect(new Add().apply([a, f32([2, 2, 4], 1)])).rejects.toThrow(/incompatible shapes/);
    await expect(new Add().apply(a)).rejects.toThrow(/list of at least 1/);
  });

  test('Dropout is a no-op; Reshape, Flatten and Identity', async () => {
    const x = f32([2, 3, 4], 31);
    const dr = new Dropout({ rate: 0.3, name: 'drop' });
    expect(await dr.apply(x)).toBe(x);
    expect(json(dr.getConfig())).toMatchObject({ name: 'drop', rate: 0.3, seed: null, noise_shape: null });
    expect(() => new Dropout({ rate: 1 })).toThrow(/rate/);
    const r = await new Reshape({ targetShape: [4, -1] }).apply(x);
    expect(r.shape).toEqual([2, 4, 3]);
    expect(Array.from(r.data as Float32Array)).toEqual(Array.from(x.data as Float32Array));
    await expect(new Reshape({ targetShape: [5, -1] }).apply(x)).rejects.toThrow(/12 elements/);
    expect(() => new Reshape({ targetShape: [-1, -1] })).toThrow(/targetShape/);
    const fl = await new Flatten().apply(x);
    expect(fl.shape).toEqual([2, 12]);
    const ff = await new Flatten({ dataFormat: 'channels_first' }).apply(x);
    const xd = x.data as Float32Array;
    const want: number[] = [];
    for (let n = 0; n < 2; n++) for (let r = 0; r < 4; r++) for (let c = 0; c < 3; c++) want.push(xd[(n * 3 + c) * 4 + r]);
    expect(Array.from(ff.data as Float32Array)).toEqual(want);
    expect(await new Identity().apply(x)).toBe(x);
  });
});

describe('Keras-format configs of Dense, EinsumDense, Embedding, ReversibleEmbedding', () => {
  /** Config round trip; when `shape` is given, also builds both and compares the variable layouts. */
  function roundTrip(layer: Layer, cls: { fromConfig(c: Record<string, unknown>): Layer }, shape?: (number | null)[]): Layer {
    const cfg = json(layer.getConfig());
    const again = cls.fromConfig(cfg);
    expect(again.constructor).toBe(layer.constructor);
    expect(json(again.getConfig())).toEqual(cfg);
    if (shape) {
      again.build(shape);
      expect(again.variables.map((v) => [v.name, v.dtype, v.shape])).toEqual(layer.variables.map((v) => [v.name, v.dtype, v.shape]));
      expect(again.quantizationMode).toBe(layer.quantizationMode);
    }
    return again;
  }

  test('Dense: float and every quantization config', async () => {
    const d = new Dense({ units: 6, activation: 'gelu', seed: 5, name: 'dn' });
    await d.apply(f32([2, 40], 1));
    const cfg = json(d.getConfig());
    expect(cfg).toMatchObject({
      name: 'dn',
      units: 6,
      activation: 'gelu',
      use_bias: true,
      kernel_initializer: { module: 'keras.initializers', class_name: 'GlorotUniform', config: { seed: 5, input_axes: null, output_axes: null }, registered_name: null },
      bias_initializer: { module: 'keras.initializers', class_name: 'Zeros', config: {}, registered_name: null },
      quantization_config: null,
    });
    roundTrip(d, Dense, [null, 40]);
    for (const [i, config] of [new Int8QuantizationConfig(), new Int4QuantizationConfig({ blockSize: 8 }), new Int4QuantizationConfig({ blockSize: -1 }), new Float8QuantizationConfig()].entries()) {
      const q = new Dense({ units: 6, useBias: i % 2 === 0, seed: 7 });
      await q.apply(f32([2, 40], 2));
      await q.quantize({ config });
      const c = json(q.getConfig());
      expect((c.quantization_config as { class_name: string }).class_name).toBe(config.constructor.name);
      roundTrip(q, Dense, [null, 40]);
    }
  });

  test('EinsumDense and the fixture config of fn_int4_block16.keras', async () => {
    const e = new EinsumDense({ equation: 'abc,cde->abde', outputShape: [null, 2, 8], biasAxes: 'de', activation: 'relu', seed: 3 });
    await e.apply(f32([2, 4, 16], 3));
    roundTrip(e, EinsumDense, [null, 4, 16]);
    await e.quantize('int8');
    roundTrip(e, EinsumDense, [null, 4, 16]);
    const fixture = {
      name: 'einsum_dense',
      trainable: true,
      dtype: { module: 'keras.dtype_policies', class_name: 'Int4DTypePolicy', config: { mode: 'int4/16', source_name: 'float32' }, registered_name: null },
      output_shape: [null, 64],
      equation: 'abc,cd->abd',
      activation: 'linear',
      bias_axes: 'd',
      kernel_initializer: { module: 'keras.initializers', class_name: 'GlorotUniform', config: { seed: null, input_axes: null, output_axes: null }, registered_name: null },
      bias_initializer: { module: 'keras.initializers', class_name: 'Zeros', config: {}, registered_name: null },
      kernel_regularizer: null,
      bias_regularizer: null,
      activity_regularizer: null,
      kernel_constraint: null,
      bias_constraint: null,
      quantization_config: {
        module: 'keras.quantizers',
        class_name: 'Int4QuantizationConfig',
        config: { weight_quantizer: null, activation_quantizer: null, block_size: 16 },
        registered_name: null,
        shared_object_id: 139751440344592,
      },
    };
    const fromKeras = getLayerClass('EinsumDense')?.fromConfig(fixture) as EinsumDense;
    fromKeras.build([null, 16, 32]);
    // fixture weights: kernel int8 32x32 (packed 64 -> 32), bias 64, kernel_scale 2x64, kernel_zero int8 2x64, g_idx 32
    expect(fromKeras.variables.map((v) => [v.name, v.dtype, v.shape])).toEqual([
      ['kernel', 'int8', [32, 32]],
      ['bias', 'float32', [64]],
      ['kernel_scale', 'float32', [2, 64]],
      ['kernel_zero', 'int8', [2, 64]],
      ['g_idx', 'float32', [32]],
    ]);
    const { shared_object_id: _drop, ...qc } = fixture.quantization_config;
    expect(json(fromKeras.getConfig())).toEqual({ ...fixture, quantization_config: qc });
  });

  test('Embedding / ReversibleEmbedding (fixture config of fn_int4_block16.keras), mask_zero refused', async () => {
    const fixture = {
      name: 'embedding',
      trainable: true,
      dtype: { module: 'keras.dtype_policies', class_name: 'Int4DTypePolicy', config: { mode: 'int4/16', source_name: 'float32' }, registered_name: null },
      input_dim: 100,
      output_dim: 32,
      embeddings_initializer: { module: 'keras.initializers', class_name: 'RandomUniform', config: { seed: null, minval: -0.05, maxval: 0.05 }, registered_name: null },
      embeddings_regularizer: null,
      activity_regularizer: null,
      embeddings_constraint: null,
      mask_zero: false,
      quantization_config: { module: 'keras.quantizers', class_name: 'Int4QuantizationConfig', config: { weight_quantizer: null, activation_quantizer: null, block_size: 16 }, registered_name: null },
    };
    const emb = Embedding.fromConfig(fixture);
    emb.build([null, 16]);
    // fixture: embeddings int8 100x16, embeddings_scale 100x2, embeddings_zero int8 100x2, g_idx 32
    expect(emb.variables.map((v) => [v.name, v.dtype, v.shape])).toEqual([
      ['embeddings', 'int8', [100, 16]],
      ['embeddings_scale', 'float32', [100, 2]],
      ['embeddings_zero', 'int8', [100, 2]],
      ['g_idx', 'float32', [32]],
    ]);
    expect(json(emb.getConfig())).toEqual(fixture);
    expect(() => Embedding.fromConfig({ ...fixture, mask_zero: true })).toThrow(/mask_zero/);

    const f = new Embedding({ inputDim: 50, outputDim: 8, seed: 2 });
    await f.apply(new Tensor('int32', [1, 3], new Int32Array([1, 2, 3])));
    roundTrip(f, Embedding, [null, 3]);
    await f.quantize('int8');
    roundTrip(f, Embedding, [null, 3]);

    for (const tie of [true, false]) {
      const r = new ReversibleEmbedding({ inputDim: 40, outputDim: 8, tieWeights: tie, logitSoftCap: tie ? null : 30, seed: 4 });
      await r.apply(new Tensor('int32', [1, 2], new Int32Array([4, 5])));
      const cfg = json(r.getConfig());
      expect(cfg).toMatchObject({ tie_weights: tie, reverse_dtype: null, logit_soft_cap: tie ? null : 30 });
      roundTrip(r, ReversibleEmbedding, [null, 2]);
      await r.quantize('int4', { config: new Int4QuantizationConfig({ blockSize: 4 }) });
      roundTrip(r, ReversibleEmbedding, [null, 2]);
    }
  });

  test('every other layer round-trips and the registry knows every built-in class', () => {
    const layers: Array<[Layer, string]> = [
      [new LayerNormalization({ axis: [1, 2], epsilon: 1e-5, center: false }), 'LayerNormalization'],
      [new RMSNormalization({ axis: [-1] }), 'RMSNormalization'],
      [new Activation({ activation: 'silu' }), 'Activation'],
      [new Softmax({ axis: [3] }), 'Softmax'],
      [new Add({ name: 'residual' }), 'Add'],
      [new Multiply(), 'Multiply'],
      [new Dropout({ rate: 0.1, seed: 3, noiseShape: [null, 1, 4] }), 'Dropout'],
      [new Reshape({ targetShape: [2, -1] }), 'Reshape'],
      [new Flatten({ dataFormat: 'channels_first' }), 'Flatten'],
      [new Identity({ dtype: 'int8_from_float32' }), 'Identity'],
    ];
    for (const [layer, name] of layers) {
      const cls = getLayerClass(name);
      expect(cls).toBe(layer.constructor);
      const cfg = json(layer.getConfig());
      expect(json((cls as NonNullable<typeof cls>).fromConfig(cfg).getConfig())).toEqual(cfg);
    }
    expect(registeredLayerNames()).toEqual(
      expect.arrayContaining([
        'Dense',
        'EinsumDense',
        'Embedding',
        'ReversibleEmbedding',
        'MultiHeadAttention',
        'GroupedQueryAttention',
        'GroupQueryAttention',
        'TransformerEncoder',
        'LayerNormalization',
        'RMSNormalization',
      ]),
    );
    expect(() => LayerNormalization.fromConfig('x' as unknown as Record<string, unknown>)).toThrow(/plain object/);
    expect(() => Dense.fromConfig({ units: 4, kernel_initializer: { class_name: 'Orthogonal', config: {} } })).toThrow(/Orthogonal/);
    expect(() => Dense.fromConfig({ units: 4, quantization_config: { class_name: 'Nope', config: {} } })).toThrow(/Nope/);
  });
});

describe('GlobalAveragePooling1D', () => {
  test('averages over steps for both data formats; config round trip', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { GlobalAveragePooling1D, Tensor: T } = require('../../lib') as typeof import('../../lib');
    const x = new T('float32', [2, 3, 4], Float32Array.from({ length: 24 }, (_, i) => i * 0.5 - 3));
    const last = await new GlobalAveragePooling1D().apply(x);
    expect(last.shape).toEqual([2, 4]);
    for (let n = 0; n < 2; n++)
      for (let c = 0; c < 4; c++) {
        const want = [0, 1, 2].reduce((s, t) => s + (x.data as Float32Array)[(n * 3 + t) * 4 + c], 0) / 3;
        expect(last.data[n * 4 + c]).toBeCloseTo(want, 6);
      }
    const firstL = new GlobalAveragePooling1D({ dataFormat: 'channels_first', keepdims: true });
    const first = await firstL.apply(x);
    expect(first.shape).toEqual([2, 3, 1]);
    expect(first.data[0]).toBeCloseTo((-3 - 2.5 - 2 - 1.5) / 4, 6);
    expect(GlobalAveragePooling1D.fromConfig(firstL.getConfig()).getConfig()).toEqual(firstL.getConfig());
    await expect(new GlobalAveragePooling1D().apply(new T('float32', [2, 3]))).rejects.toThrow(/rank-3/);
  });
});
