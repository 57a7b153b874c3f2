// The packed-once decode GEMV (qk/lowbit_pack.h, lib/ops/lowbit-pack.ts): every variant bit-exact with the
// int8-compute references it replaces for M < 16 (dense_lowbit_a8 for int4 grouped and GPTQ, dense_w4a8 for int4
// per-channel) over awkward sizes, groups that do not divide K, 2/3/4/8 bits, act-order, NaN/inf rows; a row's
// result independent of the batch size through the public ops; the pack cache; hostile packed buffers rejected
// with typed errors.
import { Tensor, _kernelImpls, IsaName, denseGptq, denseForward, packGptqRuntime } from '../../lib';
import { loadNative } from '../../lib/native/load';
import { LOWBIT_GEMV_ROW_LIMIT, lowbitGemv, lowbitPacked } from '../../lib/ops/lowbit-pack';
import { firstBitMismatch, rng } from '../helpers';
import { LowbitCase, makeLowbitCase } from './lowbit-cases';

const native = loadNative();
// The avx512 table runs the VNNI variant; avx2 and ref the reference (no AVX2 variant: avx2 is not run twice).
const ISAS = (_kernelImpls('dense_gptq') as IsaName[]).filter((i) => i !== 'avx2');
const fast = native.lowbitA8Fast();

type Case = Omit<LowbitCase, 'bias'>;
const makeCase = (c: Case) => makeLowbitCase({ ...c, bias: c.seed % 2 === 0 });

async function pack(kind: number, bits: number, K: number, N: number, group: number, w: Uint8Array | Int8Array, scale: Float32Array, zero: Int8Array | Uint8Array | null) {
  const dst = new Uint8Array(native.lowbitPackBytes(kind, bits, K, N, group));
  await native.lowbitPack(kind, bits, K, N, group, w, scale, zero, dst);
  return dst;
}

async function gemv(M: number, N: number, K: number, x: Float32Array, packed: Uint8Array, bias: Float32Array | null, isa: IsaName, act: [number, number, number] = [-127, 127, 1e-7]) {
  const y = new Float32Array(M * N);
  await native.denseLowbitPacked(M, N, K, x, packed, bias, act[0], act[1], act[2], y, isa);
  return y;
}

const CASES: Case[] = [];
{
  let seed = 1;
  const dims: Array<[number, number, number]> = [
    [1, 1, 1], [3, 17, 33], [1, 3, 127], [2, 129, 65], [1, 127, 17], [15, 33, 3], [1, 65, 129],
    // batches the GEMV takes up to LOWBIT_GEMV_ROW_LIMIT: every remainder of the 4-row blocks, awkward N, K
    [16, 65, 33], [17, 3, 129], [30, 70, 17], [63, 33, 65], [127, 17, 40],
  ];
  for (const [M, N, K] of dims) {
    for (const [bits, keras] of [[4, true], [2, false], [3, false], [4, false], [8, false]] as Array<[2 | 3 | 4 | 8, boolean]>) {
      for (const group of [1, 5, 32, K]) CASES.push({ M, N, K, bits, keras, group, seed: seed++ });
    }
  }
}

test.each(ISAS)('%s: packed GEMV is bit-exact with the dense_lowbit_a8 reference (int4 grouped, GPTQ 2/3/4/8)', async (isa) => {
  for (const c of CASES) {
    const d = makeCase(c);
    const want = new Float32Array(c.M * c.N);
    await native.denseLowbitA8(c.M, c.N, c.K, d.x, d.w, c.bits, c.keras, d.scale, d.zero, c.group, d.bias, want, 'ref');
    const packed = await pack(c.keras ? 1 : 2, c.bits, c.K, c.N, c.group, d.w, d.scale, d.zero);
    expect([JSON.stringify(c), firstBitMismatch(await gemv(c.M, c.N, c.K, d.x, packed, d.bias, isa), want)]).toEqual([JSON.stringify(c), -1]);
  }
  // several column blocks, NaN / inf / zero rows
  const c: Case = { M: 5, N: 200, K: 300, bits: 4, keras: false, group: 128, seed: 98 };
  const d = makeCase(c);
  d.x[1 * c.K + 7] = NaN;
  d.x[2 * c.K + 1] = -Infinity;
  d.x.fill(0, 3 * c.K, 4 * c.K);
  const want = new Float32Array(c.M * c.N);
  await native.denseLowbitA8(c.M, c.N, c.K, d.x, d.w, c.bits, c.keras, d.scale, d.zero, c.group, d.bias, want, 'ref');
  expect(Number.isNaN(want[c.N])).toBe(true);
  const packed = await pack(2, 4, c.K, c.N, c.group, d.w, d.scale, d.zero);
  expect(firstBitMismatch(await gemv(c.M, c.N, c.K, d.x, packed, d.bias, isa), want)).toBe(-1);
});

