// Grouped int4 quantization with a zero point (spec §2.5) against NumPy float32 golden vectors and the Keras worked
// example; every deliberate fix (DESIGN.md §2.2) checked both ways (fixed mode passes, kerasCompat reproduces the
// Keras failure); the Keras reconstruction-error tests; plus the pieces that call native code: AbsMaxQuantizer.quantize
// and the float8 helpers (spec §2.8).
import { Tensor, tensor } from '../../lib/tensor';
import { absMaxQuantize } from '../../lib/ops/quantize';
import { InvalidArgumentError, ShapeMismatchError } from '../../lib/errors';
import {
  AbsMaxQuantizer,
  absMaxQuantizeGroupedWithZeroPoint,
  computeFloat8AmaxHistory,
  computeFloat8Scale,
  dequantizeGrouped,
  quantizeAndDequantize,
} from '../../lib/quantizers';
import { rng } from '../helpers';

// Generated with NumPy 2.4 float32 by transcribing Keras's NumPy path: the 3.16 snapshot
// (`_abs_max_quantize_grouped_with_zero_point_numpy`, "compat") and the later upstream fix that widens each group's
// range to contain 0 and floors the scale at finfo(float32).tiny ("fix"). W is [7, 4] (column 0 normal, column 1 all
// positive, column 2 all negative, column 3 constant 0.7), block size 3 (so the last group is zero-padded).
// "example" is the spec's worked example W = [0.9, -0.3, 0.45], B = 2.
const GOLDEN = {"W": [0.001230153371579945, 1.410614252090454, -1.2522741556167603, 0.699999988079071, 0.2987455427646637, 1.3985346555709839, -1.2767486572265625, 0.699999988079071, -0.27413785457611084, 1.2339674234390259, -1.497750163078308, 0.699999988079071, -0.8905918598175049, 1.1515161991119385, -1.3963309526443481, 0.699999988079071, -0.454670786857605, 1.1392128467559814, -1.3110896348953247, 0.699999988079071, -0.9916465282440186, 1.1274348497390747, -1.4944801330566406, 0.699999988079071, 0.0601436011493206, 1.2225381135940552, -1.107654333114624, 0.699999988079071], "compat": {"q": [-1, 7, -8, 7, 7, 7, -8, 7, -8, 7, -8, 7, -8, 7, -8, 7, -6, 7, -8, 7, -8, 7, -8, 7, 7, 7, -8, 7], "s": [0.038192231208086014, 0.011776462197303772, 0.01636507362127304, 6.66666677417993e-09, 0.035798389464616776, 0.0016054300358518958, 0.012226040475070477, 6.66666677417993e-09, 0.004009580239653587, 0.08150254935026169, 0.07384362816810608, 0.04666667431592941], "z": [-1, -8, 7, -8, 7, -8, 7, -8, -8, -8, 7, -8], "deq": [0.0, 0.17664693295955658, -0.24547609686851501, 1.0000000116860974e-07, 0.3055378496646881, 0.17664693295955658, -0.24547609686851501, 1.0000000116860974e-07, -0.2673456072807312, 0.17664693295955658, -0.24547609686851501, 1.0000000116860974e-07, -0.5369758605957031, 0.024081449955701828, -0.18339060246944427, 1.0000000116860974e-07, -0.4653790593147278, 0.024081449955701828, -0.18339060246944427, 1.0000000116860974e-07, -0.5369758605957031, 0.024081449955701828, -0.18339060246944427, 1.0000000116860974e-07, 0.06014370173215866, 1.2225382328033447, -1.1076544523239136, 0.7000001072883606]}, "fix": {"q": [-1, 7, -6, 7, 7, 7, -6, 7, -8, 5, -8, 7, -6, 7, -7, 7, 0, 7, -6, 7, -8, 7, -8, 7, 7, 7, -8, 7], "s": [0.038192231208086014, 0.09404096007347107, 0.09985002130270004, 0.04666667431592941, 0.06610977649688721, 0.07676775753498077, 0.09963201731443405, 0.04666667431592941, 0.004009580239653587, 0.08150254935026169, 0.07384362816810608, 0.04666667431592941], "z": [-1, -8, 7, -8, 7, -8, 7, -8, -8, -8, 7, -8], "deq": [0.0, 1.4106143712997437, -1.2980502843856812, 0.7000001072883606, 0.3055378496646881, 1.4106143712997437, -1.2980502843856812, 0.7000001072883606, -0.2673456072807312, 1.2225325107574463, -1.4977502822875977, 0.7000001072883606, -0.8594270944595337, 1.151516318321228, -1.3948482275009155, 0.7000001072883606, -0.46276843547821045, 1.151516318321228, -1.2952162027359009, 0.7000001072883606, -0.9916466474533081, 1.151516318321228, -1.4944802522659302, 0.7000001072883606, 0.06014370173215866, 1.2225382328033447, -1.1076544523239136, 0.7000001072883606]}, "example": {"q": [7, -8, 7], "s": [0.08000001311302185, 0.030000004917383194], "z": [-4, -8]}};

