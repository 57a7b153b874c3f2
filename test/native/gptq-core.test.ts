// The native GPTQ core through the raw binding: every ISA variant is BIT-EXACT against the scalar reference
// (docs/gptq-native.md: every value is formed by the same sequence of correctly rounded operations), plus
// accuracy against float64 JavaScript maths and the failure paths (non-PD / NaN input, bad lengths, damping
// retries).
//
// Tolerances of the accuracy checks (float64 kernels, random SPD matrices of condition number < 10):
//   Hessian sum in row order       bit-exact (each float32 x float32 product is exact in float64)
//   H vs 2/N XᵀX in another order  1e-13 relative to max|H|
//   L Lᵀ vs A, L Y vs I            1e-12 relative (n <= 257)
//   (UᵀU)(H + λI) vs I             1e-10
import { _kernelImpls, IsaName } from '../../lib';
import { loadNative } from '../../lib/native/load';
import { Prng, bitDiff, correlatedActivations, hessianClosedForm, hessianSumRowOrder } from '../gptq-helpers';

const native = loadNative();

/** The non-reference ISAs of an op (ref itself if nothing else is available, so the tables are never empty). */
function isasOf(op: string): IsaName[] {
  const all = _kernelImpls(op) as IsaName[];
  const others = all.filter((i) => i !== 'ref');
  return others.length ? others : ['ref'];
}

async function codeOf(fn: () => unknown): Promise<string> {
  try {
    await fn();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' ? code : `no code (${String(err)})`;
  }
  return 'resolved';
}

/** A random SPD matrix A = B Bᵀ / n + 0.5 I (full, symmetric), float64. */
function randomSpd(n: number, seed: number): Float64Array {
  const r = new Prng(seed);
  const B = new Float64Array(n * n);
  for (let i = 0; i < B.length; i++) B[i] = r.uniform();
  const A = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += B[i * n + k] * B[j * n + k];
      s /= n;
      if (i === j) s += 0.5;
      A[i * n + j] = s;
      A[j * n + i] = s;
    }
  }
  return A;
}

/** Copy of the lower triangle of A with NaN in the strict upper triangle (which the kernels must not read). */
function lowerWithNaNAbove(A: Float64Array, n: number): Float64Array {
  const out = Float64Array.from(A);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) out[i * n + j] = NaN;
  return out;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

// ---------------------------------------------------------------------------------------------------------
// Hessian accumulation and finalize
// ---------------------------------------------------------------------------------------------------------

const H_COLS = [1, 3, 17, 33, 127, 129, 200];
const H_ROWS = [1, 5, 130];

function activations(rows: number, cols: number, seed: number): Float32Array {
  const r = new Prng(seed);
  const X = r.normalF32(rows * cols);
  // exact zeros, a large and a tiny magnitude, a negative zero
  if (X.length > 3) {
    X[0] = 0;
    X[1] = 1e6;
    X[2] = 1e-7;
    X[3] = -0;
  }
  return X;
}

async function accumulate(X: Float32Array, rows: number, cols: number, isa: IsaName, H = new Float64Array(cols * cols), count = new Float64Array(1)) {
  await native.gptqHessianAccumulate(X, rows, cols, H, count, isa);
  return { H, count };
}

