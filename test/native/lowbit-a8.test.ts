// The int8-compute path of the low-bit weight-only forwards (dense_lowbit_a8, qk/lowbit_a8.h): the scalar
// reference bit-exact against an independent JS emulation of the documented algorithm (integer group sums, float32
// fused ops emulated with doubles + Math.fround), every optimised ISA bit-exact against the reference over awkward
// sizes (M, K, N, groups that do not divide K, 2/3/4/8 bits, Keras signed int4, NaN/inf rows), the distance to
// the exact weight-only result bounded by the activation rounding, the automatic choice in denseGptq /
// denseForward (and its opt-outs), and bad arguments rejected.
import { Tensor, _kernelImpls, IsaName, denseGptq, denseForward } from '../../lib';
import { loadNative } from '../../lib/native/load';
import { LOWBIT_A8_MIN_ROWS, useLowbitA8 } from '../../lib/ops/lowbit-a8';
import { absmaxQuantizeRef, firstBitMismatch } from '../helpers';
import { LowbitCase, makeLowbitCase } from './lowbit-cases';

const ISAS = _kernelImpls('dense_gptq') as IsaName[];
const OPT = ISAS.filter((i) => i !== 'ref');
const native = loadNative();

type Case = LowbitCase;
const makeCase = makeLowbitCase;

function level(w: Uint8Array, rb: number, bits: number, keras: boolean, k: number, j: number): number {
  let v = 0;
  for (let b = 0; b < bits; b++) {
    const bit = bits * j + b;
    v |= ((w[k * rb + (bit >> 3)] >> (bit & 7)) & 1) << b;
  }
  return keras ? v ^ 8 : v;
}

/** JS emulation of the documented algorithm (lowbit_a8.h). */
function emulate(c: Case, d: ReturnType<typeof makeCase>): Float32Array {
  const { q, scale: sx } = absmaxQuantizeRef(d.x, c.M, c.K, 1, -127, 127, 1e-7);
  const y = new Float32Array(c.M * c.N);
  const f32 = Math.fround;
  for (let i = 0; i < c.M; i++) {
    for (let j = 0; j < c.N; j++) {
      let f = 0;
      for (let g = 0; g < d.G; g++) {
        let rs = 0;
        let acc = 0;
        for (let k = g * c.group; k < Math.min(c.K, (g + 1) * c.group); k++) {
          rs += q[i * c.K + k];
          acc += q[i * c.K + k] * level(d.w, d.rb, c.bits, c.keras, k, j);
        }
        const cz = c.keras ? d.zero[g * c.N + j] + 8 : d.zero[g * c.N + j];
        const t = f32(-cz * rs + f32(acc)); // exact in double, one rounding: fmaf
        f = f32(d.scale[g * c.N + j] * t + f); // product exact in double
      }
      const v = f32(f / sx[i]);
      y[i * c.N + j] = d.bias ? f32(v + d.bias[j]) : v;
    }
  }
  return y;
}

async function run(c: Case, d: ReturnType<typeof makeCase>, isa: IsaName): Promise<Float32Array> {
  const y = new Float32Array(c.M * c.N);
  await native.denseLowbitA8(c.M, c.N, c.K, d.x, d.w, c.bits, c.keras, d.scale, d.zero, c.group, d.bias, y, isa);
  return y;
}

const CASES: Case[] = [];
{
  let seed = 1;
  const dims: Array<[number, number, number]> = [
    [1, 1, 1], [3, 17, 33], [17, 3, 127], [7, 129, 129], [6, 64, 256], [13, 65, 300], [33, 127, 17], [2, 5, 0],
  ];
  for (const [M, N, K] of dims) {
    for (const [bits, keras] of [[4, true], [2, false], [3, false], [4, false], [8, false]] as Array<[2 | 3 | 4 | 8, boolean]>) {
      for (const group of [1, 5, 32, Math.max(K, 1)]) CASES.push({ M, N, K, bits, keras, group, bias: seed % 2 === 0, seed: seed++ });
    }
  }
}