const col = (values: number[]): Tensor<'float32'> => tensor(values, [values.length, 1]);

function gaussian(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u1 = Math.max(r(), 1e-12);
    const u2 = r();
    const m = Math.sqrt(-2 * Math.log(u1));
    out[i] = m * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) out[i + 1] = m * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

function rmse(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s / a.length);
}

/** Largest |w - dequant(w)| divided by its group's scale (<= 0.5 + rounding slack when the grid covers w). */
function worstErrorInSteps(w: Float32Array, rows: number, cols: number, B: number, kerasCompat: boolean): number {
  const { quantized, scale, zero } = absMaxQuantizeGroupedWithZeroPoint(new Tensor('float32', [rows, cols], w), B, { kerasCompat });
  const deq = dequantizeGrouped(quantized, scale, zero, B).data;
  let worst = 0;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) {
      const s = scale.data[Math.floor(r / B) * cols + j];
      worst = Math.max(worst, Math.abs(w[r * cols + j] - deq[r * cols + j]) / s);
    }
  }
  return worst;
}

describe('absMaxQuantizeGroupedWithZeroPoint: the Keras worked example (spec §2.5)', () => {
  for (const kerasCompat of [true, false]) {
    test(`W = [0.9, -0.3, 0.45], B = 2, kerasCompat=${kerasCompat}`, () => {
      const { quantized, scale, zero, gIdx } = absMaxQuantizeGroupedWithZeroPoint(col([0.9, -0.3, 0.45]), 2, { kerasCompat });
      expect(Array.from(quantized.data)).toEqual([7, -8, 7]);
      expect(quantized.shape).toEqual([3, 1]);
      expect(scale.shape).toEqual([2, 1]);
      expect(zero.shape).toEqual([2, 1]);
      expect(scale.data[0]).toBeCloseTo(0.08, 7);
      expect(scale.data[1]).toBeCloseTo(0.03, 7);
      expect(Array.from(scale.data)).toEqual(GOLDEN.example.s); // bit-exact with NumPy float32
      expect(Array.from(zero.data)).toEqual([-4, -8]);
      expect(Array.from(gIdx)).toEqual([0, 0, 1]);
      const deq = dequantizeGrouped(quantized, scale, zero, 2).data;
      expect(deq[0]).toBeCloseTo(0.88, 6);
      expect(deq[1]).toBeCloseTo(-0.32, 6);
      expect(deq[2]).toBeCloseTo(0.45, 6);
    });
  }
});

describe('absMaxQuantizeGroupedWithZeroPoint: bit-exact with NumPy float32', () => {
  const W = new Tensor('float32', [7, 4], Float32Array.from(GOLDEN.W));
  for (const [name, kerasCompat] of [
    ['compat', true],
    ['fix', false],
  ] as const) {
    test(`${name} mode: levels, scales, zero points and dequantized values`, () => {
      const g = GOLDEN[name];
      const { quantized, scale, zero, gIdx } = absMaxQuantizeGroupedWithZeroPoint(W, 3, { kerasCompat });
      expect(Array.from(quantized.data)).toEqual(g.q);
      expect(Array.from(scale.data)).toEqual(g.s);
      expect(Array.from(zero.data)).toEqual(g.z);
      expect(Array.from(gIdx)).toEqual([0, 0, 0, 1, 1, 1, 2]);
      expect(Array.from(dequantizeGrouped(quantized, scale, zero, 3).data)).toEqual(g.deq);
    });
  }
});

