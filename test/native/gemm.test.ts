// GEMMs: every ISA variant against a float64 / exact-integer JS reference over the awkward sizes.
//
// Tolerance table (fp32 GEMM). Any float32 summation order of K products satisfies
//   |c - c_exact| <= gamma_K * sum_k |a_ik * b_kj|,  gamma_K = K * u / (1 - K * u),  u = 2^-24
// (Higham, Accuracy and Stability of Numerical Algorithms, §3.1). The test asserts this bound with a factor of 2
// headroom for the final store; a blocked or FMA kernel is usually ~sqrt(K) times tighter.
//   K        bound (relative to sum |a||b|)
//   1..257   <= 3.1e-5
//   4096     <= 4.9e-4
// int8 GEMM: exact (int32 accumulation), for any int8 values including -128.
import { matmul, matmulInt8, Tensor, _kernelImpls, IsaName } from '../../lib';
import { SIZES, randomF32, randomI8, rowsCheck } from '../helpers';

const FISAS = _kernelImpls('sgemm') as IsaName[];
const IISAS = _kernelImpls('igemm') as IsaName[];

function shapes(): Array<[number, number, number]> {
  const out: Array<[number, number, number]> = [];
  for (const s of SIZES) {
    out.push([s, 17, 33], [7, s, 65], [3, 129, s]);
    if (s <= 129) out.push([s, s, s]);
  }
  out.push([1, 1, 1], [257, 255, 127], [1, 4096, 64], [65, 1, 300], [0, 5, 7], [4, 0, 3], [3, 4, 0]);
  return out;
}

function sgemmCheck(M: number, N: number, K: number, a: Float32Array, b: Float32Array, c: Float32Array): string | null {
  const u = 2 ** -24;
  const gamma = (K * u) / (1 - K * u);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let exact = 0;
      let mag = 0;
      for (let k = 0; k < K; k++) {
        const p = a[i * K + k] * b[k * N + j];
        exact += p;
        mag += Math.abs(p);
      }
      const err = Math.abs(c[i * N + j] - exact);
      if (!(err <= 2 * gamma * mag + 1e-30)) return `C[${i},${j}] = ${c[i * N + j]}, expected ${exact} (|err| ${err} > ${2 * gamma * mag})`;
    }
  }
  return null;
}

describe.each(FISAS)('fp32 GEMM, isa=%s', (isa) => {
  test('matches the float64 reference within the tolerance table', async () => {
    let seed = 11;
    for (const [M, N, K] of shapes()) {
      const a = randomF32(M * K, seed++);
      const b = randomF32(K * N, seed++);
      const c = await matmul(new Tensor('float32', [M, K], a), new Tensor('float32', [K, N], b), { isa });
      expect(c.shape).toEqual([M, N]);
      expect([M, N, K, sgemmCheck(M, N, K, a, b, c.data)]).toEqual([M, N, K, null]);
    }
  });

  test('large K (4096) stays within the bound', async () => {
    const [M, N, K] = [5, 37, 4096];
    const a = randomF32(M * K, 3);
    const b = randomF32(K * N, 4);
    const c = await matmul(new Tensor('float32', [M, K], a), new Tensor('float32', [K, N], b), { isa });
    expect(sgemmCheck(M, N, K, a, b, c.data)).toBeNull();
  });

  test('M = 1 (GEMV split over K and N between threads) stays within the bound', async () => {
    // >= 1 MFLOP (else one thread) and K >= 512: the GEMV is split into K ranges whose partial sums are added at
    // the end; N past 16384 splits the columns.
    // (A cheap hash fill rather than the seeded generator: these operands are large and the test must stay fast.)
    const fill = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => (((i + seed) * 2654435761) % 1999) / 999.5 - 1);
    let seed = 91;
    for (const [N, K] of [[61, 8209], [16411, 31]]) {
      const a = fill(K, seed++);
      const b = fill(K * N, seed++);
      const c = await matmul(new Tensor('float32', [1, K], a), new Tensor('float32', [K, N], b), { isa });
      expect([N, K, rowsCheck(1, N, K, a, b, c.data)]).toEqual([N, K, null]);
    }
  });

  test('small M (B read in place, split over K and N between threads) stays within the bound', async () => {
    // M <= 16 reads B in place: K ranges with partial sums (K >= 512, >= 1 MFLOP), a partial last column panel,
    // and N past 16384 (two column chunks).
    const fill = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => (((i + seed) * 2654435761) % 1999) / 999.5 - 1);
    let seed = 7;
    for (const [M, N, K] of [[9, 61, 1031], [5, 16411, 31], [2, 300, 2053]]) {
      const a = fill(M * K, seed++);
      const b = fill(K * N, seed++);
      const c = await matmul(new Tensor('float32', [M, K], a), new Tensor('float32', [K, N], b), { isa });
      expect([M, N, K, rowsCheck(M, N, K, a, b, c.data)]).toEqual([M, N, K, null]);
    }
  });

  test('NaN and Inf propagate', async () => {
    const a = new Float32Array([NaN, 1, Infinity, 1]);
    const b = new Float32Array([1, 1, 1, 1]);
    const c = await matmul(new Tensor('float32', [2, 2], a), new Tensor('float32', [2, 2], b), { isa });
    expect(Number.isNaN(c.data[0])).toBe(true);
    expect(c.data[2]).toBe(Infinity);
  });
});