describe.each(isasOf('hessian_accumulate'))('Hessian accumulation, isa=%s vs ref', (isa) => {
  test('one batch: lower triangle bit-exact vs ref and vs the row-order float64 sum; upper triangle untouched', async () => {
    let seed = 100;
    for (const cols of H_COLS) {
      for (const rows of [...H_ROWS, ...(cols === 129 ? [600] : [])]) {
        const X = activations(rows, cols, seed++);
        const ref = await accumulate(X, rows, cols, 'ref');
        const got = await accumulate(X, rows, cols, isa);
        expect([cols, rows, bitDiff(got.H, ref.H)]).toEqual([cols, rows, null]);
        expect(got.count[0]).toBe(rows);
        // the JS sum in the same (ascending row) order is the exact same float64 value for every entry
        const S = hessianSumRowOrder(X, rows, cols);
        const lower = new Float64Array(cols * cols);
        for (let i = 0; i < cols; i++) for (let j = 0; j <= i; j++) lower[i * cols + j] = S[i * cols + j];
        expect([cols, rows, bitDiff(got.H, lower)]).toEqual([cols, rows, null]);
      }
    }
  });

  test('streaming in several batches == one batch, bit-exact (also when the batches mix ISAs)', async () => {
    let seed = 300;
    for (const cols of H_COLS) {
      const rows = 130;
      const X = activations(rows, cols, seed++);
      const one = await accumulate(X, rows, cols, 'ref');
      const splits = [1, 7, 50, 72];
      const H = new Float64Array(cols * cols);
      const count = new Float64Array(1);
      const mixed = new Float64Array(cols * cols);
      const mixedCount = new Float64Array(1);
      let r0 = 0;
      for (let b = 0; b < splits.length; b++) {
        const part = X.subarray(r0 * cols, (r0 + splits[b]) * cols);
        await native.gptqHessianAccumulate(part, splits[b], cols, H, count, isa);
        await native.gptqHessianAccumulate(part, splits[b], cols, mixed, mixedCount, b % 2 ? isa : 'ref');
        r0 += splits[b];
      }
      expect(r0).toBe(rows);
      expect([cols, bitDiff(H, one.H)]).toEqual([cols, null]);
      expect([cols, bitDiff(mixed, one.H)]).toEqual([cols, null]);
      expect(count[0]).toBe(rows);
      expect(mixedCount[0]).toBe(rows);
    }
  });

  test('finalize: bit-exact vs ref, exactly symmetric, = S·(2/N) of the row-order sum, ≈ 2/N XᵀX in any order', async () => {
    let seed = 500;
    for (const cols of H_COLS) {
      for (const rows of H_ROWS) {
        const X = activations(rows, cols, seed++);
        const a = await accumulate(X, rows, cols, 'ref');
        const b = { H: Float64Array.from(a.H), count: Float64Array.from(a.count) };
        await native.gptqHessianFinalize(a.H, cols, a.count, 'ref');
        await native.gptqHessianFinalize(b.H, cols, b.count, isa);
        expect([cols, rows, bitDiff(b.H, a.H)]).toEqual([cols, rows, null]);
        let asym = 0;
        for (let i = 0; i < cols; i++) for (let j = 0; j < i; j++) if (!Object.is(b.H[i * cols + j], b.H[j * cols + i])) asym++;
        expect(asym).toBe(0);
        const S = hessianSumRowOrder(X, rows, cols);
        const f = 2 / rows;
        expect([cols, rows, bitDiff(b.H, S.map((v) => v * f))]).toEqual([cols, rows, null]);
        const C = hessianClosedForm(X, rows, cols);
        const scale = maxAbs(C);
        let worst = 0;
        for (let i = 0; i < C.length; i++) worst = Math.max(worst, Math.abs(C[i] - b.H[i]));
        expect(worst).toBeLessThanOrEqual(1e-13 * scale);
      }
    }
  });

  test('finalize with no rows seen only mirrors (H stays zero)', async () => {
    const cols = 17;
    const H = new Float64Array(cols * cols);
    await native.gptqHessianFinalize(H, cols, new Float64Array([0]), isa);
    expect(maxAbs(H)).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Cholesky, triangular inverse, inverse-Hessian factor
// ---------------------------------------------------------------------------------------------------------

const F_SIZES = [1, 3, 17, 33, 127, 129, 257];

describe.each(isasOf('cholesky_lower'))('Cholesky lower, isa=%s vs ref', (isa) => {
  test.each(F_SIZES)('n=%i: bit-exact, upper triangle neither read nor written, L·Lᵀ ≈ A', async (n) => {
    const A = randomSpd(n, 1000 + n);
    const ref = lowerWithNaNAbove(A, n);
    const got = lowerWithNaNAbove(A, n);
    await native.gptqCholeskyLower(ref, n, 'ref');
    await native.gptqCholeskyLower(got, n, isa);
    expect(bitDiff(got, ref)).toBeNull();
    let worst = 0;
    let upperNaN = 0;
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) if (Number.isNaN(got[i * n + j])) upperNaN++;
    expect(upperNaN).toBe((n * (n - 1)) / 2);
    let badDiag = 0;
    for (let i = 0; i < n; i++) {
      if (!(got[i * n + i] > 0)) badDiag++;
      for (let j = 0; j <= i; j++) {
        let s = 0;
        for (let k = 0; k <= j; k++) s += got[i * n + k] * got[j * n + k];
        worst = Math.max(worst, Math.abs(s - A[i * n + j]));
      }
    }
    expect(badDiag).toBe(0);
    expect(worst).toBeLessThanOrEqual(1e-12 * maxAbs(A));
  });
});

describe.each(isasOf('triangular_inverse_lower'))('triangular inverse lower, isa=%s vs ref', (isa) => {
  test.each(F_SIZES)('n=%i: bit-exact, upper triangle untouched, L·Y ≈ I', async (n) => {
    const L = lowerWithNaNAbove(randomSpd(n, 2000 + n), n);
    await native.gptqCholeskyLower(L, n, 'ref');
    const ref = Float64Array.from(L);
    const got = Float64Array.from(L);
    await native.gptqTriangularInverseLower(ref, n, 'ref');
    await native.gptqTriangularInverseLower(got, n, isa);
    expect(bitDiff(got, ref)).toBeNull();
    let worst = 0;
    let upperNaN = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        if (j > i) {
          if (Number.isNaN(got[i * n + j])) upperNaN++;
          continue;
        }
        let s = 0;
        for (let k = j; k <= i; k++) s += L[i * n + k] * got[k * n + j];
        worst = Math.max(worst, Math.abs(s - (i === j ? 1 : 0)));
      }
    }
    expect(upperNaN).toBe((n * (n - 1)) / 2);
    expect(worst).toBeLessThanOrEqual(1e-12 * n);
  });
});

describe.each(isasOf('cholesky_inverse_upper'))('inverse-Hessian factor (cholesky_inverse_upper), isa=%s vs ref', (isa) => {
  test.each(F_SIZES)('n=%i: bit-exact, U upper with positive diagonal, (UᵀU)(H+λI) ≈ I', async (n) => {
    const H = randomSpd(n, 3000 + n);
    const damp = 0.01;
    const ref = Float64Array.from(H);
    const got = Float64Array.from(H);
    const rr = new Float64Array(2);
    const rg = new Float64Array(2);
    await native.gptqCholeskyInverseUpper(ref, n, damp, 6, rr, 'ref');
    await native.gptqCholeskyInverseUpper(got, n, damp, 6, rg, isa);
    expect(bitDiff(got, ref)).toBeNull();
    expect(Array.from(rg)).toEqual([damp, 1]);
    expect(Array.from(rr)).toEqual([damp, 1]);
    let mean = 0;
    for (let i = 0; i < n; i++) mean += H[i * n + i];
    mean /= n;
    const Hd = Float64Array.from(H);
    for (let i = 0; i < n; i++) Hd[i * n + i] += damp * mean;
    const U = got;
    let badDiag = 0;
    let nonZeroBelow = 0;
    for (let i = 0; i < n; i++) {
      if (!(U[i * n + i] > 0)) badDiag++;
      for (let j = 0; j < i; j++) if (U[i * n + j] !== 0) nonZeroBelow++;
    }
    expect([badDiag, nonZeroBelow]).toEqual([0, 0]);
    // M = UᵀU, then M · Hd
    const M = new Float64Array(n * n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k <= Math.min(i, j); k++) s += U[k * n + i] * U[k * n + j];
        M[i * n + j] = s;
      }
    let worst = 0;
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += M[i * n + k] * Hd[k * n + j];
        worst = Math.max(worst, Math.abs(s - (i === j ? 1 : 0)));
      }
    expect(worst).toBeLessThanOrEqual(1e-10);
  });
});

