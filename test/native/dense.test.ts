// Dense: float and every quantized mode. Quantized outputs are checked against references written here
// (JS float32 emulation of Keras's int8 path; float64 x dequantized weights for weight-only modes), for every
// ISA and for M = 1 and M > 1 with K and N that are not multiples of the SIMD width or the group size.
import {
  Dense,
  tensor,
  Tensor,
  _kernelImpls,
  IsaName,
  Int4QuantizationConfig,
  Int8QuantizationConfig,
  Float8QuantizationConfig,
  AbsMaxQuantizer,
  Quantizer,
  QuantizerResult,
  registerSerializable,
  QkError,
  denseForward,
  absMaxQuantize,
  DenseWeights,
  capabilities,
} from '../../lib';
import { absmaxQuantizeRef, randomF32, rng } from '../helpers';

const ISAS = _kernelImpls('sgemm') as IsaName[];

function uniform01(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r());
}

function mse(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return s / a.length;
}

async function built(units: number, inDim: number, seed = 1, useBias = true): Promise<Dense> {
  const d = new Dense({ units, seed, useBias, biasInitializer: 'uniform' });
  d.build([null, inDim]);
  return d;
}

describe('Dense, Keras thresholds (spec §6: Dense(16), input 8, x ~ U[0,1))', () => {
  test.each([
    ['int8', 1e-3],
    ['int4', 5e-3],
    ['float8', 5e-3],
  ])('%s MSE vs float < %s', async (mode, limit) => {
    const d = await built(16, 8, 3);
    const x = new Tensor('float32', [32, 8], uniform01(256, 4));
    const yf = (await d.apply(x)).data as Float32Array;
    await d.quantize(mode);
    const yq = (await d.apply(x)).data as Float32Array;
    expect(mse(yq, yf)).toBeLessThan(limit);
  });

  test('per-channel int4 (blockSize null and -1) and grouped int4 on a larger layer', async () => {
    for (const blockSize of [null, -1, 32, 100]) {
      const d = await built(64, 300, 5);
      const x = new Tensor('float32', [7, 300], uniform01(2100, 6));
      const yf = (await d.apply(x)).data as Float32Array;
      await d.quantize('int4', { config: new Int4QuantizationConfig({ blockSize }) });
      const yq = (await d.apply(x)).data as Float32Array;
      expect(mse(yq, yf)).toBeLessThan(5e-3);
      expect(d.dtypePolicy.name).toBe(`int4/${blockSize === null ? -1 : blockSize}_from_float32`);
    }
  });
});

describe('variables and policies per mode', () => {
  test.each([
    ['int8', 'int8_from_float32', ['kernel', 'bias', 'kernel_scale'], 1, 2],
    ['int4', 'int4/128_from_float32', ['kernel', 'bias', 'kernel_scale', 'kernel_zero', 'g_idx'], 1, 4],
    ['float8', 'float8_from_float32', ['kernel', 'bias', 'inputs_scale', 'inputs_amax_history', 'kernel_scale', 'kernel_amax_history', 'outputs_grad_scale', 'outputs_grad_amax_history'], 8, 0],
  ] as const)('%s', async (mode, policy, names, trainable, nonTrainable) => {
    const d = await built(16, 8);
    await d.quantize(mode);
    expect(d.dtypePolicy.name).toBe(policy);
    expect(d.quantizationMode).toBe(mode);
    expect(d.variables.map((v) => v.name)).toEqual(names);
    expect(d.trainableVariables.length).toBe(trainable);
    expect(d.nonTrainableVariables.length).toBe(nonTrainable);
  });

  test('shapes and dtypes: int8 [in, units], int4 packed along units, grouped scale [G, units]', async () => {
    const a = await built(17, 300);
    await a.quantize('int8');
    expect(a.variables.map((v) => [v.name, v.dtype, v.shape])).toEqual([
      ['kernel', 'int8', [300, 17]],
      ['bias', 'float32', [17]],
      ['kernel_scale', 'float32', [17]],
    ]);
    const b = await built(17, 300);
    await b.quantize('int4');
    expect(b.variables.map((v) => [v.name, v.dtype, v.shape])).toEqual([
      ['kernel', 'int8', [300, 9]],
      ['bias', 'float32', [17]],
      ['kernel_scale', 'float32', [3, 17]],
      ['kernel_zero', 'int8', [3, 17]],
      ['g_idx', 'float32', [300]],
    ]);
    expect(Array.from(b.variables[4].value.data as Float32Array).slice(126, 130)).toEqual([0, 0, 1, 1]);
  });

  test('a layer built from a quantized policy has the quantized variables directly', () => {
    const d = new Dense({ units: 4, dtype: 'int4/-1_from_float32' });
    d.build([null, 6]);
    expect(d.variables.map((v) => [v.name, v.shape])).toEqual([
      ['kernel', [6, 2]],
      ['bias', [4]],
      ['kernel_scale', [4]],
    ]);
    const e = new Dense({ units: 4, dtype: 'int8_from_float32', useBias: false });
    e.build([null, 6]);
    expect(e.variables.map((v) => v.name)).toEqual(['kernel', 'kernel_scale']);
  });
});