function igemmRef(M: number, N: number, K: number, a: Int8Array, b: Int8Array): Int32Array {
  const c = new Int32Array(M * N);
  for (let i = 0; i < M; i++)
    for (let k = 0; k < K; k++) {
      const av = a[i * K + k];
      if (av === 0) continue;
      for (let j = 0; j < N; j++) c[i * N + j] += av * b[k * N + j];
    }
  return c;
}

describe.each(IISAS)('int8 GEMM, isa=%s', (isa) => {
  test('exact over the size sweep with full-range int8', async () => {
    let seed = 21;
    for (const [M, N, K] of shapes()) {
      const a = randomI8(M * K, seed++);
      const b = randomI8(K * N, seed++);
      const c = await matmulInt8(new Tensor('int8', [M, K], a), new Tensor('int8', [K, N], b), { isa });
      const want = igemmRef(M, N, K, a, b);
      let bad = -1;
      for (let i = 0; i < want.length && bad < 0; i++) if (c.data[i] !== want[i]) bad = i;
      expect([M, N, K, bad]).toEqual([M, N, K, -1]);
    }
  });

  test('adversarial extremes: all -128, all 127, mixed, large K', async () => {
    for (const [fa, fb, K] of [
      [-128, -128, 4096],
      [127, -128, 4096],
      [-128, 127, 70000],
      [127, 127, 1000],
    ] as Array<[number, number, number]>) {
      const M = 3;
      const N = 19;
      const a = new Int8Array(M * K).fill(fa);
      const b = new Int8Array(K * N).fill(fb);
      a[1] = 0;
      b[N + 2] = -1;
      const c = await matmulInt8(new Tensor('int8', [M, K], a), new Tensor('int8', [K, N], b), { isa });
      const want = igemmRef(M, N, K, a, b);
      expect(Array.from(c.data)).toEqual(Array.from(want));
    }
  });

  test('spec §2.2 accumulator', async () => {
    const q = new Int8Array([63, -127, -32, 25, 127, 13]);
    const x = new Int8Array([42, -85, 127]);
    const c = await matmulInt8(new Tensor('int8', [1, 3], x), new Tensor('int8', [3, 2], q), { isa });
    expect(Array.from(c.data)).toEqual([21495, -5808]);
  });
});

describe('matmul shapes', () => {
  test('batched a [..., K] and the result shape', async () => {
    const a = new Tensor('float32', [2, 3, 4], randomF32(24, 1));
    const b = new Tensor('float32', [4, 5], randomF32(20, 2));
    const c = await matmul(a, b);
    expect(c.shape).toEqual([2, 3, 5]);
    expect(sgemmCheck(6, 5, 4, a.data, b.data, c.data)).toBeNull();
  });
});