// ---------------------------------------------------------------------------------------------------------
// gptq_quantize_matrix
// ---------------------------------------------------------------------------------------------------------

interface Opts {
  bits: number;
  group: number;
  sym: boolean;
  act: boolean;
  perChannel?: boolean;
  damp?: number;
  tries?: number;
  zeroDead?: boolean;
}

interface GptqOut {
  q: Uint8Array;
  scale: Float32Array;
  zero: Uint8Array;
  gIdx: Int32Array;
  wHat: Float32Array;
  result: Float64Array;
}

async function runGptq(W: Float32Array, inD: number, outD: number, H: Float64Array, o: Opts, isa: IsaName, fill: number): Promise<GptqOut> {
  const G = o.group === -1 ? 1 : Math.ceil(inD / o.group);
  const bytes = (n: number) => new Uint8Array(n).fill(fill).buffer;
  const out: GptqOut = {
    q: new Uint8Array(bytes(outD * inD)),
    scale: new Float32Array(bytes(4 * outD * G)),
    zero: new Uint8Array(bytes(outD * G)),
    gIdx: new Int32Array(bytes(4 * inD)),
    wHat: new Float32Array(bytes(4 * inD * outD)),
    result: new Float64Array(4),
  };
  await native.gptqQuantizeMatrix(
    W, inD, outD, Float64Array.from(H), o.bits, o.group, o.sym, o.perChannel ?? true, o.act, o.damp ?? 0.01, o.tries ?? 6,
    o.zeroDead ?? false, out.q, out.scale, out.zero, out.gIdx, out.wHat, out.result, isa,
  );
  return out;
}