test('the reference equals the JS emulation of the documented algorithm, bit for bit', async () => {
  for (const c of CASES.filter((_, i) => i % 3 === 0)) {
    const d = makeCase(c);
    const got = await run(c, d, 'ref');
    expect([JSON.stringify(c), firstBitMismatch(got, emulate(c, d))]).toEqual([JSON.stringify(c), -1]);
  }
});

test.each(OPT.length ? (OPT as string[]) : ['(no optimised ISA on this machine)'])('%s is bit-exact with the reference over awkward sizes', async (isa) => {
  if (!(OPT as string[]).includes(isa)) return;
  for (const c of CASES) {
    const d = makeCase(c);
    const want = await run(c, d, 'ref');
    const got = await run(c, d, isa as IsaName);
    expect([JSON.stringify(c), firstBitMismatch(got, want)]).toEqual([JSON.stringify(c), -1]);
  }
  // larger tiles (several 64-column blocks, full and partial 6-row tiles), NaN and inf rows
  const c: Case = { M: 20, N: 200, K: 260, bits: 4, keras: false, group: 128, bias: true, seed: 99 };
  const d = makeCase(c);
  d.x[3 * c.K + 7] = NaN;
  d.x[5 * c.K + 1] = Infinity;
  d.x.fill(0, 8 * c.K, 9 * c.K);
  const want = await run(c, d, 'ref');
  expect(Number.isNaN(want[3 * c.N])).toBe(true);
  expect(firstBitMismatch(await run(c, d, isa as IsaName), want)).toBe(-1);
});

test('the int8 path stays within the activation-rounding bound of the exact weight-only result', async () => {
  for (const c of CASES.filter((x, i) => x.K > 0 && !x.keras && i % 3 === 0)) {
    const d = makeCase(c);
    const got = await run(c, d, OPT.includes('avx512') ? 'avx512' : 'ref');
    const exact = new Float32Array(c.M * c.N);
    await native.denseGptq(c.M, c.N, c.K, d.x, d.w, c.bits, d.scale, d.zero as Uint8Array, c.group, d.bias, exact, 'ref');
    const wabs = new Float64Array(c.K * c.N); // |W_hat|
    for (let k = 0; k < c.K; k++) {
      const g = Math.floor(k / c.group);
      for (let j = 0; j < c.N; j++) wabs[k * c.N + j] = Math.abs((level(d.w, d.rb, c.bits, false, k, j) - d.zero[g * c.N + j]) * d.scale[g * c.N + j]);
    }
    for (let i = 0; i < c.M; i++) {
      let amax = 0;
      for (let k = 0; k < c.K; k++) amax = Math.max(amax, Math.abs(d.x[i * c.K + k]));
      for (let j = 0; j < c.N; j++) {
        // |x - xq / sx| <= amax / 254 per input; plus float32 rounding of both paths
        let wsum = 0;
        let tsum = 0;
        for (let k = 0; k < c.K; k++) {
          const wh = wabs[k * c.N + j];
          wsum += wh;
          tsum += wh * Math.abs(d.x[i * c.K + k]);
        }
        const bound = (wsum * amax) / 254 * (1 + 1e-4) + 1e-5 * (tsum + Math.abs(exact[i * c.N + j])) + 1e-6;
        expect(Math.abs(got[i * c.N + j] - exact[i * c.N + j])).toBeLessThanOrEqual(bound);
      }
    }
  }
});