describe.each(ISAS)('quantized Dense == reference on dequantized weights, isa=%s', (isa) => {
  const shapes: Array<[number, number, number]> = [
    [1, 33, 17],
    [5, 129, 65],
    [17, 257, 3],
    [2, 7, 131],
  ];

  test('int8 W8A8 is bit-exact with a JS float32 emulation of Keras', async () => {
    for (const [M, K, N] of shapes) {
      const d = await built(N, K, M + K);
      const x = new Tensor('float32', [M, K], randomF32(M * K, K, 2));
      await d.quantize('int8');
      const st = d.quantizedState as { kernel: Tensor<'int8'>; scale: Tensor<'float32'> };
      const bias = d.bias!.value.data;
      const got = await denseForward(x, { format: 'int8', kernel: st.kernel.data, scale: st.scale.data }, N, bias, { activation: { valueRange: [-127, 127], epsilon: 1e-7 }, isa });
      const { q, scale } = absmaxQuantizeRef(x.data as Float32Array, M, K, 1);
      const w = st.kernel.data;
      const ks = st.scale.data;
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < N; j++) {
          let acc = 0;
          for (let k = 0; k < K; k++) acc += q[i * K + k] * w[k * N + j];
          const want = Math.fround(Math.fround(acc / Math.fround(ks[j] * scale[i])) + bias[j]);
          expect([M, K, N, i, j, got.data[i * N + j]]).toEqual([M, K, N, i, j, want]);
        }
      }
      // the layer's own call uses the same kernel
      const viaLayer = await d.apply(x);
      if (isa === capabilities().isa) expect(Array.from(viaLayer.data as Float32Array)).toEqual(Array.from(got.data));
    }
  });

  test('int8 W8A8 decode (M = 1): bit-exact when the GEMV is split over K and N', async () => {
    // K = 4099: several K ranges (and a partial 4-row group); N = 16421 > 16384: two column chunks.
    const fill = (n: number, seed: number) => Int8Array.from({ length: n }, (_, i) => (((i + seed) * 2654435761) % 255) - 127);
    for (const [K, N] of [[4099, 33], [130, 16421]]) {
      const w = fill(K * N, K);
      const ks = Float32Array.from({ length: N }, (_, j) => 50 + (j % 7));
      const bias = randomF32(N, N, 0.5);
      const x = new Tensor('float32', [1, K], randomF32(K, K + 3, 2));
      const got = await denseForward(x, { format: 'int8', kernel: w, scale: ks }, N, bias, { activation: { valueRange: [-127, 127], epsilon: 1e-7 }, isa });
      const { q, scale } = absmaxQuantizeRef(x.data as Float32Array, 1, K, 1);
      const acc = new Int32Array(N);
      for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) acc[j] += q[k] * w[k * N + j];
      let bad = -1;
      for (let j = 0; j < N && bad < 0; j++) {
        const want = Math.fround(Math.fround(acc[j] / Math.fround(ks[j] * scale[0])) + bias[j]);
        if (!Object.is(got.data[j], want)) bad = j;
      }
      expect([K, N, bad]).toEqual([K, N, -1]);
    }
  });

  test.each([
    ['int8 weight-only', 'int8', null],
    ['int4 per-channel weight-only', 'int4', null],
    ['int4 grouped g32', 'int4', 32],
    ['int4 grouped g7', 'int4', 7],
    ['float8', 'float8', null],
  ] as const)('%s within the GEMM tolerance', async (_n, mode, block) => {
    for (const [M, K, N] of shapes) {
      const d = await built(N, K, 2 * M + K);
      const x = new Tensor('float32', [M, K], randomF32(M * K, K + 1, 2));
      const config =
        mode === 'int8'
          ? new Int8QuantizationConfig({ activationQuantizer: null })
          : mode === 'int4'
            ? new Int4QuantizationConfig({ blockSize: block })
            : new Float8QuantizationConfig();
      await d.quantize({ config });
      const wd = (await d.dequantizedKernel()).data;
      const bias = d.bias!.value.data;
      const xd = x.data as Float32Array;
      // float8 quantizes activations too: emulate with a per-tensor e4m3 QDQ of x
      let xe = xd;
      if (mode === 'float8') {
        let amax = 0;
        for (const v of xd) amax = Math.max(amax, Math.abs(v));
        const xs = amax / 448;
        const codes = new Tensor('float32', [xd.length], xd.map((v) => v / xs)).astype('float8_e4m3fn').toFloat32().data;
        xe = codes.map((v) => v * xs);
      }
      const st = d.quantizedState!;
      const weights: DenseWeights =
        st.mode === 'int8'
          ? { format: 'int8', kernel: st.kernel.data, scale: st.scale.data }
          : st.mode === 'float8'
            ? { format: 'float8', kernel: st.kernel.data as Uint8Array, scale: st.kernelScale }
            : st.blockSize === null
              ? { format: 'int4', kernel: st.kernel.data, scale: st.scale.data }
              : { format: 'int4-grouped', kernel: st.kernel.data, scale: st.scale.data, zero: st.zero.data, groupSize: st.blockSize };
      // the layer takes the op's automatic path (the int8-compute path from 16 rows, lib/ops/lowbit-a8.ts, tested in
      // lowbit-a8.test.ts); the tolerance below is the exact weight-only path's
      const yAuto = (await denseForward(x, weights, N, bias, { isa })).data;
      if (isa === capabilities().isa) expect(Array.from((await d.apply(x)).data)).toEqual(Array.from(yAuto));
      const y = (await denseForward(x, weights, N, bias, { isa, weightOnlyExact: true })).data;
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < N; j++) {
          let exact = 0;
          let mag = 0;
          for (let k = 0; k < K; k++) {
            exact += xe[i * K + k] * wd[k * N + j];
            mag += Math.abs(xe[i * K + k] * wd[k * N + j]);
          }
          exact += bias[j];
          const tol = (K + 4) * 2 ** -22 * (mag + Math.abs(bias[j])) + 1e-6;
          expect([M, K, N, i, j, Math.abs(y[i * N + j] - exact) <= tol]).toEqual([M, K, N, i, j, true]);
        }
      }
    }
  });
});

