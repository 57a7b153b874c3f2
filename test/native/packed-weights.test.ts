// Pre-packed weights (csrc/include/qk/packed.h, lib/ops/weight-pack.ts): the packed GEMMs against the unpacked ones
// of the same ISA (int8 W8A8 bit-exact, and equal to the reference ISA; fp32 bit-identical to the same ISA's unpacked
// call and within the fp32 tolerance table of gemm.test.ts against a float64 reference), for every ISA variant
// (ISAs without a packed layout must fall back to their unpacked path); hostile or mismatched packed buffers
// rejected with typed errors; the cache packing on the second large call and re-packing after Variable.assign.
import {
  Dense,
  Tensor,
  _kernelImpls,
  IsaName,
  QkError,
  denseForward,
  packWeights,
  setWeightPacking,
  _packedWeightsState,
  PACK_MIN_ROWS,
  capabilities,
} from '../../lib';
import { loadNative } from '../../lib/native/load';
import { callNative } from '../../lib/ops/call';
import { firstMismatch, rowsCheck } from '../helpers';

// Cheap hash fills (the seeded generator is slow under jest for these sizes; gemm.test.ts does the same).
const randomF32 = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => (((i + seed * 7919) * 2654435761) % 1999) / 999.5 - 1);
const randomI8 = (n: number, seed: number, lo = -128, hi = 127) =>
  Int8Array.from({ length: n }, (_, i) => lo + ((((i + seed * 7919) * 2654435761) >>> 0) % (hi - lo + 1)));


const native = loadNative();
const ISAS = _kernelImpls('sgemm') as IsaName[];
const HAS_512 = ISAS.includes('avx512');
// the cache packs for the ACTIVE ISA (QK_FORCE_ISA=avx2 / ref: nothing is packed)
const PACKS = capabilities().isa === 'avx512';

// M, K, N over the awkward sizes, plus sizes that cross the K blocks (fp32 384, int8 512) and several item columns.
const SHAPES: Array<[number, number, number]> = [];
for (const M of [1, 3, 17, 33, 127, 129]) for (const [K, N] of [[3, 17], [17, 129], [129, 33], [33, 127], [127, 1]]) SHAPES.push([M, K, N]);
SHAPES.push([129, 1031, 200], [40, 520, 700], [20, 4, 1100]);

