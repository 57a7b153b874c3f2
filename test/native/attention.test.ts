// MultiHeadAttention / GroupedQueryAttention / TransformerEncoder: structure as Keras builds it (names, paths,
// equations, kernel shapes, saved attribute names), float outputs against a direct float64 attention written
// here (masks: causal, padding, explicit, fully masked rows), quantization through the projections (MSE vs
// float, policies recorded in a DTypePolicyMap), config round trips and errors.
import { Tensor } from '../../lib/tensor';
import { DTypePolicyMap } from '../../lib/dtype-policies';
import { Int4QuantizationConfig } from '../../lib/quantizers';
import { EinsumDense } from '../../lib/layers/einsum';
import { GroupedQueryAttention, GroupQueryAttention, MultiHeadAttention } from '../../lib/layers/attention';
import { TransformerEncoder } from '../../lib/layers/transformer';
import { getLayerClass } from '../../lib/layers/registry';
import '../../lib/layers/builtin';
import { randomF32 } from '../helpers';

const f32 = (shape: number[], seed: number, scale = 1) => new Tensor('float32', shape, randomF32(shape.reduce((a, b) => a * b, 1), seed, scale));

function mse(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return s / a.length;
}
function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
function meanSquare(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return s / a.length;
}

/** Gives every projection a random bias so biases are exercised. */
function randomizeBiases(layers: EinsumDense[], seed: number): void {
  layers.forEach((l, i) => {
    if (l.bias) l.bias.assign(new Tensor('float32', l.bias.shape, randomF32(l.bias.value.size, seed + i, 0.2)));
  });
}

interface Proj {
  w: Float32Array; // [in, heads, dim]
  b: Float32Array | null; // [heads, dim]
}

/** x [B, L, D] -> [B, L, heads, dim] in float64. */
function project(x: Tensor, p: Proj, heads: number, dim: number): Float64Array {
  const [B, L, D] = x.shape;
  const xd = x.data as Float32Array;
  const out = new Float64Array(B * L * heads * dim);
  for (let b = 0; b < B; b++)
    for (let l = 0; l < L; l++)
      for (let h = 0; h < heads; h++)
        for (let c = 0; c < dim; c++) {
          let s = p.b ? p.b[h * dim + c] : 0;
          for (let m = 0; m < D; m++) s += xd[(b * L + l) * D + m] * p.w[(m * heads + h) * dim + c];
          out[((b * L + l) * heads + h) * dim + c] = s;
        }
  return out;
}

interface RefArgs {
  query: Tensor;
  value: Tensor;
  key: Tensor;
  q: Proj;
  k: Proj;
  v: Proj;
  o: { w: Float32Array; b: Float32Array | null; out: number }; // w [H, dv, out]
  gate?: Proj;
  H: number;
  Hkv: number;
  dk: number;
  dv: number;
  keep?: (b: number, t: number, s: number) => boolean;
  fullyMasked: 'zero' | 'mean';
}

/** Direct multi-head attention in float64 from the weights alone. */
function refAttention(a: RefArgs): { out: Float64Array; probs: Float64Array } {
  const [B, T] = a.query.shape;
  const S = a.value.shape[1];
  const { H, Hkv, dk, dv } = a;
  const Q = project(a.query, a.q, H, dk);
  const K = project(a.key, a.k, Hkv, dk);
  const V = project(a.value, a.v, Hkv, dv);
  const G = a.gate ? project(a.query, a.gate, H, dv) : null;
  const probs = new Float64Array(B * H * T * S);
  const ctx = new Float64Array(B * T * H * dv);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / Hkv));
      for (let t = 0; t < T; t++) {
        const logits = new Float64Array(S);
        const kept: boolean[] = [];
        for (let s = 0; s < S; s++) {
          let d = 0;
          for (let c = 0; c < dk; c++) d += Q[((b * T + t) * H + h) * dk + c] * K[((b * S + s) * Hkv + g) * dk + c];
          logits[s] = d / Math.sqrt(dk);
          kept.push(a.keep ? a.keep(b, t, s) : true);
        }
        const any = kept.some((x) => x);
        let max = -Infinity;
        for (let s = 0; s < S; s++) if (kept[s]) max = Math.max(max, logits[s]);
        let z = 0;
        for (let s = 0; s < S; s++) if (kept[s]) z += Math.exp(logits[s] - max);
        for (let s = 0; s < S; s++) {
          const p = any ? (kept[s] ? Math.exp(logits[s] - max) / z : 0) : a.fullyMasked === 'zero' ? 0 : 1 / S;
          probs[((b * H + h) * T + t) * S + s] = p;
          for (let c = 0; c < dv; c++) ctx[((b * T + t) * H + h) * dv + c] += p * V[((b * S + s) * Hkv + g) * dv + c];
        }
      }
    }
  if (G) for (let i = 0; i < ctx.length; i++) ctx[i] *= 1 / (1 + Math.exp(-G[i]));
  const O = a.o.out;
  const out = new Float64Array(B * T * O);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++)
      for (let o = 0; o < O; o++) {
        let s = a.o.b ? a.o.b[o] : 0;
        for (let h = 0; h < H; h++) for (let c = 0; c < dv; c++) s += ctx[((b * T + t) * H + h) * dv + c] * a.o.w[(h * dv + c) * O + o];
        out[(b * T + t) * O + o] = s;
      }
  return { out, probs };
}