describe('automatic choice', () => {
  const fast = native.lowbitA8Fast();
  const c: Case = { M: LOWBIT_A8_MIN_ROWS, N: 70, K: 96, bits: 4, keras: false, group: 32, bias: true, seed: 7 };
  const d = makeCase(c);
  const wts = { bits: c.bits, kernel: d.w, scale: d.scale, zero: d.zero as Uint8Array, groupSize: c.group };

  test('denseGptq takes the int8 path from LOWBIT_A8_MIN_ROWS rows when the VNNI variant runs, else the exact one', async () => {
    const x = new Tensor('float32', [c.M, c.K], d.x);
    const y = (await denseGptq(x, wts, c.N, d.bias)).data as Float32Array;
    const a8 = await run(c, d, 'ref');
    const exact = new Float32Array(c.M * c.N);
    await native.denseGptq(c.M, c.N, c.K, d.x, d.w, c.bits, d.scale, d.zero as Uint8Array, c.group, d.bias, exact);
    expect(firstBitMismatch(y, fast ? a8 : exact)).toBe(-1);
    expect(useLowbitA8(c.M, c.K, c.group)).toBe(fast);
    // opt-outs: the option and the environment variable; fewer rows
    const yo = (await denseGptq(x, wts, c.N, d.bias, { weightOnlyExact: true })).data as Float32Array;
    expect(firstBitMismatch(yo, exact)).toBe(-1);
    process.env.QK_WEIGHT_ONLY_EXACT = '1';
    try {
      expect(useLowbitA8(c.M, c.K, c.group)).toBe(false);
      expect(firstBitMismatch((await denseGptq(x, wts, c.N, d.bias)).data as Float32Array, exact)).toBe(-1);
    } finally {
      delete process.env.QK_WEIGHT_ONLY_EXACT;
    }
    expect(useLowbitA8(LOWBIT_A8_MIN_ROWS - 1, c.K, c.group)).toBe(false);
  });

  test('denseForward int4-grouped takes the same path (Keras signed nibbles, int8 zero points)', async () => {
    const ck: Case = { ...c, keras: true, seed: 8 };
    const dk = makeCase(ck);
    const x = new Tensor('float32', [ck.M, ck.K], dk.x);
    const w = { format: 'int4-grouped' as const, kernel: dk.w, scale: dk.scale, zero: dk.zero as Int8Array, groupSize: ck.group };
    const y = (await denseForward(x, w, ck.N, dk.bias)).data as Float32Array;
    const exact = (await denseForward(x, w, ck.N, dk.bias, { weightOnlyExact: true })).data as Float32Array;
    const ye = new Float32Array(ck.M * ck.N);
    await native.denseW4G(ck.M, ck.N, ck.K, dk.x, dk.w, dk.scale, dk.zero as Int8Array, ck.group, dk.bias, ye);
    expect(firstBitMismatch(exact, ye)).toBe(-1);
    expect(firstBitMismatch(y, fast ? await run(ck, dk, 'ref') : ye)).toBe(-1);
  });
});

test('bad arguments are rejected with typed errors naming the argument', async () => {
  const y = new Float32Array(4);
  const x = new Float32Array(8);
  const call = (over: Partial<Record<string, unknown>>) => {
    const a = { bits: 4, keras: false, zero: new Uint8Array(2), group: 4, K: 4, w: new Uint8Array(4), ...over };
    return native.denseLowbitA8(2, 2, a.K as number, x, a.w as Uint8Array, a.bits as number, a.keras as boolean, new Float32Array(2), a.zero as Uint8Array, a.group as number, null, y);
  };
  await expect(call({})).resolves.toBeUndefined();
  expect(() => call({ bits: 3, keras: true })).toThrow(/kerasSigned/);
  expect(() => call({ zero: new Int8Array(2) })).toThrow(/zero/);
  expect(() => call({ group: 0 })).toThrow(/group/);
  expect(() => call({ w: new Uint8Array(3) })).toThrow(/w/);
  let err: unknown;
  try {
    await call({ bits: 5 });
  } catch (e) {
    err = e;
  }
  expect(String(err)).toMatch(/bits/);
  // through the public op
  await expect(
    denseGptq(new Tensor('float32', [1, 4], new Float32Array(4)), { bits: 4, kernel: new Uint8Array(3), scale: new Float32Array(2), zero: new Uint8Array(2), groupSize: 4 }, 2, null),
  ).rejects.toThrow(/w\.kernel/);
});
