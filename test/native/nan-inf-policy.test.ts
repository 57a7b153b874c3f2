// The NaN/±Inf policy of every quantization mode and op, as docs/nan-inf-policy.md states it. Each test here is
// the evidence of one statement there (the behaviour was measured, then pinned).
import { absMax, absMaxQuantize, applySymbolic, Dense, gptqHessian, gptqQuantizeMatrix, Input, Model, Tensor } from '../../lib';

const row = (v: number[]) => new Tensor('float32', [1, v.length], new Float32Array(v));

describe('absMax / absMaxQuantize (AbsMax, per row)', () => {
  test('a row containing NaN: absmax NaN, scale NaN, every level 0; a row containing ±Inf: absmax Inf, scale 0, every level 0; other rows unaffected', async () => {
    const x = new Tensor('float32', [4, 4], new Float32Array([1, NaN, -2, 0.5, 1, Infinity, -2, 0.5, 1, -Infinity, -2, 0.5, 1, 0.25, -2, 0.5]));
    expect(Array.from((await absMax(x, -1)).data)).toEqual([NaN, Infinity, Infinity, 2]);
    const { quantized, scale } = await absMaxQuantize(x, -1);
    expect(Array.from(scale.data)).toEqual([NaN, 0, 0, Math.fround(127 / Math.fround(2 + Math.fround(1e-7))) /* float32 arithmetic */]);
    expect(Array.from(quantized.data).slice(0, 12)).toEqual(new Array(12).fill(0));
    expect(Array.from(quantized.data).slice(12)).toEqual([64, 16, -127, 32]);
  });
  test('huge finite values (±3e38) saturate at ±127', async () => {
    const { quantized } = await absMaxQuantize(row([3e38, -3e38, 1]), -1);
    expect(Array.from(quantized.data)).toEqual([127, -127, 0]);
  });
});

async function dense(kernel00: number): Promise<{ m: Model; d: Dense }> {
  const inp = Input({ shape: [4] });
  const d = new Dense({ units: 3, seed: 1 });
  const out = await applySymbolic(d, inp);
  const m = new Model({ inputs: inp, outputs: out });
  (d.kernel!.value.data as Float32Array)[0] = kernel00; // input 0 -> output 0
  return { m, d };
}
const ones = new Tensor('float32', [1, 4], new Float32Array([1, 1, 1, 1]));

describe('quantizing non-finite weights (Dense kernel[0][0])', () => {
  test.each(['int8', 'int4'] as const)('%s: NaN or ±Inf makes that output column NaN at inference; the other columns stay finite and equal to the clean model', async (mode) => {
    const clean = await dense(0.5);
    await clean.m.quantize(mode, { verbose: false });
    const yc = (await clean.m.predict(ones)).data as Float32Array;
    for (const bad of [NaN, Infinity, -Infinity]) {
      const { m } = await dense(bad);
      await m.quantize(mode, { verbose: false });
      const y = (await m.predict(ones)).data as Float32Array;
      expect(y[0]).toBeNaN();
      expect([y[1], y[2]]).toEqual([yc[1], yc[2]]);
    }
  });
  test('float8: NaN makes that column NaN; ±Inf saturates to ±448 (the largest float8_e4m3fn)', async () => {
    const { m: mn } = await dense(NaN);
    await mn.quantize('float8', { verbose: false });
    expect((await mn.predict(ones)).data[0]).toBeNaN();
    for (const [bad, sat] of [[Infinity, 448], [-Infinity, -448]]) {
      const { m } = await dense(bad);
      await m.quantize('float8', { verbose: false });
      const { m: ms } = await dense(sat);
      await ms.quantize('float8', { verbose: false });
      expect(Array.from((await m.predict(ones)).data)).toEqual(Array.from((await ms.predict(ones)).data));
    }
  });
});

describe('activations with NaN at inference', () => {
  test.each(['float32', 'int8', 'int4', 'float8'] as const)('%s: a NaN in one row makes that whole row NaN; other rows keep the clean result', async (mode) => {
    const { m } = await dense(0.5);
    if (mode !== 'float32') await m.quantize(mode, { verbose: false });
    const clean = (await m.predict(new Tensor('float32', [1, 4], new Float32Array([1, 2, 3, 4])))).data as Float32Array;
    const y = (await m.predict(new Tensor('float32', [2, 4], new Float32Array([NaN, 1, 1, 1, 1, 2, 3, 4])))).data as Float32Array;
    expect(Array.from(y.slice(0, 3)).every(Number.isNaN)).toBe(true);
    // (M = 1 and M = 2 may take different kernels: equal up to float rounding, not bit for bit)
    Array.from(y.slice(3)).forEach((v, j) => expect(Math.abs(v - clean[j])).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(clean[j]))));
  });
});

describe('GPTQ with non-finite values', () => {
  const X = (bad: number) => new Tensor('float32', [16, 4], new Float32Array(64).map((_, i) => (i === 5 ? bad : Math.sin(i * 1.3))));
  const W = (bad: number) => new Tensor('float32', [4, 3], new Float32Array(12).map((_, i) => (i === 0 ? bad : Math.cos(i))));
  test('gptqHessian passes NaN/±Inf activations through into the Hessian (no error there)', async () => {
    for (const bad of [NaN, Infinity]) {
      const { hessian } = await gptqHessian([X(bad)]);
      expect(Array.from(hessian).some((v) => !Number.isFinite(v))).toBe(true);
    }
  });
  test('gptqQuantizeMatrix refuses a non-finite Hessian or kernel with QK_INVALID_ARGUMENT', async () => {
    const { hessian: good } = await gptqHessian([X(0.25)]);
    await expect(gptqQuantizeMatrix(W(0.5), good, { weightBits: 4, groupSize: -1 })).resolves.toBeDefined();
    for (const bad of [NaN, Infinity]) {
      const { hessian } = await gptqHessian([X(bad)]);
      await expect(gptqQuantizeMatrix(W(0.5), hessian, { weightBits: 4, groupSize: -1 })).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT' });
      await expect(gptqQuantizeMatrix(W(bad), good, { weightBits: 4, groupSize: -1 })).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT', message: expect.stringMatching(/NaN or Infinity/) });
    }
  });
});