test.each(ISAS)('%s: packed per-channel int4 GEMV is bit-exact with the dense_w4a8 reference', async (isa) => {
  let seed = 500;
  for (const [M, N, K] of [[1, 1, 1], [3, 17, 33], [1, 129, 127], [2, 70, 300]] as Array<[number, number, number]>) {
    for (const act of [[-127, 127, 1e-7], [-128, 127, 1e-3]] as Array<[number, number, number]>) {
      const c: Case = { M, N, K, bits: 4, keras: true, group: K, seed: seed++ };
      const d = makeCase(c);
      const scale = d.scale.subarray(0, N); // [N] multipliers
      const want = new Float32Array(M * N);
      await native.denseW4A8(M, N, K, d.x, d.w, scale, d.bias, act[0], act[1], act[2], want, 'ref');
      const packed = await pack(3, 4, K, N, K, d.w, scale, null);
      expect([M, N, K, act[0], firstBitMismatch(await gemv(M, N, K, d.x, packed, d.bias, isa, act), want)]).toEqual([M, N, K, act[0], -1]);
    }
  }
});

describe('public ops (AVX-512 VNNI only: elsewhere small batches keep the exact kernels)', () => {
  const t = fast ? test : test.skip;
  t('a row gives the same bits at M = 1 and M = 16 (GPTQ with act-order, int4 grouped, int4 per-channel)', async () => {
    const N = 70;
    const K = 200;
    const c: Case = { M: 16, N, K, bits: 4, keras: false, group: 64, seed: 7 };
    const d = makeCase(c);
    // act-order: levels [N, K] packed with a permutation; x is given in runtime order
    const r = rng(3);
    const levels = new Uint8Array(N * K).map(() => Math.floor(r() * 16));
    const perm = Int32Array.from({ length: K }, (_, i) => i).sort(() => r() - 0.5);
    const kernel = await packGptqRuntime(levels, N, K, 4, perm);
    const wts = { bits: 4 as const, kernel, scale: d.scale, zero: d.zero as Uint8Array, groupSize: 64 };
    const all = (await denseGptq(new Tensor('float32', [16, K], d.x), wts, N, d.bias)).data as Float32Array;
    for (const i of [0, 9]) {
      const one = (await denseGptq(new Tensor('float32', [1, K], d.x.slice(i * K, (i + 1) * K)), wts, N, d.bias)).data as Float32Array;
      expect(firstBitMismatch(one, all.subarray(i * N, (i + 1) * N))).toBe(-1);
    }
    const ck: Case = { M: 16, N, K, bits: 4, keras: true, group: 32, seed: 8 };
    const dk = makeCase(ck);
    const grouped = { format: 'int4-grouped' as const, kernel: dk.w, scale: dk.scale, zero: dk.zero as Int8Array, groupSize: 32 };
    const perChannel = { format: 'int4' as const, kernel: dk.w, scale: dk.scale.subarray(0, N) };
    for (const w of [grouped, perChannel]) {
      const yAll = (await denseForward(new Tensor('float32', [16, K], dk.x), w, N, dk.bias)).data as Float32Array;
      const y1 = (await denseForward(new Tensor('float32', [1, K], dk.x.slice(5 * K, 6 * K)), w, N, dk.bias)).data as Float32Array;
      expect(firstBitMismatch(y1, yAll.subarray(5 * N, 6 * N))).toBe(-1);
      // the exact opt-out still runs the weight-only kernel (a different result)
      const exact = (await denseForward(new Tensor('float32', [1, K], dk.x.slice(5 * K, 6 * K)), w, N, dk.bias, { weightOnlyExact: true })).data as Float32Array;
      expect(firstBitMismatch(exact, y1)).not.toBe(-1);
    }
  });
  t('row i of a batch up to and past LOWBIT_GEMV_ROW_LIMIT equals the M = 1 result (packed GEMV and GEMM)', async () => {
    const N = 37;
    const K = 90;
    const { grouped: GL, perChannel: CL } = LOWBIT_GEMV_ROW_LIMIT;
    const Mmax = GL + 3;
    const c: Case = { M: Mmax, N, K, bits: 4, keras: false, group: 32, seed: 21 };
    const d = makeCase(c);
    const ck: Case = { M: Mmax, N, K, bits: 4, keras: true, group: 32, seed: 22 };
    const dk = makeCase(ck);
    const gptq = { bits: 4 as const, kernel: d.w, scale: d.scale, zero: d.zero as Uint8Array, groupSize: 32 };
    const grouped = { format: 'int4-grouped' as const, kernel: dk.w, scale: dk.scale, zero: dk.zero as Int8Array, groupSize: 32 };
    const perChannel = { format: 'int4' as const, kernel: dk.w, scale: dk.scale.subarray(0, N) };
    const ops: Array<[string, number, (x: Float32Array, M: number) => Promise<Float32Array>, Float32Array]> = [
      ['gptq', GL, async (x, M) => (await denseGptq(new Tensor('float32', [M, K], x), gptq, N, d.bias)).data as Float32Array, d.x],
      ['int4-grouped', GL, async (x, M) => (await denseForward(new Tensor('float32', [M, K], x), grouped, N, dk.bias)).data as Float32Array, dk.x],
      ['int4', CL, async (x, M) => (await denseForward(new Tensor('float32', [M, K], x), perChannel, N, dk.bias)).data as Float32Array, dk.x],
    ];
    const y = new Float32Array(Mmax * N);
    for (const [name, limit, op, xs] of ops) {
      // the GEMV runs below the limit, not from it
      const src = name === 'gptq'
        ? { kind: 'gptq' as const, bits: 4 as const, kernel: d.w, scale: d.scale, zero: d.zero as Uint8Array, group: 32 }
        : name === 'int4-grouped'
          ? { kind: 'int4-grouped' as const, kernel: dk.w, scale: dk.scale, zero: dk.zero as Int8Array, group: 32 }
          : { kind: 'int4' as const, kernel: dk.w, scale: dk.scale.subarray(0, N) };
      const below = lowbitGemv(src, limit - 1, K, N, xs.subarray(0, (limit - 1) * K), null, y.subarray(0, (limit - 1) * N), { weightOnlyExact: false });
      expect([name, below !== null]).toEqual([name, true]);
      await below;
      expect([name, lowbitGemv(src, limit, K, N, xs.subarray(0, limit * K), null, y.subarray(0, limit * N), { weightOnlyExact: false })]).toEqual([name, null]);
      for (const M of [limit - 1, limit, Mmax]) {
        const all = await op(xs.subarray(0, M * K), M);
        for (const i of [0, 5, M - 1]) {
          const one = await op(xs.slice(i * K, (i + 1) * K), 1);
          expect([name, M, i, firstBitMismatch(one, all.subarray(i * N, (i + 1) * N))]).toEqual([name, M, i, -1]);
        }
      }
    }
  });
});