// The seed example of a custom quantizer: scale by the 99.9th percentile of |x| per slice, clip.
class PercentileQuantizer extends Quantizer {
  readonly axis: number;
  readonly percentile: number;
  constructor(options: { axis?: number; percentile?: number } = {}) {
    super();
    this.axis = options.axis ?? 0;
    this.percentile = options.percentile ?? 99.9;
  }
  async quantize(x: Tensor, options: { axis?: number | readonly number[] | null } = {}): Promise<QuantizerResult> {
    const axis = typeof options.axis === 'number' ? options.axis : this.axis;
    const [rows, cols] = x.shape.length === 2 ? x.shape : [1, x.size];
    const data = x.toFloat32().data;
    const alongRows = (axis === 0 || axis === -2) && x.shape.length === 2;
    const nScales = alongRows ? cols : rows;
    const len = alongRows ? rows : cols;
    const scale = new Float32Array(nScales);
    const q = new Int8Array(data.length);
    for (let s = 0; s < nScales; s++) {
      const idx = (l: number) => (alongRows ? l * cols + s : s * cols + l);
      const mags = Array.from({ length: len }, (_, l) => Math.abs(data[idx(l)])).sort((a, b) => a - b);
      const p = mags[Math.min(len - 1, Math.floor((this.percentile / 100) * (len - 1)))] || 1e-7;
      scale[s] = 127 / p;
      for (let l = 0; l < len; l++) q[idx(l)] = Math.max(-127, Math.min(127, Math.round(data[idx(l)] * scale[s])));
    }
    const sshape = alongRows ? [1, cols] : [rows, 1];
    return { quantized: new Tensor('int8', x.shape, q), scale: new Tensor('float32', sshape, scale) };
  }
  override getConfig(): Record<string, unknown> {
    return { axis: this.axis, percentile: this.percentile };
  }
}
registerSerializable(PercentileQuantizer, { package: 'Tests' });

