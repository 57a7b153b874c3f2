// EinsumDense (equation analysis, float vs a direct einsum loop, Keras thresholds per equation, stored scale
// layouts) and Embedding / ReversibleEmbedding (lookups, quantized MSE, tied/untied reverse, soft cap).
import { EinsumDense, Embedding, ReversibleEmbedding, analyzeEinsum, Tensor, Int4QuantizationConfig } from '../../lib';
import { randomF32, rng } from '../helpers';

function uniform01(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r());
}
function mse(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return s / a.length;
}

/** Direct einsum of two tensors by nested index enumeration (independent of the layer's permutation logic). */
function einsumRef(eq: string, x: Tensor, k: Tensor, outShape: number[]): Float64Array {
  const [lhs, out] = eq.split('->');
  const [a, b] = lhs.split(',');
  const sizes = new Map<string, number>();
  [...a].forEach((c, i) => sizes.set(c, x.shape[i]));
  [...b].forEach((c, i) => sizes.set(c, k.shape[i]));
  const letters = [...sizes.keys()];
  const res = new Float64Array(outShape.reduce((p, q) => p * q, 1));
  const idx = new Map<string, number>(letters.map((c) => [c, 0]));
  const flat = (spec: string, shape: readonly number[]) => [...spec].reduce((acc, c, i) => acc * shape[i] + (idx.get(c) as number), 0);
  const total = letters.reduce((p, c) => p * (sizes.get(c) as number), 1);
  const xd = x.toFloat32().data;
  const kd = k.toFloat32().data;
  for (let t = 0; t < total; t++) {
    let r = t;
    for (let i = letters.length - 1; i >= 0; i--) {
      const s = sizes.get(letters[i]) as number;
      idx.set(letters[i], r % s);
      r = Math.floor(r / s);
    }
    res[flat(out, outShape)] += xd[flat(a, x.shape)] * kd[flat(b, k.shape)];
  }
  return res;
}

describe('analyzeEinsum', () => {
  test('classifies letters and expands ellipses', () => {
    expect(analyzeEinsum('abc,cde->abde', 3)).toMatchObject({ contracted: ['c'], freeInput: ['a', 'b'], freeKernel: ['d', 'e'], batch: [] });
    const p = analyzeEinsum('...b,bc->...c', 4);
    expect(p.input.length).toBe(4);
    expect(p.output.endsWith('c')).toBe(true);
    expect(analyzeEinsum('abcde,afce->acdbf', 5).batch).toEqual(['a', 'c']);
    expect(() => analyzeEinsum('ab,bc', 2)).toThrow(/of the form/);
    expect(() => analyzeEinsum('ab,bc->ad', 2)).toThrow(/appears in neither/);
    expect(() => analyzeEinsum('abc,cd->abd', 2)).toThrow(/rank 3/);
  });
});

describe('EinsumDense float', () => {
  test.each([
    ['ab,bcd->acd', [3, 8], [8, 32], [8, 32]],
    ['btnh,nhd->btd', [2, 3, 4, 5], [3, 6], [3, 6]],
    ['btd,ndh->btnh', [2, 3, 6], [3, 4, 5], [3, 4, 5]],
    ['btd,df->btf', [2, 3, 6], [3, 7], [3, 7]],
    ['abc,cde->abde', [2, 3, 6], [3, 4, 5], [3, 4, 5]],
    ['a,b->ab', [4], [5], [5]],
    ['ab,ab->a', [3, 4], [], []],
  ])('%s', async (equation, inShape, outShape) => {
    const layer = new EinsumDense({ equation, outputShape: outShape as number[], seed: 7 });
    const x = new Tensor('float32', inShape, randomF32(inShape.reduce((a, b) => a * b, 1), 3));
    const y = await layer.apply(x);
    const want = einsumRef(equation, x, layer.kernel!.value, y.shape as number[]);
    for (let i = 0; i < want.length; i++) expect(y.data[i]).toBeCloseTo(want[i], 4);
  });

  test('bias axes broadcast like Keras', async () => {
    const layer = new EinsumDense({ equation: 'abc,cde->abde', outputShape: [3, 4, 5], biasAxes: 'e', seed: 1, biasInitializer: 'uniform' });
    const x = new Tensor('float32', [2, 3, 6], randomF32(36, 2));
    const y = await layer.apply(x);
    expect(layer.bias!.shape).toEqual([5]);
    const want = einsumRef('abc,cde->abde', x, layer.kernel!.value, [2, 3, 4, 5]);
    for (let i = 0; i < want.length; i++) expect(y.data[i]).toBeCloseTo(want[i] + layer.bias!.value.data[i % 5], 4);
    const l2 = new EinsumDense({ equation: 'abc,cde->abde', outputShape: [3, 4, 5], biasAxes: 'd' });
    await l2.apply(x);
    expect(l2.bias!.shape).toEqual([4, 1]);
  });
});