describe('deliberate fixes (DESIGN.md §2.2): each property holds by default and fails under kerasCompat', () => {
  test('an all-positive group [1.0, 1.1] dequantizes close to itself', () => {
    const w = col([1.0, 1.1]);
    const fixed = absMaxQuantizeGroupedWithZeroPoint(w, 2);
    const deq = dequantizeGrouped(fixed.quantized, fixed.scale, fixed.zero, 2).data;
    expect(Math.abs(deq[0] - 1.0)).toBeLessThanOrEqual(fixed.scale.data[0] / 2 + 1e-6);
    expect(Math.abs(deq[1] - 1.1)).toBeLessThanOrEqual(fixed.scale.data[0] / 2 + 1e-6);
    // Keras: s = 0.1/15, z = -8, both levels clip to 7 and both values come back as 0.1 (spec §2.5).
    const keras = absMaxQuantizeGroupedWithZeroPoint(w, 2, { kerasCompat: true });
    expect(Array.from(keras.zero.data)).toEqual([-8]);
    expect(Array.from(keras.quantized.data)).toEqual([7, 7]);
    const kd = dequantizeGrouped(keras.quantized, keras.scale, keras.zero, 2).data;
    expect(kd[0]).toBeCloseTo(0.1, 5);
    expect(kd[1]).toBeCloseTo(0.1, 5);
  });

  test('a constant nonzero group dequantizes to its value', () => {
    const w = col([0.7, 0.7, 0.7, 0.7]);
    const fixed = absMaxQuantizeGroupedWithZeroPoint(w, 4);
    for (const v of dequantizeGrouped(fixed.quantized, fixed.scale, fixed.zero, 4).data) expect(v).toBeCloseTo(0.7, 5);
    // Keras: s = 1e-7/15 ≈ 6.7e-9 and every value dequantizes to about 1e-7.
    const keras = absMaxQuantizeGroupedWithZeroPoint(w, 4, { kerasCompat: true });
    expect(keras.scale.data[0]).toBeCloseTo(6.67e-9, 10);
    for (const v of dequantizeGrouped(keras.quantized, keras.scale, keras.zero, 4).data) expect(Math.abs(v)).toBeLessThan(1e-6);
  });

  test('an all-zero group with epsilon 0 stays finite and exact', () => {
    const fixed = absMaxQuantizeGroupedWithZeroPoint(col([0, 0, 0]), 3, { epsilon: 0 });
    expect(fixed.scale.data[0]).toBeGreaterThan(0);
    expect(Number.isFinite(fixed.scale.data[0])).toBe(true);
    expect(Array.from(dequantizeGrouped(fixed.quantized, fixed.scale, fixed.zero, 3).data)).toEqual([0, 0, 0]);
    const keras = absMaxQuantizeGroupedWithZeroPoint(col([0, 0, 0]), 3, { epsilon: 0, kerasCompat: true });
    expect(keras.scale.data[0]).toBe(0); // Keras divides by this scale
  });

  test('zero point clamp: an all-negative group keeps its zero inside [-8, 7] without saturating', () => {
    const w = col([-2.0, -1.5, -1.0]);
    const fixed = absMaxQuantizeGroupedWithZeroPoint(w, 3);
    expect(fixed.zero.data[0]).toBe(7);
    const deq = dequantizeGrouped(fixed.quantized, fixed.scale, fixed.zero, 3).data;
    [-2.0, -1.5, -1.0].forEach((v, i) => expect(Math.abs(deq[i] - v)).toBeLessThanOrEqual(fixed.scale.data[0] / 2 + 1e-6));
    // Keras: the ideal zero (round(2 / (1/15)) - 8 = 22) is clipped to 7 while the range stays [-2, -1]: every level
    // saturates at -8 and -2.0 comes back as -1.0.
    const keras = absMaxQuantizeGroupedWithZeroPoint(w, 3, { kerasCompat: true });
    expect(Array.from(keras.quantized.data)).toEqual([-8, -8, -8]);
    const kd = dequantizeGrouped(keras.quantized, keras.scale, keras.zero, 3).data;
    expect(kd[0]).toBeCloseTo(-1.0, 5);
  });

  test('offset random groups: every element within half a step, zero points in range', () => {
    const rows = 96;
    const cols = 24;
    const w = gaussian(rows * cols, 11);
    for (let j = 0; j < cols; j++) for (let r = 0; r < rows; r++) w[r * cols + j] += (j % 3) * 4 - 4; // -4, 0, +4 offsets
    expect(worstErrorInSteps(w, rows, cols, 32, false)).toBeLessThanOrEqual(0.5 + 1e-4);
    const { zero } = absMaxQuantizeGroupedWithZeroPoint(new Tensor('float32', [rows, cols], w), 32);
    for (const z of zero.data) expect(z >= -8 && z <= 7).toBe(true);
    expect(worstErrorInSteps(w, rows, cols, 32, true)).toBeGreaterThan(5);
  });
});