test('inconsistent weights through the public ops are typed errors (from the pack or the exact kernel)', async () => {
  const c: Case = { M: 1, N: 20, K: 40, bits: 4, keras: true, group: 16, seed: 13 };
  const d = makeCase(c);
  const x = new Tensor('float32', [1, c.K], d.x);
  const w = { format: 'int4-grouped' as const, kernel: d.w.subarray(1), scale: d.scale, zero: d.zero as Int8Array, groupSize: 16 };
  await expect(denseForward(x, w, c.N, null)).rejects.toMatchObject({ code: 'QK_SHAPE_MISMATCH' });
  await expect(denseForward(x, { ...w, kernel: d.w, scale: d.scale.subarray(1) }, c.N, null)).rejects.toMatchObject({ code: 'QK_SHAPE_MISMATCH' });
});

test('groups too small to pack (the pack would exceed 1.5x the weights) keep the exact kernel', async () => {
  const K = 64;
  const N = 64;
  const w = new Uint8Array((K * N) / 2);
  const y = new Float32Array(N);
  const x = new Float32Array(K);
  const src = (group: number) => ({ kind: 'gptq' as const, bits: 4 as const, kernel: w, scale: new Float32Array(Math.ceil(K / group) * N), zero: new Uint8Array(Math.ceil(K / group) * N), group });
  expect(lowbitGemv(src(1), 1, K, N, x, null, y, { weightOnlyExact: false })).toBeNull();
  if (fast) {
    const run = lowbitGemv(src(32), 1, K, N, x, null, y, { weightOnlyExact: false });
    expect(run).not.toBeNull();
    await run;
  }
});