describe('EinsumDense quantized (Keras thresholds, spec §6)', () => {
  test.each([
    ['ab,bcd->acd', [3, 8], [8, 32], 2e-2, 3e-3],
    ['btnh,nhd->btd', [2, 3, 4, 5], [3, 6], 1e-3, 4e-3],
    ['btd,ndh->btnh', [2, 3, 6], [3, 4, 5], 1e-3, 4e-3],
    ['btd,df->btf', [2, 3, 6], [3, 7], 1e-3, 4e-3],
  ])('%s: int8 and int4 MSE vs float', async (equation, inShape, outShape, int8Limit, int4Limit) => {
    for (const [mode, limit] of [['int8', int8Limit], ['int4', int4Limit], ['float8', 5e-3]] as const) {
      const layer = new EinsumDense({ equation, outputShape: outShape as number[], seed: 11 });
      const x = new Tensor('float32', inShape, uniform01(inShape.reduce((a, b) => a * b, 1), 5));
      const yf = await layer.apply(x);
      await layer.quantize(mode);
      const yq = await layer.apply(x);
      expect(yq.shape).toEqual(yf.shape);
      expect([equation, mode, mse(yq.data, yf.data) < limit]).toEqual([equation, mode, true]);
    }
  });

  test('int8 stored kernel keeps the kernel shape; kernel_scale uses the output layout', async () => {
    const a = new EinsumDense({ equation: 'ab,bcd->acd', outputShape: [8, 32] });
    a.build([3, 8]);
    await a.quantize('int8');
    expect(a.variables.map((v) => [v.name, v.dtype, v.shape])).toEqual([
      ['kernel', 'int8', [8, 8, 32]],
      ['kernel_scale', 'float32', [1, 8, 32]],
    ]);
    const b = new EinsumDense({ equation: 'abc,cde->abde', outputShape: [null, 4, 16], biasAxes: 'de' });
    b.build([2, 3, 64]);
    await b.quantize('int8');
    expect(b.variables.find((v) => v.name === 'kernel_scale')!.shape).toEqual([1, 1, 4, 16]);
    await expect((async () => {
      const c = new EinsumDense({ equation: 'ab,bc->ac', outputShape: [4] });
      c.build([2, 6]);
      await c.quantize('int4', { config: new Int4QuantizationConfig({ blockSize: 4 }) });
      return c.variables.map((v) => [v.name, v.shape]);
    })()).resolves.toEqual([
      ['kernel', [6, 2]],
      ['kernel_scale', [2, 4]],
      ['kernel_zero', [2, 4]],
      ['g_idx', [6]],
    ]);
  });

  test('the dequantized kernel round-trips the permutation (non-leading contracted axis)', async () => {
    const layer = new EinsumDense({ equation: 'btd,ndh->btnh', outputShape: [3, 4, 5], seed: 2 });
    layer.build([2, 3, 6]);
    const w = Float32Array.from(layer.kernel!.value.data);
    await layer.quantize('int8');
    const dq = (await layer.dequantizedKernel()).data;
    let maxErr = 0;
    for (let i = 0; i < w.length; i++) maxErr = Math.max(maxErr, Math.abs(dq[i] - w[i]));
    expect(maxErr).toBeLessThan(0.01);
  });

  test('equations with batch letters: int8 works (Keras scale layouts), other modes refuse clearly', async () => {
    for (const [equation, inShape, outShape, scaleShape] of [
      ['ab,ab->a', [3, 4], [], [3]],
      ['abcde,afce->acdbf', [2, 3, 4, 5, 6], [4, 5, 3, 7], [2, 4, 1, 1, 7]],
      ['a,b->ab', [4], [5], [1, 5]],
    ] as Array<[string, number[], number[], number[]]>) {
      const layer = new EinsumDense({ equation, outputShape: outShape, seed: 5 });
      const x = new Tensor('float32', inShape, randomF32(inShape.reduce((a, b) => a * b, 1), 9));
      const yf = await layer.apply(x);
      const want = einsumRef(equation, x, layer.kernel!.value, yf.shape as number[]);
      for (let i = 0; i < want.length; i++) expect(yf.data[i]).toBeCloseTo(want[i], 4);
      const kernelShape = layer.kernelShape;
      await layer.quantize('int8');
      expect(layer.variables.map((v) => [v.name, v.shape])).toEqual([
        ['kernel', kernelShape],
        ['kernel_scale', scaleShape],
      ]);
      const yq = await layer.apply(x);
      expect([equation, mse(yq.data, yf.data) < 1e-3]).toEqual([equation, true]);
      const fromPolicy = new EinsumDense({ equation, outputShape: outShape, dtype: 'int8_from_float32' });
      fromPolicy.build(inShape);
      expect(fromPolicy.variables.map((v) => [v.name, v.dtype, v.shape])).toEqual([
        ['kernel', 'int8', kernelShape],
        ['kernel_scale', 'float32', scaleShape],
      ]);
    }
    const layer = new EinsumDense({ equation: 'ab,ab->a', outputShape: [] });
    layer.build([3, 4]);
    await expect(layer.quantize('int4')).rejects.toMatchObject({ code: 'QK_UNSUPPORTED' });
    expect(layer.quantizationMode).toBeNull();
  });
});