function diffOut(a: GptqOut, b: GptqOut): Record<string, string | null> {
  return {
    q: bitDiff(a.q, b.q),
    scale: bitDiff(a.scale, b.scale),
    zero: bitDiff(a.zero, b.zero),
    gIdx: bitDiff(a.gIdx, b.gIdx),
    wHat: bitDiff(a.wHat, b.wHat),
    result: bitDiff(a.result, b.result),
  };
}
const SAME = { q: null, scale: null, zero: null, gIdx: null, wHat: null, result: null };

/** Weights [in, out] with awkward features: an all-positive output, an all-zero output, a constant input row. */
function weights(inD: number, outD: number, seed: number): Float32Array {
  const r = new Prng(seed);
  const W = r.normalF32(inD * outD, 0.05);
  for (let k = 0; k < inD; k++) {
    if (outD > 1) W[k * outD + 0] = Math.abs(W[k * outD + 0]) + 0.01;
    if (outD > 2) W[k * outD + 1] = 0;
  }
  if (inD > 2) for (let o = 3; o < outD; o++) W[2 * outD + o] = 0.02;
  if (inD * outD > 10) W[5] = 0.4; // an outlier
  return W;
}

const cache = new Map<string, Float64Array>();
function hessianFor(inD: number, seed: number): Float64Array {
  const key = `${inD}/${seed}`;
  let H = cache.get(key);
  if (!H) {
    const rows = Math.max(2 * inD, 8);
    H = hessianClosedForm(correlatedActivations(rows, inD, seed), rows, inD);
    cache.set(key, H);
  }
  return H;
}

const BITS = [2, 3, 4, 8];
const GROUPS = [-1, 1, 3, 32, 100, 128];

function allOpts(): Opts[] {
  const out: Opts[] = [];
  for (const bits of BITS) for (const group of GROUPS) for (const sym of [false, true]) for (const act of [false, true]) out.push({ bits, group, sym, act });
  return out;
}