test('the pack cache: one pack per kernel array and scale / zero identity', async () => {
  const c: Case = { M: 1, N: 20, K: 40, bits: 4, keras: true, group: 16, seed: 11 };
  const d = makeCase(c);
  const src = { kind: 'int4-grouped' as const, kernel: d.w, scale: d.scale, zero: d.zero as Int8Array, group: 16 };
  const p1 = lowbitPacked(src, c.K, c.N);
  const p2 = lowbitPacked(src, c.K, c.N);
  expect(p2).toBe(p1); // the same pending promise
  const a = await p1;
  expect(lowbitPacked(src, c.K, c.N)).toBe(a); // cached, synchronously
  const b = await lowbitPacked({ ...src, scale: d.scale.slice() }, c.K, c.N); // a new scale array: a new pack
  expect(b).not.toBe(a);
  expect(Buffer.compare(Buffer.from(a), Buffer.from(b))).toBe(0);
});

describe('hostile packed buffers', () => {
  const N = 20;
  const K = 40;
  const c: Case = { M: 1, N, K, bits: 4, keras: false, group: 16, seed: 12 };
  const d = makeCase(c);
  let good: Uint8Array;
  beforeAll(async () => {
    good = await pack(2, 4, K, N, 16, d.w, d.scale, d.zero);
  });
  const call = (p: Uint8Array, n = N, k = K) => native.denseLowbitPacked(1, n, k, d.x.subarray(0, k), p, null, -127, 127, 1e-7, new Float32Array(n), 'ref');
  const edit = (f: (b: Uint8Array, v: DataView) => void) => {
    const b = good.slice();
    f(b, new DataView(b.buffer));
    return b;
  };
  test.each([
    ['empty', () => new Uint8Array(0)],
    ['header only', () => good.slice(0, 64)],
    ['truncated', () => good.slice(0, good.length - 1)],
    ['one byte more', () => { const b = new Uint8Array(good.length + 1); b.set(good); return b; }],
    ['bad magic', () => edit((b) => (b[0] ^= 1))],
    ['bad version', () => edit((b) => (b[4] = 9))],
    ['bad kind', () => edit((b) => (b[6] = 7))],
    ['kind 1 with 2 bits', () => edit((b) => { b[6] = 1; b[7] = 2; })],
    ['bad bits', () => edit((b) => (b[7] = 5))],
    ['K larger', () => edit((_, v) => v.setBigInt64(8, BigInt(K * 1000), true))],
    ['N negative', () => edit((_, v) => v.setBigInt64(16, -1n, true))],
    ['group 0', () => edit((_, v) => v.setBigInt64(24, 0n, true))],
    ['group huge', () => edit((_, v) => v.setBigInt64(24, 1n << 62n, true))],
    ['total lies', () => edit((_, v) => v.setBigInt64(32, BigInt(1 << 30), true))],
    ['reserved byte', () => edit((b) => (b[63] = 1))],
  ] as Array<[string, () => Uint8Array]>)('%s -> QK_INVALID_ARGUMENT', (_name, make) => {
    expect(() => call(make())).toThrow(expect.objectContaining({ code: 'QK_INVALID_ARGUMENT' }));
  });
  test('a valid buffer of other dims -> QK_SHAPE_MISMATCH; random header bytes never crash', async () => {
    expect(() => call(good, N + 1)).toThrow(expect.objectContaining({ code: 'QK_SHAPE_MISMATCH' }));
    await expect(call(good)).resolves.toBeUndefined();
    const r = rng(5);
    for (let t = 0; t < 300; t++) {
      const b = edit((bb) => (bb[Math.floor(r() * 64)] = Math.floor(r() * 256)));
      try {
        await call(b);
      } catch (e) {
        expect(['QK_INVALID_ARGUMENT', 'QK_SHAPE_MISMATCH']).toContain((e as { code?: string }).code);
      }
    }
  });
  test('bad pack arguments are typed errors', () => {
    expect(() => native.lowbitPackBytes(3, 4, 40, 20, 16)).toThrow(expect.objectContaining({ code: 'QK_INVALID_ARGUMENT' }));
    expect(() => native.lowbitPackBytes(1, 3, 40, 20, 16)).toThrow(expect.objectContaining({ code: 'QK_INVALID_ARGUMENT' }));
    expect(() => native.lowbitPack(2, 4, K, N, 16, d.w.subarray(1), d.scale, d.zero, new Uint8Array(good.length))).toThrow(
      expect.objectContaining({ code: 'QK_SHAPE_MISMATCH' }),
    );
    expect(() => native.lowbitPack(2, 4, K, N, 16, d.w, d.scale, d.zero, new Uint8Array(good.length - 1))).toThrow(
      expect.objectContaining({ code: 'QK_SHAPE_MISMATCH' }),
    );
  });
});