describe('reconstruction error (the Keras grouped int4 tests)', () => {
  async function perChannelRmse(w: Tensor<'float32'>): Promise<number> {
    const { quantized, scale } = await absMaxQuantize(w, 0, { valueRange: [-8, 7] });
    const cols = w.shape[1];
    const deq = new Float32Array(w.size);
    for (let i = 0; i < w.size; i++) deq[i] = quantized.data[i] / scale.data[i % cols];
    return rmse(w.data, deq);
  }

  for (const B of [32, 64, 128]) {
    test(`standard-normal 256x64, block ${B}: RMSE < 0.15 and <= per-channel + 0.01`, async () => {
      const w = new Tensor('float32', [256, 64], gaussian(256 * 64, 100 + B));
      const { quantized, scale, zero } = absMaxQuantizeGroupedWithZeroPoint(w, B);
      expect(scale.shape).toEqual([256 / B, 64]);
      const grouped = rmse(w.data, dequantizeGrouped(quantized, scale, zero, B).data);
      expect(grouped).toBeLessThan(0.15);
      expect(grouped).toBeLessThanOrEqual((await perChannelRmse(w)) + 0.01);
    });
  }

  test('uniform(-1, 1) 512x256, block 128: grouped <= per-channel + 0.01; 500 rows give 4 groups', async () => {
    const r = rng(5);
    const w = new Tensor('float32', [512, 256], Float32Array.from({ length: 512 * 256 }, () => r() * 2 - 1));
    const g = absMaxQuantizeGroupedWithZeroPoint(w, 128);
    const grouped = rmse(w.data, dequantizeGrouped(g.quantized, g.scale, g.zero, 128).data);
    expect(grouped).toBeLessThan(0.15);
    expect(grouped).toBeLessThanOrEqual((await perChannelRmse(w)) + 0.01);
    const w500 = new Tensor('float32', [500, 8], gaussian(500 * 8, 3));
    const g500 = absMaxQuantizeGroupedWithZeroPoint(w500, 128);
    expect(g500.scale.shape).toEqual([4, 8]);
    expect(g500.gIdx[499]).toBe(3);
    expect(g500.gIdx[383]).toBe(2);
    expect(g500.gIdx[384]).toBe(3);
  });
});

describe('absMaxQuantizeGroupedWithZeroPoint: arguments', () => {
  test('blockSize -1 is one group over all rows', () => {
    const { scale, gIdx } = absMaxQuantizeGroupedWithZeroPoint(col([0.5, -1, 2, 0.25, 3]), -1);
    expect(scale.shape).toEqual([1, 1]);
    expect(Array.from(gIdx)).toEqual([0, 0, 0, 0, 0]);
    expect(scale.data[0]).toBeCloseTo(4 / 15, 6);
  });

  test('float16 input is widened', () => {
    const h = col([0.9, -0.3, 0.45]).astype('float16');
    expect(Array.from(absMaxQuantizeGroupedWithZeroPoint(h, 2).quantized.data)).toEqual([7, -8, 7]);
  });

  test('rejects bad inputs', () => {
    expect(() => absMaxQuantizeGroupedWithZeroPoint(tensor([1, 2, 3]), 2)).toThrow(/Expected a 2-D tensor \[rows, cols\] for x but received shape \[3\]/);
    expect(() => absMaxQuantizeGroupedWithZeroPoint(col([1, 2]), 0)).toThrow(InvalidArgumentError);
    expect(() => absMaxQuantizeGroupedWithZeroPoint(col([1, 2]), 1.5)).toThrow(/for blockSize but received 1.5/);
    expect(() => absMaxQuantizeGroupedWithZeroPoint(col([1, 2]), 2, { valueRange: [1, 7] })).toThrow(/for valueRange/);
    expect(() => absMaxQuantizeGroupedWithZeroPoint(col([1, 2]), 2, { epsilon: -1 })).toThrow(/for epsilon but received -1/);
    expect(() => absMaxQuantizeGroupedWithZeroPoint(tensor([1, 2], [2, 1], 'int8'), 2)).toThrow(/floating-point Tensor for x/);
  });

  test('dequantizeGrouped checks shapes', () => {
    const { quantized, scale, zero } = absMaxQuantizeGroupedWithZeroPoint(col([1, 2, 3]), 2);
    expect(() => dequantizeGrouped(quantized, scale, zero, 3)).toThrow(ShapeMismatchError);
    expect(() => dequantizeGrouped(quantized, scale, zero, 3)).toThrow(/Expected shape \[1, 1\] for scale but received \[2, 1\]/);
  });
});