describe.each(isasOf('gptq_quantize_matrix'))('gptq_quantize_matrix, isa=%s vs ref', (isa) => {
  const FULL: Array<[number, number]> = [
    [1, 1],
    [3, 5],
    [17, 1],
    [129, 33],
    [300, 70],
  ];
  test.each(FULL)('in=%i out=%i: every bits x group x symmetric x act-order combination is bit-exact', async (inD, outD) => {
    const W = weights(inD, outD, inD * 7 + outD);
    const H = hessianFor(inD, inD);
    for (const o of allOpts()) {
      const ref = await runGptq(W, inD, outD, H, o, 'ref', 0);
      const got = await runGptq(W, inD, outD, H, o, isa, 0xff);
      expect({ o, ...diffOut(got, ref) }).toEqual({ o, ...SAME });
      expect(ref.result[1]).toBe(1);
    }
  });

  test('larger shapes (in=257 out=130, in=200 out=300): a subset of the combinations', async () => {
    for (const [inD, outD] of [
      [257, 130],
      [200, 300],
    ]) {
      const W = weights(inD, outD, 17);
      const H = hessianFor(inD, 5);
      for (const o of [
        { bits: 4, group: 128, sym: false, act: false },
        { bits: 4, group: 128, sym: false, act: true },
        { bits: 3, group: 100, sym: true, act: true },
        { bits: 2, group: -1, sym: false, act: true },
        { bits: 8, group: 3, sym: false, act: false },
        { bits: 4, group: 32, sym: true, act: false },
      ]) {
        const ref = await runGptq(W, inD, outD, H, o, 'ref', 0);
        const got = await runGptq(W, inD, outD, H, o, isa, 0xff);
        expect({ inD, outD, o, ...diffOut(got, ref) }).toEqual({ inD, outD, o, ...SAME });
      }
    }
  });

  test('groups that start inside a 128-column block and reach past the next one (in=700: groups 129, 200, 300, 1000)', async () => {
    const [inD, outD] = [700, 20];
    const W = weights(inD, outD, 23);
    const H = hessianFor(inD, 9);
    for (const o of [
      { bits: 4, group: 300, sym: false, act: false },
      { bits: 4, group: 300, sym: false, act: true },
      { bits: 3, group: 200, sym: true, act: false },
      { bits: 2, group: 129, sym: false, act: true },
      { bits: 8, group: 1000, sym: false, act: false },
    ]) {
      const ref = await runGptq(W, inD, outD, H, o, 'ref', 0);
      const got = await runGptq(W, inD, outD, H, o, isa, 0xff);
      expect({ o, ...diffOut(got, ref) }).toEqual({ o, ...SAME });
    }
  });

  test('perChannel false (one scale/zero per group shared by all outputs)', async () => {
    const [inD, outD] = [300, 70];
    const W = weights(inD, outD, 3);
    const H = hessianFor(inD, inD);
    for (const bits of BITS)
      for (const group of [-1, 3, 100, 128])
        for (const sym of [false, true])
          for (const act of [false, true]) {
            const o = { bits, group, sym, act, perChannel: false };
            const ref = await runGptq(W, inD, outD, H, o, 'ref', 0);
            const got = await runGptq(W, inD, outD, H, o, isa, 0xff);
            expect({ o, ...diffOut(got, ref) }).toEqual({ o, ...SAME });
            // every output row carries the same parameters
            const G = group === -1 ? 1 : Math.ceil(inD / group);
            let differ = 0;
            for (let o2 = 1; o2 < outD; o2++)
              for (let g = 0; g < G; g++) if (got.scale[o2 * G + g] !== got.scale[g] || got.zero[o2 * G + g] !== got.zero[g]) differ++;
            expect(differ).toBe(0);
          }
  });

  test('dead inputs (zero activations), with and without zeroDeadInputs, and an all-zero Hessian', async () => {
    const [inD, outD] = [150, 40];
    const rows = 400;
    const X = correlatedActivations(rows, inD, 77);
    const dead = [0, 5, 6, 40, 127, 128, 149];
    for (let t = 0; t < rows; t++) for (const d of dead) X[t * inD + d] = 0;
    const H = hessianClosedForm(X, rows, inD);
    const W = weights(inD, outD, 8);
    for (const zeroDead of [false, true])
      for (const act of [false, true])
        for (const group of [-1, 32, 100]) {
          const o = { bits: 4, group, sym: false, act, zeroDead };
          const ref = await runGptq(W, inD, outD, H, o, 'ref', 0);
          const got = await runGptq(W, inD, outD, H, o, isa, 0xff);
          expect({ o, ...diffOut(got, ref) }).toEqual({ o, ...SAME });
          expect(got.result[2]).toBe(dead.length);
          if (zeroDead) {
            let nonZero = 0;
            for (const d of dead) for (let c = 0; c < outD; c++) if (got.wHat[d * outD + c] !== 0) nonZero++;
            expect(nonZero).toBe(0);
          }
        }
    const Z = new Float64Array(inD * inD);
    for (const act of [false, true]) {
      const o = { bits: 3, group: 32, sym: true, act };
      const ref = await runGptq(W, inD, outD, Z, o, 'ref', 0);
      const got = await runGptq(W, inD, outD, Z, o, isa, 0xff);
      expect({ o, ...diffOut(got, ref) }).toEqual({ o, ...SAME });
      expect(got.result[2]).toBe(inD);
    }
  });

  test('empty shapes are legal: in=0 and out=0', async () => {
    for (const [inD, outD, group] of [
      [0, 3, -1],
      [0, 3, 32],
      [5, 0, 2],
    ]) {
      const o = { bits: 4, group, sym: false, act: true };
      const ref = await runGptq(new Float32Array(inD * outD), inD, outD, new Float64Array(inD * inD), o, 'ref', 0);
      const got = await runGptq(new Float32Array(inD * outD), inD, outD, new Float64Array(inD * inD), o, isa, 0xff);
      expect({ inD, outD, ...diffOut(got, ref) }).toEqual({ inD, outD, ...SAME });
    }
  });
});