function projOf(l: EinsumDense): Proj {
  return { w: (l.kernel as NonNullable<EinsumDense['kernel']>).value.data, b: l.bias ? l.bias.value.data : null };
}

function refArgsFor(
  layer: MultiHeadAttention | GroupedQueryAttention,
  query: Tensor,
  value: Tensor,
  key: Tensor,
  extra: Partial<RefArgs> & { fullyMasked: 'zero' | 'mean' },
): RefArgs {
  const isMha = layer instanceof MultiHeadAttention;
  const H = isMha ? layer.numHeads : layer.numQueryHeads;
  const Hkv = isMha ? layer.numHeads : layer.numKeyValueHeads;
  const dk = isMha ? layer.keyDim : layer.headDim;
  const dv = isMha ? layer.valueDim : layer.headDim;
  const out = layer.outputDense;
  return {
    query,
    value,
    key,
    q: projOf(layer.queryDense),
    k: projOf(layer.keyDense),
    v: projOf(layer.valueDense),
    o: { w: projOf(out).w, b: projOf(out).b, out: out.kernelShape[out.kernelShape.length - 1] },
    gate: layer.gateDense ? projOf(layer.gateDense) : undefined,
    H,
    Hkv,
    dk,
    dv,
    ...extra,
  };
}

describe('MultiHeadAttention structure (as Keras builds it)', () => {
  test('sub-layer names, paths, equations, kernel and bias shapes, saved attribute names', async () => {
    const mha = new MultiHeadAttention({ numHeads: 2, keyDim: 16, name: 'mha_struct' });
    await mha.apply([f32([2, 8, 32], 1), f32([2, 8, 32], 2)]);
    const [q, k, v, o] = [mha.queryDense, mha.keyDense, mha.valueDense, mha.outputDense];
    expect([q.name, k.name, v.name, o.name]).toEqual(['query', 'key', 'value', 'attention_output']);
    expect([q.path, o.path]).toEqual(['mha_struct/query', 'mha_struct/attention_output']);
    expect(q.equation).toBe('abc,cde->abde');
    expect(o.equation).toBe('abcd,cde->abe');
    expect([q.biasAxes, o.biasAxes]).toEqual(['de', 'e']);
    // shapes from the fixture mha_float32.keras (key_dense/vars/0 32x2x16, /1 2x16, output_dense 2x16x32, 32)
    expect(q.kernelShape).toEqual([32, 2, 16]);
    expect(q.bias?.shape).toEqual([2, 16]);
    expect(o.kernelShape).toEqual([2, 16, 32]);
    expect(o.bias?.shape).toEqual([32]);
    expect(q.variables.map((x) => x.path)).toEqual(['mha_struct/query/kernel', 'mha_struct/query/bias']);
    expect(mha.savableChildren().map(([n]) => n)).toEqual(['_dropout_layer', '_softmax', 'key_dense', 'output_dense', 'query_dense', 'value_dense']);
    expect(mha.attentionAxes).toEqual([1]);
    expect(mha.getConfig().attention_axes).toEqual([1]);
  });

  test('GQA structure (Keras equations and attribute names)', async () => {
    const gqa = new GroupQueryAttention({ headDim: 8, numQueryHeads: 4, numKeyValueHeads: 2, name: 'gqa_struct' });
    expect(gqa).toBeInstanceOf(GroupedQueryAttention);
    await gqa.apply([f32([1, 5, 24], 3), f32([1, 6, 24], 4)]);
    expect(gqa.queryDense.equation).toBe('bqm,muh->bquh');
    expect(gqa.keyDense.equation).toBe('bkm,mvh->bkvh');
    expect(gqa.outputDense.equation).toBe('bquh,uhm->bqm');
    expect(gqa.queryDense.kernelShape).toEqual([24, 4, 8]);
    expect(gqa.keyDense.kernelShape).toEqual([24, 2, 8]);
    expect(gqa.outputDense.kernelShape).toEqual([4, 8, 24]);
    expect(gqa.savableChildren().map(([n]) => n)).toEqual(['_dropout_layer', '_key_dense', '_output_dense', '_query_dense', '_softmax', '_value_dense']);
  });
});