describe('custom quantizers end to end', () => {
  test('PercentileQuantizer as weight and activation quantizer (generic path)', async () => {
    const d = await built(16, 64, 9);
    const x = new Tensor('float32', [8, 64], uniform01(512, 10));
    const yf = (await d.apply(x)).data as Float32Array;
    const config = new Int8QuantizationConfig({ weightQuantizer: new PercentileQuantizer({ axis: 0 }), activationQuantizer: new PercentileQuantizer({ axis: -1 }) });
    await d.quantize('int8', { config });
    const yq = (await d.apply(x)).data as Float32Array;
    expect(mse(yq, yf)).toBeLessThan(1e-3);
    expect(d.inputsQuantizer).toBeInstanceOf(PercentileQuantizer);
    const back = Int8QuantizationConfig.fromConfig(config.getConfig()) as Int8QuantizationConfig;
    expect(back.weightQuantizer).toBeInstanceOf(PercentileQuantizer);
    expect((back.weightQuantizer as PercentileQuantizer).percentile).toBe(99.9);
  });

  test('a custom AbsMaxQuantizer range on activations goes through the native fused kernel', async () => {
    const d = await built(8, 16, 11);
    const x = new Tensor('float32', [3, 16], randomF32(48, 12));
    await d.quantize('int8', { config: new Int8QuantizationConfig({ activationQuantizer: new AbsMaxQuantizer({ valueRange: [-128, 127] }) }) });
    const y = await d.apply(x);
    const { quantized, scale } = await absMaxQuantize(x, -1, { valueRange: [-128, 127] });
    const st = d.quantizedState as { kernel: Tensor<'int8'>; scale: Tensor<'float32'> };
    const b = d.bias!.value.data;
    for (let i = 0; i < 3; i++)
      for (let j = 0; j < 8; j++) {
        let acc = 0;
        for (let k = 0; k < 16; k++) acc += quantized.data[i * 16 + k] * st.kernel.data[k * 8 + j];
        expect(y.data[i * 8 + j]).toBe(Math.fround(Math.fround(acc / Math.fround(st.scale.data[j] * scale.data[i])) + b[j]));
      }
  });
});