describe('AbsMaxQuantizer.quantize (spec §1.1, §2.2 worked example)', () => {
  const w = tensor([0.5, -1, -0.25, 0.2, 1, 0.1], [3, 2]);

  test('axis from the call', async () => {
    const { quantized, scale } = await new AbsMaxQuantizer().quantize(w, { axis: 0 });
    expect(Array.from(quantized.data)).toEqual([63, -127, -32, 25, 127, 13]);
    expect(scale.shape).toEqual([1, 2]);
    expect(scale.data[0]).toBeCloseTo(126.999985, 4);
  });

  test('default axis is -1', async () => {
    const { quantized, scale } = await new AbsMaxQuantizer().quantize(tensor([0.3, -0.6, 0.9], [1, 3]));
    expect(Array.from(quantized.data)).toEqual([42, -85, 127]);
    expect(scale.data[0]).toBeCloseTo(141.1111, 3);
  });

  test('constructor axis is used when the call gives none; the call wins otherwise', async () => {
    const q0 = await new AbsMaxQuantizer({ axis: 0 }).quantize(w);
    expect(Array.from(q0.quantized.data)).toEqual([63, -127, -32, 25, 127, 13]);
    const q1 = await new AbsMaxQuantizer({ axis: 0 }).quantize(w, { axis: -1 });
    expect(q1.scale.shape).toEqual([3, 1]);
    expect(Array.from(q1.quantized.data)).toEqual([63, -127, -127, 102, 127, 13]); // 0.5 * 126.99998 = 63.49999 -> 63 (spec §2.2)
    const qn = await new AbsMaxQuantizer({ axis: 0 }).quantize(w, { axis: null });
    expect(qn.scale.shape).toEqual([1, 2]);
  });

  test('value range [-8, 7] (per-channel int4)', async () => {
    const { quantized } = await new AbsMaxQuantizer({ valueRange: [-8, 7] }).quantize(w, { axis: 0 });
    expect(Array.from(quantized.data)).toEqual([3, -7, -2, 1, 7, 1]);
  });
});

describe('float8 helpers (spec §2.8)', () => {
  test('computeFloat8Scale(3, 4, 448) == 1 / (448 / 3)', () => {
    expect(computeFloat8Scale(3, 4, 448)).toBeCloseTo(1 / (448 / 3), 9);
    expect(computeFloat8Scale(3, 4, 448, 1)).toBeCloseTo(6 / 448, 9);
  });

  test('a zero or non-finite amax keeps the current scale', () => {
    expect(computeFloat8Scale(0, 4, 448)).toBe(4);
    expect(computeFloat8Scale(Infinity, 0.5, 448)).toBe(0.5);
    expect(computeFloat8Scale(NaN, 0.25, 57344)).toBe(0.25);
  });

  test('computeFloat8AmaxHistory: slot 0 = max|x|, the rest = roll(h, -1)[1:]', async () => {
    const h = new Float32Array([1, 2, 3, 4]);
    const out = await computeFloat8AmaxHistory(tensor([1, -7, 2, 0.5], [2, 2]), h);
    expect(Array.from(out)).toEqual([7, 3, 4, 1]);
    expect(Array.from(h)).toEqual([1, 2, 3, 4]);
  });

  test('quantizeAndDequantize with scale 0.01: E4M3 within 0.1, E5M2 within 0.5 (Keras tolerances), saturation', () => {
    const r = rng(9);
    const x = Float32Array.from({ length: 256 }, () => r() * 2 - 1);
    const e4 = quantizeAndDequantize(new Tensor('float32', [16, 16], x), 0.01, 'float8_e4m3fn');
    const e5 = quantizeAndDequantize(new Tensor('float32', [16, 16], x), 0.01, 'float8_e5m2');
    expect(e4.shape).toEqual([16, 16]);
    for (let i = 0; i < x.length; i++) {
      expect(Math.abs(e4.data[i] - x[i])).toBeLessThanOrEqual(0.1);
      expect(Math.abs(e5.data[i] - x[i])).toBeLessThanOrEqual(0.5);
    }
    const sat = quantizeAndDequantize(tensor([10, -10, 0.015], [3]), 0.01, 'float8_e4m3fn').data;
    expect(sat[0]).toBeCloseTo(4.48, 5);
    expect(sat[1]).toBeCloseTo(-4.48, 5);
    expect(sat[2]).toBeCloseTo(0.015, 6);
    expect(quantizeAndDequantize(tensor([1e6], [1]), 1, 'float8_e5m2').data[0]).toBe(57344);
  });
});