function sameBits(a: Float32Array, b: Float32Array): number {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

async function packed(kind: 'f32' | 'w8a8', w: Float32Array | Int8Array, K: number, N: number): Promise<ArrayBuffer | null> {
  return HAS_512 ? packWeights(kind, w, K, N, 'avx512') : null;
}

describe('packWeightsBytes', () => {
  test('only AVX-512 has packed layouts; sizes follow qk/packed.h', () => {
    for (const isa of ISAS) {
      const want = isa === 'avx512';
      expect(native.packWeightsBytes('f32', 33, 65, isa) > 0).toBe(want);
      if (want) {
        expect(native.packWeightsBytes('f32', 33, 65, isa)).toBe(3 * 33 * 128 + 128);
        expect(native.packWeightsBytes('w8a8', 33, 65, isa)).toBe(2 * 36 * 64 + 128);
      }
    }
    expect(() => native.packWeightsBytes('int4' as 'f32', 3, 3)).toThrow(/Expected 'f32' or 'w8a8' for kind/);
  });
});

describe.each(ISAS)('packed GEMMs, isa=%s', (isa) => {
  test('W8A8: packed == unpacked == ref (bit-exact); fp32: packed == unpacked (bits), within the tolerance table', async () => {
    let seed = 5;
    for (const [M, K, N] of SHAPES) {
      const x = randomF32(M * K, seed++);
      const wf = randomF32(K * N, seed++);
      const wi = randomI8(K * N, seed++);
      const ws = Float32Array.from(randomF32(N, seed++), (v) => Math.abs(v) + 0.01);
      const bias = randomF32(N, seed++);
      const pf = await packed('f32', wf, K, N);
      const pi = await packed('w8a8', wi, K, N);
      const y = () => new Float32Array(M * N);
      const [u8, p8, r8] = [y(), y(), y()];
      await native.denseW8A8(M, N, K, x, wi, ws, bias, -127, 127, 1e-7, u8, isa);
      await native.denseW8A8(M, N, K, x, wi, ws, bias, -127, 127, 1e-7, p8, isa, pi);
      await native.denseW8A8(M, N, K, x, wi, ws, bias, -127, 127, 1e-7, r8, 'ref');
      expect([M, K, N, sameBits(p8, u8), sameBits(p8, r8)]).toEqual([M, K, N, -1, -1]);
      const [uf, pfy] = [y(), y()];
      await native.denseF32(M, N, K, x, wf, null, uf, isa);
      await native.denseF32(M, N, K, x, wf, null, pfy, isa, pf);
      // (the float64 check is slow under jest: run it where the packed kernel runs, on the smaller shapes; the
      // unpacked kernel it is bit-identical to is checked over every size in gemm.test.ts)
      const check = isa === 'avx512' && M * K * N <= 300_000 ? rowsCheck(M, N, K, x, wf, pfy) : null;
      expect([M, K, N, sameBits(pfy, uf), check]).toEqual([M, K, N, -1, null]);
    }
  });

  test('bare sgemm / igemm with packed B', async () => {
    let seed = 77;
    // [251, 1031, 500]: more rows than one int8 item takes with a packed B (kMC = 240; N = 500 gives 8 column items, so
    // the M split is the packed cap, not the thread plan) and three K blocks.
    for (const [M, K, N] of [[17, 129, 33], [129, 1031, 200], [33, 3, 127], [2, 5, 65], [251, 1031, 500]]) {
      const a = randomF32(M * K, seed++);
      const b = randomF32(K * N, seed++);
      const ai = randomI8(M * K, seed++);
      const bi = randomI8(K * N, seed++);
      const [c0, c1] = [new Float32Array(M * N), new Float32Array(M * N)];
      await native.sgemm(M, N, K, a, b, c0, isa);
      await native.sgemm(M, N, K, a, b, c1, isa, await packed('f32', b, K, N));
      expect(sameBits(c1, c0)).toBe(-1);
      const [i0, i1, ir] = [new Int32Array(M * N), new Int32Array(M * N), new Int32Array(M * N)];
      await native.igemm(M, N, K, ai, bi, i0, isa);
      await native.igemm(M, N, K, ai, bi, i1, isa, await packed('w8a8', bi, K, N));
      await native.igemm(M, N, K, ai, bi, ir, 'ref');
      expect([M, K, N, firstMismatch(i1, i0), firstMismatch(i1, ir)]).toEqual([M, K, N, -1, -1]);
    }
  });
});

(HAS_512 ? describe : describe.skip)('hostile or mismatched packed buffers (AVX-512 build)', () => {
  const [M, K, N] = [20, 40, 70];
  const x = randomF32(M * K, 1);
  const wi = randomI8(K * N, 2);
  const wf = randomF32(K * N, 3);
  const ws = new Float32Array(N).fill(0.5);
  const y = new Float32Array(M * N);
  const call8 = (pk: unknown, k = K, n = N) =>
    native.denseW8A8(M, n, k, x.subarray(0, M * k), wi.subarray(0, k * n), ws.subarray(0, n), null, -127, 127, 1e-7, y.subarray(0, M * n), undefined, pk as ArrayBuffer);
  const codeOf = async (p: () => Promise<void>): Promise<string> => {
    try {
      await p();
      return 'ok';
    } catch (e) {
      return (e as { code?: string }).code ?? String(e);
    }
  };

  test('bad type, short, corrupted header, wrong kind, other K/N, truncated payload, detached', async () => {
    const good = (await packWeights('w8a8', wi, K, N, 'avx512')) as ArrayBuffer;
    const goodF = (await packWeights('f32', wf, K, N, 'avx512')) as ArrayBuffer;
    expect(await codeOf(() => call8(good))).toBe('ok');
    expect(await codeOf(() => call8(new Uint8Array(good)))).toBe('QK_INVALID_ARGUMENT');
    expect(await codeOf(() => call8(new ArrayBuffer(10)))).toBe('QK_INVALID_ARGUMENT');
    expect(await codeOf(() => call8(new ArrayBuffer(good.byteLength)))).toBe('QK_INVALID_ARGUMENT');
    for (let byte = 0; byte < 64; byte += 3) {
      const bad = good.slice(0);
      new Uint8Array(bad)[byte] ^= 0x10;
      expect([byte, await codeOf(() => call8(bad))]).toEqual([byte, 'QK_INVALID_ARGUMENT']);
    }
    expect(await codeOf(() => call8(goodF))).toBe('QK_INVALID_ARGUMENT');
    expect(await codeOf(() => native.denseF32(M, N, K, x, wf, null, y, undefined, good))).toBe('QK_INVALID_ARGUMENT');
    expect(await codeOf(() => call8(good, K - 4, N))).toBe('QK_SHAPE_MISMATCH');
    expect(await codeOf(() => call8(good, K, N - 1))).toBe('QK_SHAPE_MISMATCH');
    expect(await codeOf(() => call8(good.slice(0, good.byteLength - 200)))).toBe('QK_INVALID_ARGUMENT');
    const detached = good.slice(0);
    structuredClone(detached, { transfer: [detached] });
    expect(await codeOf(() => call8(detached))).toBe('QK_INVALID_ARGUMENT');
    // the public wrappers turn these into QkErrors
    await expect(callNative((n) => n.denseW8A8(M, N, K, x, wi, ws, null, -127, 127, 1e-7, y, undefined, good.slice(0, 40)))).rejects.toBeInstanceOf(QkError);
  });

  test('a header with a valid checksum that lies about its payload is rejected; a copied buffer still computes right', async () => {
    const good = (await packWeights('w8a8', wi, K, N, 'avx512')) as ArrayBuffer;
    const fnv = (b: Uint8Array) => {
      let h = 0xcbf29ce484222325n;
      for (let i = 0; i < 56; i++) h = BigInt.asUintN(64, (h ^ BigInt(b[i])) * 0x100000001b3n);
      return h;
    };
    for (const [off, value] of [[32, 1n << 40n], [32, 64n], [40, 200n], [40, 0n], [16, 1n << 60n]] as Array<[number, bigint]>) {
      const bad = good.slice(0);
      const dv = new DataView(bad);
      if (off === 40) dv.setUint32(40, Number(value), true);
      else dv.setBigUint64(off, value, true);
      dv.setBigUint64(56, fnv(new Uint8Array(bad)), true);
      const code = await codeOf(() => call8(bad));
      expect([off, code]).toEqual([off, off === 16 ? 'QK_SHAPE_MISMATCH' : 'QK_INVALID_ARGUMENT']);
    }
    // A copy may put the payload off its 64-byte alignment: then the unpacked path runs; either way the same bits.
    const ref = new Float32Array(M * N);
    await native.denseW8A8(M, N, K, x, wi, ws, null, -127, 127, 1e-7, ref);
    for (let i = 0; i < 4; i++) {
      const copy = new ArrayBuffer(good.byteLength);
      new Uint8Array(copy).set(new Uint8Array(good));
      await call8(copy);
      expect(sameBits(y, ref)).toBe(-1);
    }
  });
});

describe('the packed-weights cache (lib/ops/weight-pack.ts)', () => {
  afterEach(() => setWeightPacking(null));
  const [M, K, N] = [PACK_MIN_ROWS + 3, 48, 40];

  test('packs on the second large call only, never for small M, and results do not change', async () => {
    const w = randomF32(K * N, 9);
    const x = new Tensor('float32', [M, K], randomF32(M * K, 10));
    const small = new Tensor('float32', [PACK_MIN_ROWS - 1, K], randomF32((PACK_MIN_ROWS - 1) * K, 11));
    await denseForward(small, { format: 'float32', kernel: w }, N, null);
    await denseForward(small, { format: 'float32', kernel: w }, N, null);
    expect(_packedWeightsState(w)).toBe('none');
    const y1 = (await denseForward(x, { format: 'float32', kernel: w }, N, null)).data;
    expect(_packedWeightsState(w)).toBe('seen');
    const y2 = (await denseForward(x, { format: 'float32', kernel: w }, N, null)).data;
    expect(_packedWeightsState(w)).toBe(PACKS ? 'packed' : 'unpackable');
    const y3 = (await denseForward(x, { format: 'float32', kernel: w }, N, null)).data;
    expect(sameBits(y2, y1)).toBe(-1);
    expect(sameBits(y3, y1)).toBe(-1);
    setWeightPacking(false);
    const w2 = randomF32(K * N, 12);
    for (let i = 0; i < 3; i++) await denseForward(x, { format: 'float32', kernel: w2 }, N, null);
    expect(_packedWeightsState(w2)).toBe('none');
  });

  test('an int8 Dense layer re-packs after its variables are assigned (new arrays), and matches the unpacked path', async () => {
    const layer = new Dense({ units: N, useBias: false, dtype: 'int8_from_float32' });
    layer.build([null, K]);
    const x = new Tensor('float32', [M, K], randomF32(M * K, 20));
    const unpacked = async (w: Int8Array, s: Float32Array) =>
      (await denseForward(x, { format: 'int8', kernel: w, scale: s }, N, null, { activation: { valueRange: [-127, 127], epsilon: 1e-7 }, packWeights: false })).data;
    const scale = new Float32Array(N).fill(0.02);
    for (const seed of [1, 2]) {
      const w = randomI8(K * N, seed, -127, 127);
      layer.loadOwnVariables([new Tensor('int8', [K, N], w), new Tensor('float32', [N], scale)]);
      const want = await unpacked(w, scale);
      for (let call = 0; call < 3; call++) {
        const got = (await layer.apply(x)).data as Float32Array;
        expect([seed, call, sameBits(got, want)]).toEqual([seed, call, -1]);
      }
      expect(_packedWeightsState(w)).toBe(PACKS ? 'packed' : 'unpackable');
    }
  });
});