describe('MultiHeadAttention float vs a direct float64 attention', () => {
  const B = 2;
  const T = 5;
  const S = 7;

  test.each([
    ['self-attention', false],
    ['self-attention, causal', true],
  ])('%s', async (_n, causal) => {
    const mha = new MultiHeadAttention({ numHeads: 3, keyDim: 4, valueDim: 6, seed: 11 });
    const x = f32([B, T, 12], 21);
    await mha.apply([x, x]);
    randomizeBiases([mha.queryDense, mha.keyDense, mha.valueDense, mha.outputDense], 100);
    const y = await mha.apply([x, x], { useCausalMask: causal });
    expect(y.shape).toEqual([B, T, 12]);
    const ref = refAttention(refArgsFor(mha, x, x, x, { fullyMasked: 'mean', keep: causal ? (_b, t, s) => t >= s : undefined }));
    expect(maxAbsDiff(y.data as Float32Array, ref.out)).toBeLessThan(2e-5);
  });

  test('cross-attention with a distinct key, S != T, output_shape, padding and explicit masks', async () => {
    const mha = new MultiHeadAttention({ numHeads: 2, keyDim: 8, outputShape: 10, seed: 5 });
    const query = f32([B, T, 16], 31);
    const value = f32([B, S, 12], 32);
    const key = f32([B, S, 20], 33);
    await mha.apply([query, value, key]);
    randomizeBiases([mha.queryDense, mha.keyDense, mha.valueDense, mha.outputDense], 200);
    const valueMask = new Tensor('int32', [B, S], Int32Array.from({ length: B * S }, (_, i) => (i % S < S - 2 || i < S ? 1 : 0)));
    const am = new Uint8Array(B * T * S).map((_, i) => ((i * 7) % 5 === 0 ? 0 : 1));
    const attentionMask = new Tensor('uint8', [B, T, S], am);
    const vm = valueMask.data as Int32Array;
    const keep = (b: number, t: number, s: number) => vm[b * S + s] !== 0 && am[(b * T + t) * S + s] !== 0;
    const y = await mha.apply([query, value, key], { valueMask, attentionMask });
    expect(y.shape).toEqual([B, T, 10]);
    const ref = refAttention(refArgsFor(mha, query, value, key, { fullyMasked: 'mean', keep }));
    expect(maxAbsDiff(y.data as Float32Array, ref.out)).toBeLessThan(2e-5);
    // the attention scores path (Keras's Softmax layer) gives the same output here and the probabilities
    const { output, scores } = await mha.applyWithScores([query, value, key], { valueMask, attentionMask });
    expect(scores.shape).toEqual([B, 2, T, S]);
    expect(maxAbsDiff(output.data, ref.out)).toBeLessThan(2e-5);
    expect(maxAbsDiff(scores.data, ref.probs)).toBeLessThan(1e-6);
  });

  test('fully masked rows: mean of values on the fused path, zeros with scores (Keras behaviour)', async () => {
    const mha = new MultiHeadAttention({ numHeads: 2, keyDim: 4, seed: 9 });
    const x = f32([1, 4, 8], 41);
    await mha.apply(x);
    randomizeBiases([mha.queryDense, mha.keyDense, mha.valueDense, mha.outputDense], 300);
    const queryMask = new Tensor('float32', [1, 4], new Float32Array([1, 0, 1, 1]));
    const keep = (_b: number, t: number, s: number) => t !== 1 && t >= s; // query row 1 is padding
    const y = await mha.apply(x, { queryMask, useCausalMask: true });
    const refMean = refAttention(refArgsFor(mha, x, x, x, { fullyMasked: 'mean', keep }));
    expect(maxAbsDiff(y.data as Float32Array, refMean.out)).toBeLessThan(2e-5);
    const { output, scores } = await mha.applyWithScores(x, { queryMask, useCausalMask: true });
    const refZero = refAttention(refArgsFor(mha, x, x, x, { fullyMasked: 'zero', keep }));
    expect(maxAbsDiff(output.data, refZero.out)).toBeLessThan(2e-5);
    expect(maxAbsDiff(scores.data, refZero.probs)).toBeLessThan(1e-6);
    expect(Array.from(scores.data.subarray(4, 8))).toEqual([0, 0, 0, 0]); // head 0, query row 1
  });

  test('gated attention and a sliding window', async () => {
    const mha = new MultiHeadAttention({ numHeads: 2, keyDim: 4, useGate: true, slidingWindow: 2, seed: 3 });
    const x = f32([2, 6, 8], 51);
    await mha.apply(x);
    expect(mha.gateDense?.name).toBe('gate');
    expect(mha.gateDense?.activation).toBe('sigmoid');
    expect(mha.savableChildren().map(([n]) => n)).toContain('_gate_dense');
    randomizeBiases([mha.queryDense, mha.keyDense, mha.valueDense, mha.outputDense, mha.gateDense as EinsumDense], 400);
    const y = await mha.apply(x);
    const ref = refAttention(refArgsFor(mha, x, x, x, { fullyMasked: 'mean', keep: (_b, t, s) => Math.abs(t - s) < 2 }));
    expect(maxAbsDiff(y.data as Float32Array, ref.out)).toBeLessThan(2e-5);
  });
});

