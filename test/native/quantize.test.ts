// absMax / absMaxQuantize: the spec's worked example exactly, an independent float32 JS reference, and every ISA
// variant against the scalar reference over the awkward size sweep (bit-exact).
import { absMax, absMaxQuantize, tensor, Tensor, _kernelImpls, IsaName } from '../../lib';
import { SIZES, randomF32, absmaxQuantizeRef, firstBitMismatch, firstMismatch } from '../helpers';

const ISAS = _kernelImpls('absmax_quantize') as IsaName[];

describe('absMaxQuantize: Keras worked example (spec §2.2)', () => {
  test('Dense int8 kernel along axis 0', async () => {
    const w = tensor([0.5, -1, -0.25, 0.2, 1, 0.1], [3, 2]);
    const { quantized, scale } = await absMaxQuantize(w, 0);
    expect(Array.from(quantized.data)).toEqual([63, -127, -32, 25, 127, 13]);
    expect(scale.shape).toEqual([1, 2]);
    expect(scale.data[0]).toBe(Math.fround(127 / Math.fround(1 + Math.fround(1e-7))));
    expect(scale.data[0]).toBeCloseTo(126.999985, 5);
    expect(scale.data[1]).toBe(scale.data[0]);
  });

  test('activation row along the last axis', async () => {
    const x = tensor([0.3, -0.6, 0.9], [1, 3]);
    const { quantized, scale } = await absMaxQuantize(x, -1);
    expect(Array.from(quantized.data)).toEqual([42, -85, 127]);
    expect(scale.data[0]).toBeCloseTo(141.1111, 3);
  });

  test('0.5 * s_w sits just below the tie and rounds to 63, not 64', async () => {
    const { quantized } = await absMaxQuantize(tensor([0.5, 1], [2]), 0);
    expect(quantized.data[0]).toBe(63);
  });
});

describe.each(ISAS)('absmax kernels, isa=%s, vs independent reference', (isa) => {
  const shapes: Array<[number, number, number]> = [];
  for (const len of SIZES) for (const inner of [1, 3, 17, 129]) shapes.push([2, len, inner]);
  for (const inner of SIZES) for (const len of [1, 5, 33]) shapes.push([1, len, inner]);

  test('absMaxQuantize bit-exact over the size sweep', async () => {
    let seed = 1;
    for (const [outer, len, inner] of shapes) {
      const x = randomF32(outer * len * inner, seed++, 3);
      const t = new Tensor('float32', [outer, len, inner], x);
      const { quantized, scale } = await absMaxQuantize(t, 1, { isa });
      const ref = absmaxQuantizeRef(x, outer, len, inner);
      expect([outer, len, inner, firstMismatch(quantized.data, ref.q)]).toEqual([outer, len, inner, -1]);
      expect([outer, len, inner, firstBitMismatch(scale.data, ref.scale)]).toEqual([outer, len, inner, -1]);
    }
  });

  test('absMax over the size sweep equals max |x|', async () => {
    let seed = 1000;
    for (const [outer, len, inner] of shapes) {
      const x = randomF32(outer * len * inner, seed++, 10);
      const out = await absMax(new Tensor('float32', [outer, len, inner], x), 1, { isa });
      const want = new Float32Array(outer * inner);
      for (let o = 0; o < outer; o++)
        for (let l = 0; l < len; l++)
          for (let i = 0; i < inner; i++) want[o * inner + i] = Math.max(want[o * inner + i], Math.abs(x[(o * len + l) * inner + i]));
      expect([outer, len, inner, firstBitMismatch(out.data, want)]).toEqual([outer, len, inner, -1]);
    }
  });

  test('NaN, infinities, -0, denormals and custom ranges', async () => {
    const x = new Float32Array([NaN, 1, 2, -0, 1e-40, -1e-45, Infinity, 3, 0.5, -0.25, 7, -8, 1, 2, 3, 4]);
    const t = new Tensor('float32', [4, 4], x);
    for (const axis of [0, 1]) {
      for (const range of [[-127, 127], [-8, 7], [-128, 127]] as Array<[number, number]>) {
        const got = await absMaxQuantize(t, axis, { isa, valueRange: range });
        const [outer, len, inner] = axis === 0 ? [1, 4, 4] : [4, 4, 1];
        const ref = absmaxQuantizeRef(x, outer, len, inner, range[0], range[1]);
        expect(firstMismatch(got.quantized.data, ref.q)).toBe(-1);
        expect(firstBitMismatch(got.scale.data, ref.scale)).toBe(-1);
      }
    }
    const amax = await absMax(t, 1, { isa, keepdims: false });
    expect(amax.shape).toEqual([4]);
    expect(Number.isNaN(amax.data[0])).toBe(true);
    expect(amax.data[1]).toBe(Infinity);
  });
});

describe('absMax / absMaxQuantize API', () => {
  test('multiple adjacent axes and null reduce jointly', async () => {
    const x = tensor([1, -2, 3, -4, 5, -6, 7, -8], [2, 2, 2]);
    expect(Array.from((await absMax(x, [1, 2])).data)).toEqual([4, 8]);
    expect((await absMax(x, [1, 2])).shape).toEqual([2, 1, 1]);
    expect(Array.from((await absMax(x, null)).data)).toEqual([8]);
    const { scale } = await absMaxQuantize(x, null);
    expect(scale.shape).toEqual([1, 1, 1]);
  });

  test('float16 input is widened exactly', async () => {
    const x = tensor([0.5, -1, 0.25], [3]).astype('float16');
    const { quantized } = await absMaxQuantize(x, 0);
    expect(Array.from(quantized.data)).toEqual([63, -127, 32]);
  });
});

describe('Keras AbsMax test (spec §6)', () => {
  test('U(-1,1) (3,4,5), axis -1: int8 within ±127, scale (3,4,1), RMSE(q/scale) < 0.1', async () => {
    const x = tensor(Array.from(randomF32(60, 77)), [3, 4, 5]);
    const { quantized, scale } = await absMaxQuantize(x, -1);
    expect(scale.shape).toEqual([3, 4, 1]);
    expect(quantized.dtype).toBe('int8');
    let se = 0;
    for (let i = 0; i < 60; i++) {
      expect(Math.abs(quantized.data[i])).toBeLessThanOrEqual(127);
      se += (quantized.data[i] / scale.data[Math.floor(i / 5)] - (x.data as Float32Array)[i]) ** 2;
    }
    expect(Math.sqrt(se / 60)).toBeLessThan(0.1);
  });
});