describe('Embedding', () => {
  const ids = new Tensor('int32', [2, 5], new Int32Array([0, 3, 9, 9, 1, 2, 4, 5, 6, 7]));

  test('float lookup', async () => {
    const e = new Embedding({ inputDim: 10, outputDim: 16, seed: 1 });
    const y = await e.apply(ids);
    expect(y.shape).toEqual([2, 5, 16]);
    const E = e.embeddings!.value.data;
    expect(Array.from(y.data.slice(16, 32))).toEqual(Array.from(E.slice(3 * 16, 4 * 16)));
    await expect(e.apply(new Tensor('int32', [1], new Int32Array([10])))).rejects.toThrow(/\[0, 10\)/);
  });

  test.each([
    ['int8', null, ['embeddings', 'embeddings_scale']],
    ['int4', null, ['embeddings', 'embeddings_scale']],
    ['int4', 8, ['embeddings', 'embeddings_scale', 'embeddings_zero', 'g_idx']],
  ] as const)('%s (block %s): MSE < 1e-3 and Keras variables', async (mode, block, names) => {
    const e = new Embedding({ inputDim: 10, outputDim: 16, seed: 2, embeddingsInitializer: 'glorot_uniform' });
    const yf = await e.apply(ids);
    await e.quantize(mode, mode === 'int4' ? { config: new Int4QuantizationConfig({ blockSize: block }) } : {});
    const yq = await e.apply(ids);
    expect(mse(yq.data, yf.data)).toBeLessThan(1e-3);
    expect(e.variables.map((v) => v.name)).toEqual(names);
    if (block) expect(e.variables[1].shape).toEqual([10, 2]);
  });

  test('only int8 and int4; the config stays unset on refusal', async () => {
    const e = new Embedding({ inputDim: 10, outputDim: 4 });
    e.build();
    await expect(e.quantize('float8')).rejects.toThrow("Expected one of ('int8', 'int4')");
    expect(e.quantizationConfig).toBeNull();
    expect(e.quantizationMode).toBeNull();
  });
});

describe('ReversibleEmbedding', () => {
  const ids = new Tensor('int32', [1, 4], new Int32Array([1, 2, 3, 4]));
  test.each([true, false])('tieWeights=%s: reverse logits float and quantized', async (tie) => {
    for (const mode of ['int8', 'int4'] as const) {
      const e = new ReversibleEmbedding({ inputDim: 50, outputDim: 24, tieWeights: tie, seed: 4, embeddingsInitializer: 'glorot_uniform' });
      await e.apply(ids);
      const h = new Tensor('float32', [1, 4, 24], randomF32(96, 8));
      const lf = await e.apply(h, { reverse: true });
      expect(lf.shape).toEqual([1, 4, 50]);
      const W = tie ? e.embeddings!.value.data : e.reverseEmbeddings!.value.data;
      for (let v = 0; v < 50; v += 7) {
        let s = 0;
        for (let d = 0; d < 24; d++) s += h.data[d] * (tie ? W[v * 24 + d] : W[d * 50 + v]);
        expect(lf.data[v]).toBeCloseTo(s, 4);
      }
      await e.quantize(mode);
      const lq = await e.apply(h, { reverse: true });
      expect([tie, mode, mse(lq.data, lf.data) < (mode === 'int8' ? 1e-3 : 5e-3)]).toEqual([tie, mode, true]);
      if (!tie) expect(e.variables.map((v) => v.name)).toContain('reverse_embeddings_scale');
    }
  });
  test('logit soft cap', async () => {
    const e = new ReversibleEmbedding({ inputDim: 8, outputDim: 4, logitSoftCap: 0.5, embeddingsInitializer: 'ones' });
    await e.apply(ids);
    const l = await e.apply(new Tensor('float32', [1, 4], new Float32Array([1, 1, 1, 1])), { reverse: true });
    expect(l.data[0]).toBeCloseTo(Math.tanh(4 / 0.5) * 0.5, 5);
  });
});