describe('errors (Keras catalogue)', () => {
  test('unbuilt layer', async () => {
    const d = new Dense({ units: 3 });
    await expect(d.quantize('int8')).rejects.toMatchObject({ code: 'QK_NOT_BUILT' });
    await expect(d.quantize('int8')).rejects.toThrow("Cannot quantize a layer that isn't yet built. Layer");
  });
  test('already quantized, any mode after any mode', async () => {
    for (const [a, b] of [['int8', 'int4'], ['int4', 'int8'], ['float8', 'int8'], ['int8', 'int8']]) {
      const d = await built(3, 4);
      await d.quantize(a);
      await expect(d.quantize(b)).rejects.toMatchObject({ code: 'QK_ALREADY_QUANTIZED' });
      await expect(d.quantize(b)).rejects.toThrow(/is already quantized with dtype_policy='/);
    }
    const p = new Dense({ units: 3, dtype: 'int8_from_float32' });
    p.build([null, 4]);
    await expect(p.quantize('int4')).rejects.toMatchObject({ code: 'QK_ALREADY_QUANTIZED' });
  });
  test('unknown modes leave the policy unchanged', async () => {
    const d = await built(3, 4);
    for (const m of ['int7', 'float7']) {
      await expect(d.quantize(m)).rejects.toThrow(/Invalid quantization mode/);
      expect(d.dtypePolicy.name).toBe('float32');
    }
  });
  test('contradictory mode and config', async () => {
    const d = await built(3, 4);
    await expect(d.quantize('int8', { config: new Int4QuantizationConfig() })).rejects.toThrow("Contradictory arguments: mode='int8' but config.mode='int4'");
  });
  test('subclasses need typeCheck: false', async () => {
    class MyDense extends Dense {}
    const d = new MyDense({ units: 3 });
    d.build([null, 4]);
    await expect(d.quantize('int8')).rejects.toThrow('Layer MyDense does not have a `quantize` method implemented.');
    await d.quantize('int8', { typeCheck: false });
    expect(d.quantizationMode).toBe('int8');
  });
  test('a failed quantize leaves the layer usable in its previous mode', async () => {
    const d = await built(4, 6);
    const x = new Tensor('float32', [2, 6], randomF32(12, 1));
    const before = Array.from((await d.apply(x)).data);
    const bad = new Int8QuantizationConfig({ weightQuantizer: new AbsMaxQuantizer({ axis: 1 }) }); // wrong axis: one scale per input row
    await expect(d.quantize('int8', { config: bad })).rejects.toBeInstanceOf(QkError);
    expect(d.quantizationMode).toBeNull();
    expect(d.variables.map((v) => v.name)).toEqual(['kernel', 'bias']);
    expect(Array.from((await d.apply(x)).data)).toEqual(before);
    await d.quantize('int8');
    expect(d.quantizationMode).toBe('int8');
  });
  test('bad inputs', async () => {
    const d = await built(4, 6);
    await expect(d.apply(new Tensor('float32', [2, 5]))).rejects.toMatchObject({ code: 'QK_SHAPE_MISMATCH' });
    expect(() => new Dense({ units: 0 })).toThrow('Expected a positive integer for units but received 0');
    expect(() => new Dense({ units: 2, activation: 'nope' as never })).toThrow(/for activation/);
  });
});

describe('float Dense', () => {
  test('matches a float64 reference, with activation and batch dims', async () => {
    const d = new Dense({ units: 5, activation: 'relu', seed: 3, biasInitializer: 'uniform' });
    const x = new Tensor('float32', [2, 3, 7], randomF32(42, 4));
    const y = await d.apply(x);
    expect(y.shape).toEqual([2, 3, 5]);
    const w = d.kernel!.value.data;
    const b = d.bias!.value.data;
    for (let i = 0; i < 6; i++)
      for (let j = 0; j < 5; j++) {
        let s = b[j];
        for (let k = 0; k < 7; k++) s += (x.data as Float32Array)[i * 7 + k] * w[k * 5 + j];
        expect(y.data[i * 5 + j]).toBeCloseTo(Math.max(0, s), 5);
      }
  });
});

void tensor;

describe('dtype policies set on layers (spec §1.5, §6 variable counts)', () => {
  test.each([
    ['int8_from_float32', 3, 'int8'],
    ['int4_from_float32', 5, 'int4'],
    ['int4/64_from_float32', 5, 'int4'],
    ['int4/-1_from_float32', 3, 'int4'],
    ['float8_from_float32', 8, 'float8'],
  ] as const)('setDTypePolicy(%s) on a built Dense quantizes it (%d variables)', async (policy, count, mode) => {
    const d = await built(8, 16);
    await d.setDTypePolicy(policy);
    expect(d.variables.length).toBe(count);
    expect(d.quantizationMode).toBe(mode);
    expect(d.dtypePolicy.name).toBe(policy);
    const y = await d.apply(new Tensor('float32', [2, 16], randomF32(32, 3)));
    expect(y.shape).toEqual([2, 8]);
  });

  test('GPTQ cannot be enabled through the policy; the layer is unchanged', async () => {
    const d = await built(8, 16);
    await expect(d.setDTypePolicy('gptq/4/128_from_float32')).rejects.toThrow(/Implicitly enabling GPTQ/);
    expect(d.quantizationMode).toBeNull();
  });

  test.each([
    ['int8_from_mixed_bfloat16', 1, 2],
    ['int4/128_from_mixed_bfloat16', 1, 4],
    ['float8_from_mixed_bfloat16', 8, 0],
  ] as const)('built from %s: %d trainable + %d non-trainable', (policy, t, nt) => {
    const d = new Dense({ units: 4, dtype: policy });
    d.build([null, 8]);
    expect([d.trainableVariables.length, d.nonTrainableVariables.length]).toEqual([t, nt]);
    expect(d.computeDtype).toBe('bfloat16');
  });

  test.each([
    ['int4/None_from_float32', ['kernel', 'bias', 'kernel_scale']],
    ['int4/-1_from_float32', ['kernel', 'bias', 'kernel_scale']],
    ['int4/128_from_float32', ['kernel', 'bias', 'kernel_scale', 'kernel_zero', 'g_idx']],
  ])('%s rebuilds the right variables', (policy, names) => {
    const d = new Dense({ units: 4, dtype: policy });
    d.build([null, 8]);
    expect(d.variables.map((v) => v.name)).toEqual(names);
  });

  test('int8 with a float16 compute dtype is refused', async () => {
    const d = new Dense({ units: 4, dtype: 'float16' });
    d.build([null, 8]);
    await expect(d.quantize('int8')).rejects.toThrow(/doesn't work well with compute_dtype='float16'/);
  });
});