// ---------------------------------------------------------------------------------------------------------
// Failure paths and damping retries
// ---------------------------------------------------------------------------------------------------------

/**
 * H = Q D Qᵀ with Q a Householder reflection and D = diag(d) where d[0] = −neg·mean and the rest in [1, 2]:
 * one negative eigenvalue, small relative to the mean diagonal.
 */
function indefinite(n: number, neg: number, seed: number): Float64Array {
  const r = new Prng(seed);
  const v = new Float64Array(n);
  let vv = 0;
  for (let i = 0; i < n; i++) {
    v[i] = r.normal();
    vv += v[i] * v[i];
  }
  const d = new Float64Array(n);
  for (let i = 1; i < n; i++) d[i] = r.uniform(1, 2);
  d[0] = -neg * 1.5;
  const Q = (i: number, j: number) => (i === j ? 1 : 0) - (2 * v[i] * v[j]) / vv;
  const H = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += Q(i, k) * d[k] * Q(j, k);
      H[i * n + j] = s;
      H[j * n + i] = s;
    }
  return H;
}

describe.each(_kernelImpls('gptq_quantize_matrix') as IsaName[])('failure paths, isa=%s', (isa) => {
  test('non-PD and NaN matrices: rejected Promise with QK_INVALID_ARGUMENT (Cholesky, factor, GPTQ)', async () => {
    const n = 3;
    const notPd = new Float64Array([1, 2, 0, 2, 1, 0, 0, 0, 1]);
    const p = native.gptqCholeskyLower(Float64Array.from(notPd), n, isa);
    expect(typeof (p as Promise<void>).then).toBe('function');
    expect(await codeOf(() => p)).toBe('QK_INVALID_ARGUMENT');
    const nan = randomSpd(n, 9);
    nan[4] = NaN;
    expect(await codeOf(() => native.gptqCholeskyLower(Float64Array.from(nan), n, isa))).toBe('QK_INVALID_ARGUMENT');
    const inf = randomSpd(n, 9);
    inf[3] = Infinity;
    expect(await codeOf(() => native.gptqCholeskyLower(Float64Array.from(inf), n, isa))).toBe('QK_INVALID_ARGUMENT');
    // -I: the mean diagonal is negative, so every damping λ = damp·mean makes it worse; all 6 tries fail
    const neg = new Float64Array([-1, 0, 0, 0, -1, 0, 0, 0, -1]);
    const r = new Float64Array(2);
    expect(await codeOf(() => native.gptqCholeskyInverseUpper(Float64Array.from(neg), n, 0.01, 6, r, isa))).toBe('QK_INVALID_ARGUMENT');
    expect(await codeOf(() => native.gptqCholeskyInverseUpper(Float64Array.from(nan), n, 0.01, 6, r, isa))).toBe('QK_INVALID_ARGUMENT');
    const W = new Float32Array(n * 2).fill(0.5);
    const call = (H: Float64Array, w = W) =>
      native.gptqQuantizeMatrix(w, n, 2, Float64Array.from(H), 4, -1, false, true, false, 0.01, 6, false,
        new Uint8Array(2 * n), new Float32Array(2), new Uint8Array(2), new Int32Array(n), null, new Float64Array(4), isa);
    expect(await codeOf(() => call(nan))).toBe('QK_INVALID_ARGUMENT');
    expect(await codeOf(() => call(neg))).toBe('QK_INVALID_ARGUMENT');
    const wNaN = Float32Array.from(W);
    wNaN[3] = NaN;
    expect(await codeOf(() => call(randomSpd(n, 1), wNaN))).toBe('QK_INVALID_ARGUMENT');
    expect(await codeOf(() => call(randomSpd(n, 1)))).toBe('resolved');
  });

  test('bad argument lengths: QK_SHAPE_MISMATCH', async () => {
    const n = 4;
    const f64 = (k: number) => new Float64Array(k);
    expect(await codeOf(() => native.gptqHessianAccumulate(new Float32Array(7), 2, n, f64(n * n), f64(1), isa))).toBe('QK_SHAPE_MISMATCH');
    expect(await codeOf(() => native.gptqHessianAccumulate(new Float32Array(8), 2, n, f64(n * n - 1), f64(1), isa))).toBe('QK_SHAPE_MISMATCH');
    expect(await codeOf(() => native.gptqHessianAccumulate(new Float32Array(8), 2, n, f64(n * n), f64(2), isa))).toBe('QK_SHAPE_MISMATCH');
    expect(await codeOf(() => native.gptqHessianFinalize(f64(n * n + 1), n, f64(1), isa))).toBe('QK_SHAPE_MISMATCH');
    expect(await codeOf(() => native.gptqCholeskyLower(f64(n * n - 1), n, isa))).toBe('QK_SHAPE_MISMATCH');
    expect(await codeOf(() => native.gptqTriangularInverseLower(f64(n * n + 1), n, isa))).toBe('QK_SHAPE_MISMATCH');
    expect(await codeOf(() => native.gptqCholeskyInverseUpper(f64(n * n), n, 0.01, 6, f64(1), isa))).toBe('QK_SHAPE_MISMATCH');
    const [inD, outD, group] = [n, 3, 2];
    const G = 2;
    const args = () => ({
      W: new Float32Array(inD * outD),
      H: randomSpd(inD, 2),
      q: new Uint8Array(outD * inD),
      scale: new Float32Array(outD * G),
      zero: new Uint8Array(outD * G),
      gIdx: new Int32Array(inD),
      wHat: new Float32Array(inD * outD) as Float32Array | null,
      result: new Float64Array(4),
    });
    const call = (a: ReturnType<typeof args>) =>
      native.gptqQuantizeMatrix(a.W, inD, outD, a.H, 4, group, false, true, false, 0.01, 6, false, a.q, a.scale, a.zero, a.gIdx, a.wHat, a.result, isa);
    expect(await codeOf(() => call(args()))).toBe('resolved');
    const bad: Array<[string, (a: ReturnType<typeof args>) => void]> = [
      ['W', (a) => (a.W = new Float32Array(inD * outD + 1))],
      ['H', (a) => (a.H = new Float64Array(inD * inD - 1))],
      ['q', (a) => (a.q = new Uint8Array(outD * inD - 1))],
      ['scale', (a) => (a.scale = new Float32Array(outD))], // per-channel size, but group 2 needs 2 columns
      ['zero', (a) => (a.zero = new Uint8Array(outD * G + 1))],
      ['gIdx', (a) => (a.gIdx = new Int32Array(inD + 1))],
      ['wHat', (a) => (a.wHat = new Float32Array(inD * outD - 1))],
      ['result', (a) => (a.result = new Float64Array(2))],
    ];
    for (const [name, mutate] of bad) {
      const a = args();
      mutate(a);
      expect([name, await codeOf(() => call(a))]).toEqual([name, 'QK_SHAPE_MISMATCH']);
    }
    // option ranges are invalid arguments, not shape mismatches
    const a = args();
    const callOpt = (bits: number, g: number, damp: number, tries: number) =>
      native.gptqQuantizeMatrix(a.W, inD, outD, a.H, bits, g, false, true, false, damp, tries, false, a.q, a.scale, a.zero, a.gIdx, a.wHat, a.result, isa);
    expect(await codeOf(() => callOpt(5, group, 0.01, 6))).toBe('QK_INVALID_ARGUMENT');
    expect(await codeOf(() => callOpt(4, 0, 0.01, 6))).toBe('QK_INVALID_ARGUMENT');
    expect(await codeOf(() => callOpt(4, -2, 0.01, 6))).toBe('QK_INVALID_ARGUMENT');
    expect(await codeOf(() => callOpt(4, group, 2, 6))).toBe('QK_INVALID_ARGUMENT');
    expect(await codeOf(() => callOpt(4, group, NaN, 6))).toBe('QK_INVALID_ARGUMENT');
    expect(await codeOf(() => callOpt(4, group, 0.01, 0))).toBe('QK_INVALID_ARGUMENT');
  });

  test('damping retries: an indefinite H with damp 0 succeeds after retries and reports them', async () => {
    for (const n of [2, 33, 129]) {
      // eigenvalues: -7.5e-4 and the rest in [1, 2] (mean diag = mean eigenvalue ≈ 1.5 for n > 2): damp 0 and
      // 1e-4 fail, 1e-3 works (the expected count is computed from the exact smallest eigenvalue below)
      const H = indefinite(n, 5e-4, 40 + n);
      let mean = 0;
      for (let i = 0; i < n; i++) mean += H[i * n + i];
      mean /= n;
      const Hs = Float64Array.from(H);
      const r = new Float64Array(2);
      const U = Float64Array.from(Hs);
      await native.gptqCholeskyInverseUpper(U, n, 0, 6, r, isa);
      expect(r[1]).toBeGreaterThan(1);
      expect(r[0]).toBeGreaterThan(0);
      // the damping used is the first of 1e-4, 1e-3, ... that makes H + λI positive definite
      const expectedTries = -0.75e-3 + 1e-4 * mean > 0 ? 2 : -0.75e-3 + 1e-3 * mean > 0 ? 3 : 4;
      expect([n, r[1]]).toEqual([n, expectedTries]);
      expect(r[0]).toBeCloseTo(10 ** (expectedTries - 6), 15);
      // the ref agrees bit for bit, retries included
      const Ur = Float64Array.from(Hs);
      const rr = new Float64Array(2);
      await native.gptqCholeskyInverseUpper(Ur, n, 0, 6, rr, 'ref');
      expect(bitDiff(U, Ur)).toBeNull();
      expect(Array.from(r)).toEqual(Array.from(rr));
      // too few tries: rejected
      expect(await codeOf(() => native.gptqCholeskyInverseUpper(Float64Array.from(Hs), n, 0, expectedTries - 1, new Float64Array(2), isa))).toBe(
        'QK_INVALID_ARGUMENT',
      );
      // the same through gptq_quantize_matrix
      const outD = 9;
      const W = weights(n, outD, 5);
      const o = { bits: 4, group: -1, sym: false, act: true, damp: 0 };
      const got = await runGptq(W, n, outD, Hs, o, isa, 0xff);
      const ref = await runGptq(W, n, outD, Hs, o, 'ref', 0);
      expect(diffOut(got, ref)).toEqual(SAME);
      expect(got.result[1]).toBe(expectedTries);
      expect(got.result[0]).toBe(r[0]);
      expect(Number.isFinite(got.result[3])).toBe(true);
    }
  });
});