describe('GroupedQueryAttention float vs reference', () => {
  test.each([
    [4, 2, false],
    [4, 1, true],
    [3, 3, true],
  ])('Hq=%i Hkv=%i causal=%s', async (Hq, Hkv, causal) => {
    const gqa = new GroupedQueryAttention({ headDim: 4, numQueryHeads: Hq, numKeyValueHeads: Hkv, seed: 17 });
    const q = f32([2, 5, 12], 61);
    const v = f32([2, 5, 12], 62);
    await gqa.apply([q, v]);
    randomizeBiases([gqa.queryDense, gqa.keyDense, gqa.valueDense, gqa.outputDense], 500);
    const y = await gqa.apply([q, v], { useCausalMask: causal });
    const ref = refAttention(refArgsFor(gqa, q, v, v, { fullyMasked: 'mean', keep: causal ? (_b, t, s) => t >= s : undefined }));
    expect(maxAbsDiff(y.data as Float32Array, ref.out)).toBeLessThan(2e-5);
  });
});

describe('MultiHeadAttention quantized through its projections', () => {
  const x = f32([2, 8, 32], 71);

  async function floatAndQuantized(mode: string, config?: Int4QuantizationConfig) {
    const mha = new MultiHeadAttention({ numHeads: 2, keyDim: 16, name: `mha_${mode.replace('/', '')}${config ? '_cfg' : ''}`, seed: 23 });
    const yf = (await mha.apply(x)) as Tensor<'float32'>;
    if (config) await mha.quantize('int4', { config });
    else await mha.quantize(mode);
    const yq = (await mha.apply(x)) as Tensor<'float32'>;
    return { mha, yf, yq };
  }

  // Measured relative MSE (MSE / mean(y^2)) on this input: int8 6.8e-5, int4 (block 128 = one group of the 32
  // inputs) 9.0e-3, int4 block 8 5.6e-3, float8 3.2e-3. Thresholds leave ~3x headroom.
  test.each([
    ['int8', undefined, 2e-4, 'int8_from_float32'],
    ['int4', undefined, 3e-2, 'int4/128_from_float32'],
    ['int4', new Int4QuantizationConfig({ blockSize: 8 }), 2e-2, 'int4/8_from_float32'],
    ['float8', undefined, 1e-2, 'float8_from_float32'],
  ] as const)('%s %#: close to float, policies recorded in a DTypePolicyMap', async (mode, config, relMse, policyName) => {
    const { mha, yf, yq } = await floatAndQuantized(mode, config as Int4QuantizationConfig | undefined);
    const rel = mse(yf.data, yq.data) / meanSquare(yf.data);
    expect(rel).toBeLessThan(relMse);
    expect(rel).toBeGreaterThan(0); // actually quantized
    expect(mha.isQuantized).toBe(true);
    const p = mha.dtypePolicy as DTypePolicyMap;
    expect(p).toBeInstanceOf(DTypePolicyMap);
    const paths = ['query', 'key', 'value', 'attention_output'].map((n) => `${mha.name}/${n}`);
    expect([...p.keys()].sort()).toEqual([...paths].sort());
    for (const path of paths) expect(p.get(path).name).toBe(policyName);
    expect(p.defaultPolicy.name).toBe('float32');
    expect(mha.quantizationMode).toBeNull(); // the composite itself stays float
    for (const l of mha.quantizableLayers()) expect(l.quantizationMode).toBe(mode);
    await expect(mha.quantize('int8')).rejects.toThrow(/already quantized/);
  });

  test('config has the exact Keras DTypePolicyMap format of mha_int8_policymap.keras and round-trips', async () => {
    const mha = new MultiHeadAttention({ numHeads: 2, keyDim: 16, name: 'mha', seed: 29 });
    await mha.apply(x);
    await mha.quantize('int8');
    const yq = (await mha.apply(x)) as Tensor<'float32'>;
    const cfg = JSON.parse(JSON.stringify(mha.getConfig()));
    const int8 = { module: 'keras.dtype_policies', class_name: 'QuantizedDTypePolicy', config: { mode: 'int8', source_name: 'float32' }, registered_name: null };
    expect(cfg.dtype).toEqual({
      module: 'keras.dtype_policies',
      class_name: 'DTypePolicyMap',
      config: { default_policy: 'float32', policy_map: { 'mha/query': int8, 'mha/key': int8, 'mha/value': int8, 'mha/attention_output': int8 } },
      registered_name: null,
    });
    expect(cfg).toMatchObject({ num_heads: 2, key_dim: 16, value_dim: 16, dropout: 0, use_bias: true, use_gate: false, output_shape: null, sliding_window: null });
    const again = MultiHeadAttention.fromConfig(cfg);
    again.build([[null, 8, 32], [null, 8, 32]]);
    expect(JSON.parse(JSON.stringify(again.getConfig()))).toEqual(cfg);
    // quantized variables are built directly, in Keras's layout (fixture: kernel int8 32x2x16, bias 2x16, scale 1x1x2x16)
    expect(again.queryDense.variables.map((v) => [v.name, v.dtype, v.shape])).toEqual([
      ['kernel', 'int8', [32, 2, 16]],
      ['bias', 'float32', [2, 16]],
      ['kernel_scale', 'float32', [1, 1, 2, 16]],
    ]);
    expect(again.isQuantized).toBe(true);
    const src = new Map(mha.savableChildren());
    for (const [attr, child] of again.savableChildren()) {
      const want = (src.get(attr) as typeof child).saveOwnVariables();
      expect(child.saveOwnVariables().map((t) => [t.dtype, t.shape])).toEqual(want.map((t) => [t.dtype, t.shape]));
      child.loadOwnVariables(want); // counts, dtypes and shapes match Keras's positional layout
    }
    expect(yq.shape).toEqual([2, 8, 32]);
  });

  test('float config + weights round trip reproduces the outputs exactly', async () => {
    const mha = new MultiHeadAttention({ numHeads: 2, keyDim: 8, valueDim: 4, outputShape: [6], name: 'mha_rt', seed: 43 });
    const y = (await mha.apply(x)) as Tensor<'float32'>;
    const again = MultiHeadAttention.fromConfig(JSON.parse(JSON.stringify(mha.getConfig())));
    again.build([[null, 8, 32], [null, 8, 32]]);
    const src = new Map(mha.savableChildren());
    for (const [attr, child] of again.savableChildren()) child.loadOwnVariables((src.get(attr) as typeof child).saveOwnVariables());
    const y2 = (await again.apply(x)) as Tensor<'float32'>;
    expect(Array.from(y2.data)).toEqual(Array.from(y.data));
  });

  test('the Keras fixture config (mha_int8_policymap.keras) rebuilds quantized projections', () => {
    const q8 = { module: 'keras.dtype_policies', class_name: 'QuantizedDTypePolicy', config: { mode: 'int8', source_name: 'float32' }, registered_name: null };
    const config = {
      name: 'mha',
      trainable: true,
      dtype: {
        module: 'keras.dtype_policies',
        class_name: 'DTypePolicyMap',
        config: { default_policy: 'float32', policy_map: { 'mha/attention_output': q8, 'mha/value': q8, 'mha/key': q8, 'mha/query': q8 } },
        registered_name: null,
      },
      num_heads: 2,
      key_dim: 16,
      value_dim: 16,
      dropout: 0.0,
      use_bias: true,
      use_gate: false,
      output_shape: null,
      attention_axes: [1],
      sliding_window: null,
      kernel_initializer: { module: 'keras.initializers', class_name: 'GlorotUniform', config: { seed: null, input_axes: null, output_axes: null }, registered_name: null },
      bias_initializer: { module: 'keras.initializers', class_name: 'Zeros', config: {}, registered_name: null },
      kernel_regularizer: null,
      bias_regularizer: null,
      activity_regularizer: null,
      kernel_constraint: null,
      bias_constraint: null,
      seed: null,
    };
    const mha = getLayerClass('MultiHeadAttention')?.fromConfig(config) as MultiHeadAttention;
    mha.build([[null, 8, 32], [null, 8, 32]]);
    const byAttr = new Map(mha.savableChildren());
    expect((byAttr.get('output_dense') as EinsumDense).variables.map((v) => [v.dtype, v.shape])).toEqual([
      ['int8', [2, 16, 32]],
      ['float32', [32]],
      ['float32', [1, 1, 32]],
    ]);
    expect((byAttr.get('_softmax') as EinsumDense).quantizationMode).toBeNull();
    expect(JSON.parse(JSON.stringify(mha.getConfig()))).toEqual(config);
  });

  test('setDTypePolicy with a quantized policy quantizes the projections; GPTQ and unbuilt layers are refused', async () => {
    const mha = new MultiHeadAttention({ numHeads: 2, keyDim: 4, seed: 31 });
    await expect(mha.quantize('int8')).rejects.toThrow(/isn't yet built/);
    await mha.apply(f32([1, 3, 8], 81));
    await expect(mha.quantize('gptq')).rejects.toThrow();
    expect(mha.isQuantized).toBe(false);
    await mha.setDTypePolicy('int8_from_float32');
    expect(mha.dtypePolicy).toBeInstanceOf(DTypePolicyMap);
    expect((mha.dtypePolicy as DTypePolicyMap).defaultPolicy.name).toBe('float32');
    expect(mha.quantizableLayers().every((l) => l.quantizationMode === 'int8')).toBe(true);
    const y = await mha.apply(f32([1, 3, 8], 81));
    expect(y.shape).toEqual([1, 3, 8]);
  });

  test('GQA quantizes the same way', async () => {
    const gqa = new GroupedQueryAttention({ headDim: 8, numQueryHeads: 4, numKeyValueHeads: 2, name: 'gqa_q', seed: 37 });
    const yf = (await gqa.apply(x)) as Tensor<'float32'>;
    await gqa.quantize('int8');
    const yq = (await gqa.apply(x)) as Tensor<'float32'>;
    expect(mse(yf.data, yq.data) / meanSquare(yf.data)).toBeLessThan(2e-4); // measured 5.8e-5
    expect([...(gqa.dtypePolicy as DTypePolicyMap).keys()].sort()).toEqual(['gqa_q/attention_output', 'gqa_q/key', 'gqa_q/query', 'gqa_q/value']);
    const cfg = JSON.parse(JSON.stringify(gqa.getConfig()));
    expect(cfg).toMatchObject({ head_dim: 8, num_query_heads: 4, num_key_value_heads: 2 });
    const again = GroupedQueryAttention.fromConfig(cfg);
    again.build([[null, 8, 32], [null, 8, 32]]);
    expect(again.keyDense.variables.map((v) => v.dtype)).toEqual(['int8', 'float32', 'float32']);
    expect(JSON.parse(JSON.stringify(again.getConfig()))).toEqual(cfg);
  });

  test('setPath moves sub-layers, variables and policy-map entries', async () => {
    const mha = new MultiHeadAttention({ numHeads: 2, keyDim: 4, name: 'mv', seed: 41 });
    const xin = f32([1, 3, 8], 91);
    await mha.apply(xin);
    await mha.quantize('int8');
    const before = (await mha.apply(xin)) as Tensor<'float32'>;
    await mha.setPath('encoder/mv');
    expect(mha.queryDense.path).toBe('encoder/mv/query');
    expect(mha.queryDense.variables[0].path).toBe('encoder/mv/query/kernel');
    expect([...(mha.dtypePolicy as DTypePolicyMap).keys()].sort()).toEqual(['encoder/mv/attention_output', 'encoder/mv/key', 'encoder/mv/query', 'encoder/mv/value']);
    expect(mha.queryDense.quantizationMode).toBe('int8');
    const after = (await mha.apply(xin)) as Tensor<'float32'>;
    expect(Array.from(after.data)).toEqual(Array.from(before.data));
  });
});

describe('attention errors', () => {
  test('bad options, shapes and masks', async () => {
    expect(() => new MultiHeadAttention({ numHeads: 0, keyDim: 4 })).toThrow(/num_heads/);
    expect(() => new MultiHeadAttention({ numHeads: 2, keyDim: 1.5 })).toThrow(/key_dim/);
    expect(() => new MultiHeadAttention({ numHeads: 2, keyDim: 4, attentionAxes: [2] })).toThrow(/axis 1/);
    expect(() => new MultiHeadAttention({ numHeads: 2, keyDim: 4, slidingWindow: 0 })).toThrow(/sliding_window/);
    expect(() => new GroupedQueryAttention({ headDim: 4, numQueryHeads: 4, numKeyValueHeads: 3 })).toThrow(/divisible/);
    const mha = new MultiHeadAttention({ numHeads: 2, keyDim: 4 });
    await expect(mha.apply([f32([1, 3, 8], 1), f32([1, 4, 8], 2), f32([1, 5, 8], 3)])).rejects.toThrow(/value_shape/);
    await expect(mha.apply([f32([3, 8], 1), f32([3, 8], 2)])).rejects.toThrow(/rank-3/);
    await mha.apply(f32([1, 3, 8], 4));
    await expect(mha.apply([f32([1, 3, 9], 1), f32([1, 3, 8], 2)])).rejects.toThrow(/Expected a \[batch, seq, 8\] tensor for the query/);
    await expect(mha.apply([f32([1, 3, 8], 1), f32([2, 3, 8], 2)])).rejects.toThrow(/same batch size/);
    await expect(mha.apply(f32([1, 3, 8], 4), { attentionMask: new Tensor('uint8', [1, 2, 3]) })).rejects.toThrow(/broadcastable/);
    await expect(mha.apply(f32([1, 3, 8], 4), { valueMask: new Tensor('uint8', [1, 4]) })).rejects.toThrow(/valueMask/);
  });
});

describe('TransformerEncoder', () => {
  const x = f32([2, 6, 16], 101);

  function layerNorm(v: Float64Array, rows: number, dim: number, g: Float32Array, b: Float32Array, eps: number): Float64Array {
    const out = new Float64Array(v.length);
    for (let r = 0; r < rows; r++) {
      let m = 0;
      for (let j = 0; j < dim; j++) m += v[r * dim + j];
      m /= dim;
      let s = 0;
      for (let j = 0; j < dim; j++) s += (v[r * dim + j] - m) ** 2;
      const inv = 1 / Math.sqrt(s / dim + eps);
      for (let j = 0; j < dim; j++) out[r * dim + j] = (v[r * dim + j] - m) * inv * g[j] + b[j];
    }
    return out;
  }
  function dense(v: Float64Array, rows: number, inDim: number, w: Float32Array, b: Float32Array, units: number, relu: boolean): Float64Array {
    const out = new Float64Array(rows * units);
    for (let r = 0; r < rows; r++)
      for (let u = 0; u < units; u++) {
        let s = b[u];
        for (let i = 0; i < inDim; i++) s += v[r * inDim + i] * w[i * units + u];
        out[r * units + u] = relu ? Math.max(0, s) : s;
      }
    return out;
  }

  test.each([false, true])('normalizeFirst=%s vs reference, with a padding mask', async (pre) => {
    const block = new TransformerEncoder({ intermediateDim: 24, numHeads: 4, normalizeFirst: pre, seed: 7, name: pre ? 'pre_block' : 'post_block' });
    await block.apply(x);
    const mha = block.attention;
    expect(mha.path).toBe(`${block.name}/self_attention_layer`);
    expect(mha.queryDense.path).toBe(`${block.name}/self_attention_layer/query`);
    expect(block.savableChildren().map(([n]) => n)).toEqual([
      '_feedforward_dropout',
      '_feedforward_intermediate_dense',
      '_feedforward_layer_norm',
      '_feedforward_output_dense',
      '_self_attention_dropout',
      '_self_attention_layer',
      '_self_attention_layer_norm',
    ]);
    randomizeBiases([mha.queryDense, mha.keyDense, mha.valueDense, mha.outputDense], 600);
    const kids = new Map(block.savableChildren());
    const ln1 = kids.get('_self_attention_layer_norm') as unknown as { gamma: { value: Tensor<'float32'>; assign(t: Tensor): void }; beta: { value: Tensor<'float32'>; assign(t: Tensor): void } };
    const ln2 = kids.get('_feedforward_layer_norm') as unknown as typeof ln1;
    for (const [i, ln] of [ln1, ln2].entries()) {
      ln.gamma.assign(new Tensor('float32', [16], randomF32(16, 700 + i, 0.5).map((v) => v + 1)));
      ln.beta.assign(new Tensor('float32', [16], randomF32(16, 710 + i, 0.3)));
    }
    const d1 = kids.get('_feedforward_intermediate_dense') as unknown as { kernel: { value: Tensor<'float32'> }; bias: { value: Tensor<'float32'>; assign(t: Tensor): void } };
    const d2 = kids.get('_feedforward_output_dense') as unknown as typeof d1;
    d1.bias.assign(new Tensor('float32', [24], randomF32(24, 720, 0.2)));
    d2.bias.assign(new Tensor('float32', [16], randomF32(16, 721, 0.2)));
    const paddingMask = new Tensor('int32', [2, 6], new Int32Array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]));
    const y = (await block.apply(x, { paddingMask })) as Tensor<'float32'>;

    const rows = 12;
    const eps = 1e-5;
    const keep = (b: number, _t: number, s: number) => b === 0 || s < 4;
    const ln = (v: Float64Array, l: typeof ln1) => layerNorm(v, rows, 16, l.gamma.value.data, l.beta.value.data, eps);
    const asT = (v: Float64Array) => new Tensor('float32', [2, 6, 16], Float32Array.from(v));
    let h: Float64Array = Float64Array.from(x.data as Float32Array);
    let res = h;
    if (pre) h = ln(h, ln1);
    const hT = asT(h);
    h = refAttention(refArgsFor(mha, hT, hT, hT, { fullyMasked: 'mean', keep })).out.map((v, i) => v + res[i]);
    if (!pre) h = ln(h, ln1);
    res = h;
    if (pre) h = ln(h, ln2);
    h = dense(h, rows, 16, d1.kernel.value.data, d1.bias.value.data, 24, true);
    h = dense(h, rows, 24, d2.kernel.value.data, d2.bias.value.data, 16, false).map((v, i) => v + res[i]);
    if (!pre) h = ln(h, ln2);
    // the reference attention gets float32-rounded inputs in pre-norm; allow for that rounding
    expect(maxAbsDiff(y.data, h)).toBeLessThan(1e-4);
  });

  test('quantize records nested sub-layer paths; config round trip rebuilds the quantized block', async () => {
    const block = new TransformerEncoder({ intermediateDim: 32, numHeads: 2, name: 'blk', seed: 13 });
    const yf = (await block.apply(x)) as Tensor<'float32'>;
    await block.quantize('int8');
    const yq = (await block.apply(x)) as Tensor<'float32'>;
    // measured relative MSE 2.3e-5
    expect(mse(yf.data, yq.data) / meanSquare(yf.data)).toBeLessThan(1e-4);
    const keys = [...(block.dtypePolicy as DTypePolicyMap).keys()].sort();
    expect(keys).toEqual([
      'blk/feedforward_intermediate_dense',
      'blk/feedforward_output_dense',
      'blk/self_attention_layer/attention_output',
      'blk/self_attention_layer/key',
      'blk/self_attention_layer/query',
      'blk/self_attention_layer/value',
    ]);
    const cfg = JSON.parse(JSON.stringify(block.getConfig()));
    expect(cfg).toMatchObject({ intermediate_dim: 32, num_heads: 2, activation: 'relu', layer_norm_epsilon: 1e-5, normalize_first: false });
    const again = getLayerClass('TransformerEncoder')?.fromConfig(cfg) as TransformerEncoder;
    again.build([null, 6, 16]);
    expect(JSON.parse(JSON.stringify(again.getConfig()))).toEqual(cfg);
    const copy = (a: [string, import('../../lib/layers/layer').Layer][], b: [string, import('../../lib/layers/layer').Layer][]) => {
      const src = new Map(b);
      const walk = (dst: [string, import('../../lib/layers/layer').Layer][], from: Map<string, import('../../lib/layers/layer').Layer>) => {
        for (const [n, l] of dst) {
          const s = from.get(n) as import('../../lib/layers/layer').Layer;
          l.loadOwnVariables(s.saveOwnVariables());
          walk(l.savableChildren(), new Map(s.savableChildren()));
        }
      };
      walk(a, src);
    };
    copy(again.savableChildren(), block.savableChildren()); // throws on any count/dtype/shape mismatch
    expect(again.attention.queryDense.quantizationMode).toBe('int8');
    expect(again.isQuantized).toBe(true);
  });

  test('errors', async () => {
    expect(() => new TransformerEncoder({ intermediateDim: 0, numHeads: 2 })).toThrow(/intermediateDim/);
    const block = new TransformerEncoder({ intermediateDim: 8, numHeads: 32 });
    await expect(block.apply(x)).rejects.toThrow(/key_dim/);
    const ok = new TransformerEncoder({ intermediateDim: 8, numHeads: 2 });
    await ok.apply(x);
    await expect(ok.apply(x, { paddingMask: new Tensor('int32', [2, 5]) })).rejects.toThrow(/paddingMask/);
  });
});
