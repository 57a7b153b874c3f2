// Llama float-path kernels (rmsNorm, rope, softmaxRows, siluMul, kvCacheWrite, attentionDecode).
//
// 1. The scalar reference (isa 'ref', the specification: llama2.c's float32 order of operations) against
//    independent JavaScript: float64 maths for rmsnorm / softmax / silu / attention (tolerances below), and a
//    Math.fround replica of run.c's RoPE. The replica reproduces every float32 operation of run.c, but glibc's
//    cosf/sinf are not correctly rounded (about 1% of angles differ by 1 ulp from fround(Math.cos(x))), so the
//    replica cannot be bit-exact: rope is held to <= 1 ulp-of-the-pair error AND to exact equality on >= 90% of
//    the elements (everything but the trig is exact).
// 2. Every available ISA variant against the reference over awkward sizes: rope and kvCacheWrite BIT-EXACT;
//    rmsnorm (summation order), softmax / silu (vector exp) and attention (FMA dot products, vector exp) within
//    stated tolerances. Prefill (T = 3) equals three decode steps bit for bit on every ISA.
// 3. Bad arguments: typed errors naming the argument, never a crash (raw addon and TS API).
import {
  attentionDecode,
  createKVCacheView,
  kvCacheWrite,
  rmsNorm,
  rope,
  siluMul,
  softmaxRows,
  Tensor,
  QkError,
  InvalidArgumentError,
  ShapeMismatchError,
  _kernelImpls,
  IsaName,
  KVCacheView,
} from '../../lib';
import { loadNative } from '../../lib/native/load';
import { firstBitMismatch, randomF32, rng } from '../helpers';

const ISAS = _kernelImpls('attention_decode') as IsaName[];
const OPT_ISAS = ISAS.filter((i) => i !== 'ref');
const NS = [1, 3, 17, 33, 127, 129];
const f = Math.fround;

// ---- independent JavaScript references -------------------------------------------------------------------

function rmsnormF64(x: Float32Array, w: Float32Array, rows: number, n: number, eps: number): Float64Array {
  const y = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let j = 0; j < n; j++) ss += x[r * n + j] ** 2;
    const s = 1 / Math.sqrt(ss / n + eps);
    for (let j = 0; j < n; j++) y[r * n + j] = w[j] * x[r * n + j] * s;
  }
  return y;
}

/** run.c's RoPE with every float32 operation replicated (Math.cos/Math.sin rounded to float for cosf/sinf). */
function ropeReplica(x: Float32Array, rows: number, heads: number, hd: number, pos: ArrayLike<number>, theta: number): Float32Array {
  const y = Float32Array.from(x);
  const th = f(theta);
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < heads; h++) {
      const o = (r * heads + h) * hd;
      for (let i = 0; i < hd / 2; i++) {
        const freq = f(1 / f(Math.pow(th, f(f(2 * i) / f(hd)))));
        const val = f(f(pos[r]) * freq);
        const c = f(Math.cos(val));
        const s = f(Math.sin(val));
        const v0 = y[o + 2 * i];
        const v1 = y[o + 2 * i + 1];
        y[o + 2 * i] = f(f(v0 * c) - f(v1 * s));
        y[o + 2 * i + 1] = f(f(v0 * s) + f(v1 * c));
      }
    }
  }
  return y;
}

function softmaxF64(x: Float32Array, rows: number, n: number): Float64Array {
  const y = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let j = 0; j < n; j++) m = Math.max(m, x[r * n + j]);
    let s = 0;
    for (let j = 0; j < n; j++) s += y[r * n + j] = Math.exp(x[r * n + j] - m);
    for (let j = 0; j < n; j++) y[r * n + j] /= s;
  }
  return y;
}

function siluF64(g: Float32Array, u: Float32Array): Float64Array {
  return Float64Array.from(g, (v, i) => (v / (1 + Math.exp(-v))) * u[i]);
}

/** Causal GQA in float64 over a [kv, maxSeq, hd] cache. */
function attentionF64(q: Float32Array, T: number, H: number, KV: number, hd: number, c: KVCacheView, pos0: number): Float64Array {
  const out = new Float64Array(T * H * hd);
  const group = H / KV;
  for (let t = 0; t < T; t++) {
    const len = pos0 + t + 1;
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / group);
      const qo = (t * H + h) * hd;
      const base = g * c.maxSeq * hd;
      const s = new Float64Array(len);
      let m = -Infinity;
      for (let j = 0; j < len; j++) {
        let d = 0;
        for (let e = 0; e < hd; e++) d += q[qo + e] * c.k[base + j * hd + e];
        s[j] = d / Math.sqrt(hd);
        m = Math.max(m, s[j]);
      }
      let sum = 0;
      for (let j = 0; j < len; j++) sum += s[j] = Math.exp(s[j] - m);
      for (let j = 0; j < len; j++) {
        const w = s[j] / sum;
        for (let e = 0; e < hd; e++) out[qo + e] += w * c.v[base + j * hd + e];
      }
    }
  }
  return out;
}

/** Index of the first element with |got - want| > abs + rel * |want| (NaN must match NaN), or -1. */
function firstOutside(got: ArrayLike<number>, want: ArrayLike<number>, abs: number, rel: number): number {
  if (got.length !== want.length) return Math.min(got.length, want.length);
  for (let i = 0; i < got.length; i++) {
    const g = got[i];
    const w = want[i];
    if (Number.isNaN(w) || Number.isNaN(g)) {
      if (Number.isNaN(w) !== Number.isNaN(g)) return i;
      continue;
    }
    if (g === w) continue;
    if (!(Math.abs(g - w) <= abs + rel * Math.abs(w))) return i;
  }
  return -1;
}

/** Relative tolerance between two float32 sums of n terms in different orders (rounding grows like sqrt(n) ulps). */
function sumTol(n: number): number {
  return 2 * (4 + Math.sqrt(n)) * 2 ** -24;
}

function filledCache(kv: number, maxSeq: number, hd: number, seed: number, fill: number): KVCacheView {
  const c = createKVCacheView(kv, maxSeq, hd);
  c.k.set(randomF32(c.k.length, seed, 1));
  c.v.set(randomF32(c.v.length, seed + 1, 1));
  // Rows past what the queries may read hold a poison value: reading them would show in the results.
  for (let g = 0; g < kv; g++) {
    c.k.fill(1e30, (g * maxSeq + fill) * hd, (g + 1) * maxSeq * hd);
    c.v.fill(NaN, (g * maxSeq + fill) * hd, (g + 1) * maxSeq * hd);
  }
  return c;
}

// ---- 1. reference vs JavaScript ---------------------------------------------------------------------------

describe('llama kernels: reference (isa=ref) vs independent JavaScript', () => {
  test('rmsNorm vs float64 (tolerance 2e-6 relative + 1e-7 * max|y|: float32 sequential sum of squares)', async () => {
    let seed = 1;
    for (const n of [...NS, 4096]) {
      for (const rows of [1, 3]) {
        const x = randomF32(rows * n, seed++, 3);
        const w = randomF32(n, seed++, 2);
        const y = await rmsNorm(x, w, 1e-5, { isa: 'ref' });
        const want = rmsnormF64(x, w, rows, n, 1e-5);
        const scale = want.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
        expect([n, rows, firstOutside(y, want, 1e-7 * scale, 2e-6)]).toEqual([n, rows, -1]);
      }
    }
  });

  test('rmsNorm follows llama2.c exactly on a hand-checked row (float32 replica)', async () => {
    const x = new Float32Array([0.1, -2.5, 3.25, 7]);
    const w = new Float32Array([1, 0.5, -2, 3]);
    let ss = 0;
    for (const v of x) ss = f(ss + f(v * v));
    ss = f(ss / 4);
    ss = f(ss + f(1e-5));
    ss = f(1 / f(Math.sqrt(ss)));
    const want = Float32Array.from(x, (v, j) => f(w[j] * f(ss * v)));
    expect(firstBitMismatch(await rmsNorm(x, w, 1e-5, { isa: 'ref' }), want)).toBe(-1);
  });

  test('rope vs a Math.fround replica of run.c (<= 1 ulp of the pair; >= 90% of elements bit-exact)', async () => {
    let exact = 0;
    let total = 0;
    let seed = 100;
    for (const hd of [2, 6, 16, 64, 128]) {
      for (const theta of [10000, 500000]) {
        const rows = 5;
        const heads = 3;
        const x = randomF32(rows * heads * hd, seed++, 2);
        const positions = Int32Array.from([0, 1, 17, 2047, 65535]);
        const want = ropeReplica(x, rows, heads, hd, positions, theta);
        const got = Float32Array.from(x);
        await rope(got, positions, { headDim: hd, theta, isa: 'ref' });
        for (let i = 0; i < got.length; i++) {
          const p = i - (i % 2);
          const mag = Math.abs(x[p]) + Math.abs(x[p + 1]);
          expect([hd, theta, i, Math.abs(got[i] - want[i]) <= 2 ** -23 * mag]).toEqual([hd, theta, i, true]);
          if (got[i] === want[i]) exact++;
          total++;
        }
      }
    }
    expect(exact / total).toBeGreaterThanOrEqual(0.9);
  });

  test('rope at position 0 is the identity; at position p equals rotating by p * freq (pair 0: freq = 1)', async () => {
    const x = randomF32(2 * 4 * 8, 7);
    const y = Float32Array.from(x);
    await rope(y, [0, 3], { headDim: 8, isa: 'ref' });
    expect(firstBitMismatch(y.subarray(0, 32), x.subarray(0, 32))).toBe(-1);
    // pair 0 of row 1: angle 3 exactly
    const c = Math.cos(3);
    const s = Math.sin(3);
    for (let h = 0; h < 4; h++) {
      const o = 32 + h * 8;
      expect(y[o]).toBeCloseTo(x[o] * c - x[o + 1] * s, 6);
      expect(y[o + 1]).toBeCloseTo(x[o] * s + x[o + 1] * c, 6);
    }
  });

  test('softmaxRows vs float64 (tolerance 1e-6 relative + 1e-9)', async () => {
    let seed = 200;
    for (const n of NS) {
      for (const rows of [1, 4]) {
        const x = randomF32(rows * n, seed++, 8);
        const want = softmaxF64(x, rows, n);
        const got = await softmaxRows(Float32Array.from(x), { n, isa: 'ref' });
        expect([n, rows, firstOutside(got, want, 1e-9, 1e-6)]).toEqual([n, rows, -1]);
      }
    }
  });

  test('siluMul vs float64 (tolerance 1e-6 relative + 1e-30)', async () => {
    let seed = 300;
    for (const n of [...NS, 11008]) {
      const g = randomF32(n, seed++, 12);
      const u = randomF32(n, seed++, 3);
      const got = await siluMul(g, u, { isa: 'ref' });
      expect([n, firstOutside(got, siluF64(g, u), 1e-30, 1e-6)]).toEqual([n, -1]);
    }
  });

  test('attentionDecode vs float64 (tolerance 2e-6 absolute: |out| <= 1, float32 sums over <= 129 terms)', async () => {
    let seed = 400;
    for (const [H, KV] of [[1, 1], [4, 2], [6, 3], [8, 8]]) {
      for (const hd of [1, 3, 17, 33, 64, 129]) {
        for (const T of [1, 3]) {
          const maxSeq = 40;
          const pos0 = maxSeq - T - (seed % 3);
          const c = filledCache(KV, maxSeq, hd, seed++, pos0 + T);
          const q = randomF32(T * H * hd, seed++, 2);
          const got = await attentionDecode(q, c, { heads: H, startPos: pos0, isa: 'ref' });
          const want = attentionF64(q, T, H, KV, hd, c, pos0);
          expect([H, KV, hd, T, firstOutside(got, want, 2e-6, 0)]).toEqual([H, KV, hd, T, -1]);
        }
      }
    }
  });

  test('kvCacheWrite puts row t of kv head g at cache[g, positions[t]] and nothing else', async () => {
    const c = createKVCacheView(3, 10, 4);
    const k = randomF32(2 * 3 * 4, 1);
    const v = randomF32(2 * 3 * 4, 2);
    await kvCacheWrite(c, k, v, [7, 2], { isa: 'ref' });
    for (let g = 0; g < 3; g++) {
      for (let p = 0; p < 10; p++) {
        for (let d = 0; d < 4; d++) {
          const at = (g * 10 + p) * 4 + d;
          const t = p === 7 ? 0 : p === 2 ? 1 : -1;
          expect(c.k[at]).toBe(t < 0 ? 0 : k[(t * 3 + g) * 4 + d]);
          expect(c.v[at]).toBe(t < 0 ? 0 : v[(t * 3 + g) * 4 + d]);
        }
      }
    }
    // A start position means T consecutive positions.
    const c2 = createKVCacheView(3, 10, 4);
    await kvCacheWrite(c2, k, v, 7, { isa: 'ref' });
    expect(Array.from(c2.k.subarray(7 * 4, 8 * 4))).toEqual(Array.from(k.subarray(0, 4)));
    expect(Array.from(c2.k.subarray(8 * 4, 9 * 4))).toEqual(Array.from(k.subarray(12, 16)));
  });
});

// ---- 2. every ISA vs the reference ------------------------------------------------------------------------

describe.each(OPT_ISAS)('llama kernels, isa=%s, vs the reference', (isa) => {
  test('rope is bit-exact (head dims 2..512 incl. > 256 = two trig blocks, repeated and large positions)', async () => {
    let seed = 1000;
    for (const hd of [2, 4, 6, 16, 18, 34, 64, 66, 128, 130, 256, 258, 512]) {
      for (const heads of [1, 3]) {
        for (const positions of [[5], [0, 0, 9], [4095, 4095, 100000]]) {
          const rows = positions.length;
          const x = randomF32(rows * heads * hd, seed++, 4);
          const a = Float32Array.from(x);
          const b = Float32Array.from(x);
          await rope(a, positions, { headDim: hd, isa: 'ref' });
          await rope(b, positions, { headDim: hd, isa });
          expect([hd, heads, rows, firstBitMismatch(b, a)]).toEqual([hd, heads, rows, -1]);
        }
      }
    }
    // theta != 10000 and special values (NaN, inf, -0) go through the same operations.
    const x = new Float32Array([NaN, 1, Infinity, -0, 0, -0, 1e-40, 3e38, 1, 2, 3, 4]);
    const a = Float32Array.from(x);
    const b = Float32Array.from(x);
    await rope(a, [123], { headDim: 12, theta: 1e6, isa: 'ref' });
    await rope(b, [123], { headDim: 12, theta: 1e6, isa });
    expect(firstBitMismatch(b, a)).toBe(-1);
  });

  test('rmsNorm within 2 (4 + sqrt(n)) 2^-24 relative of the reference (lane-wise vs sequential float32 sum of squares)', async () => {
    let seed = 2000;
    for (const n of [...NS, 4096]) {
      for (const rows of [1, 3]) {
        const x = randomF32(rows * n, seed++, 5);
        const w = randomF32(n, seed++, 2);
        const want = await rmsNorm(x, w, 1e-5, { isa: 'ref' });
        const got = await rmsNorm(x, w, 1e-5, { isa });
        expect([n, rows, firstOutside(got, want, 0, sumTol(n))]).toEqual([n, rows, -1]);
        // in place gives the same result
        const inPlace = Float32Array.from(x);
        await rmsNorm(inPlace, w, 1e-5, { isa, out: inPlace });
        expect(firstBitMismatch(inPlace, got)).toBe(-1);
      }
    }
  });

  test('softmaxRows within 2 (4 + sqrt(n)) 2^-24 relative + 1e-12 of the reference (vector exp <= 1 ulp, lane-wise sum), incl. -Infinity, wide ranges', async () => {
    let seed = 3000;
    for (const n of NS) {
      for (const rows of [1, 3]) {
        for (const scale of [1, 30]) {
          const x = randomF32(rows * n, seed++, scale);
          if (n > 2) x[1] = -Infinity; // a masked entry
          const want = await softmaxRows(Float32Array.from(x), { n, isa: 'ref' });
          const got = await softmaxRows(Float32Array.from(x), { n, isa });
          expect([n, rows, scale, firstOutside(got, want, 1e-12, sumTol(n))]).toEqual([n, rows, scale, -1]);
        }
      }
    }
    // NaN poisons its row only; a row of -Infinity is NaN (as the reference and run.c)
    const x = new Float32Array([1, NaN, 2, 0, 1, 2, -Infinity, -Infinity, -Infinity]);
    const want = await softmaxRows(Float32Array.from(x), { n: 3, isa: 'ref' });
    const got = await softmaxRows(Float32Array.from(x), { n: 3, isa });
    expect(firstOutside(got, want, 1e-12, 1e-6)).toBe(-1);
    expect(Array.from(got.subarray(0, 3)).every(Number.isNaN)).toBe(true);
    expect(Array.from(got.subarray(6)).every(Number.isNaN)).toBe(true);
  });

  test('siluMul within 1e-6 relative + 1e-30 of the reference (vector exp), incl. exp overflow / underflow', async () => {
    let seed = 4000;
    for (const n of [...NS, 11008]) {
      const g = randomF32(n, seed++, 20);
      const u = randomF32(n, seed++, 3);
      const want = await siluMul(g, u, { isa: 'ref' });
      const got = await siluMul(g, u, { isa });
      expect([n, firstOutside(got, want, 1e-30, 1e-6)]).toEqual([n, -1]);
    }
    const g = new Float32Array([0, -0, 1e-30, -1e-30, 88, 89, 90, -87, -88.8, -89, -100, -104, -110, 1e30, -1e30, Infinity, -Infinity, NaN]);
    const u = new Float32Array(g.length).fill(1.5);
    const want = await siluMul(g, u, { isa: 'ref' });
    const got = await siluMul(g, u, { isa });
    expect(firstOutside(got, want, 1e-30, 1e-6)).toBe(-1);
    // in place on gate
    const gi = Float32Array.from(g);
    await siluMul(gi, u, { isa, out: gi });
    expect(firstBitMismatch(gi, got)).toBe(-1);
  });

  test('attentionDecode within 1e-6 absolute of the reference (GQA, awkward head dims, T = 1 and 3, cache end)', async () => {
    let seed = 5000;
    const combos: Array<[number, number]> = [[1, 1], [2, 1], [4, 2], [6, 3], [8, 8], [12, 4], [32, 1], [5, 5]];
    for (const [H, KV] of combos) {
      for (const hd of NS) {
        for (const T of [1, 3]) {
          for (const slack of [0, 2]) {
            const maxSeq = 37;
            const pos0 = maxSeq - T - slack; // slack 0: the last query sits on the cache's last row
            const c = filledCache(KV, maxSeq, hd, seed++, pos0 + T);
            const q = randomF32(T * H * hd, seed++, 2);
            const want = await attentionDecode(q, c, { heads: H, startPos: pos0, isa: 'ref' });
            const got = await attentionDecode(q, c, { heads: H, startPos: pos0, isa });
            expect([H, KV, hd, T, slack, firstOutside(got, want, 1e-6, 0)]).toEqual([H, KV, hd, T, slack, -1]);
          }
        }
      }
    }
  });

  test('attentionDecode over a long cache (2048 positions, 32 heads / 8 kv heads, hd 128) within 1e-6', async () => {
    const H = 32;
    const KV = 8;
    const hd = 128;
    const maxSeq = 2048;
    const c = filledCache(KV, maxSeq, hd, 77, maxSeq);
    const q = randomF32(H * hd, 78, 3);
    const want = await attentionDecode(q, c, { heads: H, startPos: maxSeq - 1, isa: 'ref' });
    const got = await attentionDecode(q, c, { heads: H, startPos: maxSeq - 1, isa });
    expect(firstOutside(got, want, 1e-6, 0)).toBe(-1);
  });
});

describe.each(ISAS)('llama kernels, isa=%s: structural properties', (isa) => {
  test('prefill (T = 3) equals three decode steps bit for bit; out may be q', async () => {
    for (const [H, KV, hd] of [[4, 2, 17], [8, 1, 64], [3, 3, 33]]) {
      const maxSeq = 20;
      const pos0 = 10;
      const c = filledCache(KV, maxSeq, hd, 9, pos0 + 3);
      const q = randomF32(3 * H * hd, 10, 2);
      const all = await attentionDecode(q, c, { heads: H, startPos: pos0, isa });
      for (let t = 0; t < 3; t++) {
        const one = await attentionDecode(q.slice(t * H * hd, (t + 1) * H * hd), c, { heads: H, startPos: pos0 + t, isa });
        expect([H, KV, hd, t, firstBitMismatch(one, all.subarray(t * H * hd, (t + 1) * H * hd))]).toEqual([H, KV, hd, t, -1]);
      }
      const qq = Float32Array.from(q);
      await attentionDecode(qq, c, { heads: H, startPos: pos0, isa, out: qq });
      expect(firstBitMismatch(qq, all)).toBe(-1);
    }
  });

  test('kvCacheWrite is exact and the caller may reuse its positions array at once (copied at the call)', async () => {
    const c = createKVCacheView(2, 8, 3);
    const k = randomF32(2 * 2 * 3, 11);
    const v = randomF32(2 * 2 * 3, 12);
    const positions = Int32Array.from([7, 0]);
    const p = kvCacheWrite(c, k, v, positions, { isa });
    positions[0] = 3; // after validation: must not move the write
    await p;
    expect(Array.from(c.k.subarray(7 * 3, 8 * 3))).toEqual(Array.from(k.subarray(0, 3)));
    expect(Array.from(c.v.subarray((8 + 0) * 3, (8 + 1) * 3))).toEqual(Array.from(v.subarray(9, 12)));
    expect(Array.from(c.k.subarray(3 * 3, 4 * 3))).toEqual([0, 0, 0]);
  });

  test('Tensor inputs give Tensors of the same shape', async () => {
    const x = new Tensor('float32', [2, 3, 4], randomF32(24, 13));
    const y = await rmsNorm(x, new Float32Array(4).fill(1), 1e-5, { isa });
    expect(y).toBeInstanceOf(Tensor);
    expect(y.shape).toEqual([2, 3, 4]);
    const r = await rope(new Tensor('float32', [2, 3, 4], randomF32(24, 14)), [0, 1], { headDim: 4, isa });
    expect(r.shape).toEqual([2, 3, 4]);
    const s = await softmaxRows(new Tensor('float32', [2, 5], randomF32(10, 15)), { isa });
    const sd = s.data as Float32Array;
    expect(sd.subarray(0, 5).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
  });
});

// ---- 3. bad arguments -------------------------------------------------------------------------------------

describe('llama kernels: bad arguments give typed errors, never a crash', () => {
  const native = loadNative() as unknown as Record<string, (...args: unknown[]) => unknown>;
  const F = (n: number) => new Float32Array(n);
  const I = (n: number) => new Int32Array(n);
  const big = 2 ** 40;

  const cases: Array<[string, unknown[], string, RegExp]> = [
    ['rmsnorm', [new Float64Array(4), F(2), 2, 2, 1e-5, F(4)], 'QK_INVALID_ARGUMENT', /Expected Float32Array for x but received Float64Array/],
    ['rmsnorm', [F(5), F(2), 2, 2, 1e-5, F(4)], 'QK_SHAPE_MISMATCH', /Expected 4 elements for x but received 5/],
    ['rmsnorm', [F(4), F(3), 2, 2, 1e-5, F(4)], 'QK_SHAPE_MISMATCH', /Expected 2 elements for weight but received 3/],
    ['rmsnorm', [F(4), F(2), 2, 2, 1e-5, F(3)], 'QK_SHAPE_MISMATCH', /Expected 4 elements for y but received 3/],
    ['rmsnorm', [F(4), F(2), 2, 2, -1, F(4)], 'QK_INVALID_ARGUMENT', /for eps but received -1/],
    ['rmsnorm', [F(4), F(2), 2, 2, NaN, F(4)], 'QK_INVALID_ARGUMENT', /finite number for eps but received NaN/],
    ['rmsnorm', [F(4), F(2), 1.5, 2, 1e-5, F(4)], 'QK_INVALID_ARGUMENT', /non-negative integer for rows but received 1.5/],
    ['rmsnorm', [F(4), F(2), big, big, 1e-5, F(4)], 'QK_INVALID_ARGUMENT', /overflows 64 bits/],
    ['rmsnorm', [F(4), F(2), 2, 2, 1e-5, F(4), 'sse9'], 'QK_INVALID_ARGUMENT', /ISA name .* for isa but received 'sse9'/],
    ['rope', [F(12), 1, 3, 4, I(1), 10000], 'QK_OK', /./],
    ['rope', [F(12), 1, 4, 3, I(1), 10000], 'QK_INVALID_ARGUMENT', /even integer >= 2 for headDim .* received 3/],
    ['rope', [F(12), 1, 3, 4, Int32Array.from([-1]), 10000], 'QK_INVALID_ARGUMENT', /non-negative integers for positions\[0\] but received -1/],
    ['rope', [F(12), 1, 3, 4, F(1), 10000], 'QK_INVALID_ARGUMENT', /Expected Int32Array for positions but received Float32Array/],
    ['rope', [F(24), 2, 3, 4, I(1), 10000], 'QK_SHAPE_MISMATCH', /Expected 2 elements for positions but received 1/],
    ['rope', [F(11), 1, 3, 4, I(1), 10000], 'QK_SHAPE_MISMATCH', /Expected 12 elements for x but received 11/],
    ['rope', [F(12), 1, 3, 4, I(1), 0], 'QK_INVALID_ARGUMENT', /positive float32-representable number for theta but received 0/],
    ['rope', [F(12), 1, 3, 4, I(1), 1e39], 'QK_INVALID_ARGUMENT', /for theta but received 9\.99/],
    ['rope', [F(12), big, big, 4, I(1), 10000], 'QK_INVALID_ARGUMENT', /overflows 64 bits/],
    ['softmaxRows', [F(5), 2, 3], 'QK_SHAPE_MISMATCH', /Expected 6 elements for x but received 5/],
    ['softmaxRows', [F(6), -2, 3], 'QK_INVALID_ARGUMENT', /non-negative integer for rows but received -2/],
    ['siluMul', [F(4), F(3), F(4)], 'QK_SHAPE_MISMATCH', /Expected 4 elements for up but received 3/],
    ['siluMul', [F(4), F(4), F(5)], 'QK_SHAPE_MISMATCH', /Expected 4 elements for out but received 5/],
    ['siluMul', [F(4), [1, 2, 3, 4], F(4)], 'QK_INVALID_ARGUMENT', /Float32Array for up but received an Array/],
    // kvCacheWrite(k, v, T, kvHeads, headDim, positions, kCache, vCache, maxSeq)
    ['kvCacheWrite', [F(4), F(4), 1, 2, 2, I(1), F(16), F(16), 4], 'QK_OK', /./],
    ['kvCacheWrite', [F(4), F(4), 1, 2, 2, Int32Array.from([4]), F(16), F(16), 4], 'QK_INVALID_ARGUMENT', /positions in \[0, 4\) .* for positions\[0\] but received 4/],
    ['kvCacheWrite', [F(4), F(4), 1, 2, 2, Int32Array.from([-3]), F(16), F(16), 4], 'QK_INVALID_ARGUMENT', /for positions\[0\] but received -3/],
    ['kvCacheWrite', [F(4), F(4), 1, 0, 2, I(1), F(16), F(16), 4], 'QK_INVALID_ARGUMENT', /positive integer for kvHeads but received 0/],
    ['kvCacheWrite', [F(4), F(3), 1, 2, 2, I(1), F(16), F(16), 4], 'QK_SHAPE_MISMATCH', /Expected 4 elements for v but received 3/],
    ['kvCacheWrite', [F(4), F(4), 1, 2, 2, I(1), F(16), F(15), 4], 'QK_SHAPE_MISMATCH', /Expected 16 elements for vCache but received 15/],
    ['kvCacheWrite', [F(4), F(4), 1, 2, 2, I(1), F(16), F(16), 5], 'QK_SHAPE_MISMATCH', /Expected 20 elements for kCache but received 16/],
    ['kvCacheWrite', [F(4), F(4), 1, 2, 2, I(2), F(16), F(16), 4], 'QK_SHAPE_MISMATCH', /Expected 1 elements for positions but received 2/],
    ['kvCacheWrite', [F(4), F(4), 2 ** 30, 2 ** 20, 2 ** 20, I(1), F(16), F(16), 4], 'QK_INVALID_ARGUMENT', /overflows 64 bits/],
    // attentionDecode(q, T, heads, kvHeads, headDim, kCache, vCache, maxSeq, pos0, out)
    ['attentionDecode', [F(8), 1, 4, 2, 2, F(16), F(16), 4, 3, F(8)], 'QK_OK', /./],
    ['attentionDecode', [F(8), 1, 4, 3, 2, F(24), F(24), 4, 3, F(8)], 'QK_INVALID_ARGUMENT', /kvHeads to divide heads \(4\) for kvHeads but received 3/],
    ['attentionDecode', [F(8), 1, 4, 0, 2, F(16), F(16), 4, 3, F(8)], 'QK_INVALID_ARGUMENT', /positive integer for kvHeads but received 0/],
    ['attentionDecode', [F(0), 1, 0, 1, 2, F(8), F(8), 4, 3, F(0)], 'QK_INVALID_ARGUMENT', /positive integer for heads but received 0/],
    ['attentionDecode', [F(8), 1, 4, 2, 2, F(16), F(16), 4, 4, F(8)], 'QK_INVALID_ARGUMENT', /pos0 \+ T <= maxSeq = 4 .* received pos0 = 4 with T = 1/],
    ['attentionDecode', [F(16), 2, 4, 2, 2, F(16), F(16), 4, 3, F(16)], 'QK_INVALID_ARGUMENT', /received pos0 = 3 with T = 2/],
    ['attentionDecode', [F(8), 1, 4, 2, 2, F(16), F(16), 4, 2 ** 53 - 1, F(8)], 'QK_INVALID_ARGUMENT', /for pos0/],
    ['attentionDecode', [F(7), 1, 4, 2, 2, F(16), F(16), 4, 3, F(8)], 'QK_SHAPE_MISMATCH', /Expected 8 elements for q but received 7/],
    ['attentionDecode', [F(8), 1, 4, 2, 2, F(16), F(16), 4, 3, F(9)], 'QK_SHAPE_MISMATCH', /Expected 8 elements for out but received 9/],
    ['attentionDecode', [F(8), 1, 4, 2, 2, F(15), F(16), 4, 3, F(8)], 'QK_SHAPE_MISMATCH', /Expected 16 elements for kCache but received 15/],
    ['attentionDecode', [F(8), 1, 4, 2, 2, F(16), new Uint8Array(64), 4, 3, F(8)], 'QK_INVALID_ARGUMENT', /Float32Array for vCache but received Uint8Array/],
    ['attentionDecode', [F(8), big, big, 1, 2, F(16), F(16), big * 2, 0, F(8)], 'QK_INVALID_ARGUMENT', /overflows 64 bits/],
    ['attentionDecode', [F(8), 1, 4, 2, 0, F(0), F(0), 4, 3, F(8)], 'QK_INVALID_ARGUMENT', /positive integer for headDim but received 0/],
  ];

  test.each(cases)('native %s(%#) -> %s', async (fn, args, code, msg) => {
    if (code === 'QK_OK') {
      await expect(native[fn](...args)).resolves.toBeUndefined();
      return;
    }
    let err: unknown;
    try {
      await native[fn](...args);
    } catch (e) {
      err = e;
    }
    // (the addon's Error comes from another realm than jest's, so no instanceof here)
    expect(typeof (err as Error | undefined)?.message).toBe('string');
    expect((err as { code?: string }).code).toBe(code);
    expect((err as Error).message).toMatch(msg);
  });

  test('TypeScript API: typed QkErrors naming the argument', async () => {
    const c = createKVCacheView(2, 4, 2);
    await expect(rmsNorm(new Float32Array(5), new Float32Array(2))).rejects.toBeInstanceOf(ShapeMismatchError);
    await expect(rmsNorm(new Float64Array(4) as never, new Float32Array(2))).rejects.toThrow(
      'Expected a Float32Array or a float32 Tensor for x but received Float64Array(4)',
    );
    await expect(rmsNorm(new Tensor('int8', [2], new Int8Array(2)) as never, new Float32Array(2))).rejects.toThrow(/for x but received a int8 tensor/);
    await expect(rmsNorm(new Float32Array(4), new Float32Array(2), 1e-5, { out: new Float32Array(3) })).rejects.toThrow(
      'Expected 4 elements for out but received 3',
    );
    await expect(rmsNorm(new Float32Array(4), new Float32Array(2), -1)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(rope(new Float32Array(8), [0], { headDim: 3 })).rejects.toThrow(/headDim/);
    await expect(rope(new Float32Array(8), [1.5], { headDim: 4 })).rejects.toThrow('Expected a non-negative int32 for positions[0] but received 1.5');
    await expect(rope(new Float32Array(8), [0, 1, 2], { headDim: 4 })).rejects.toBeInstanceOf(ShapeMismatchError);
    await expect(softmaxRows(new Float32Array(5), { n: 2 })).rejects.toBeInstanceOf(ShapeMismatchError);
    await expect(siluMul(new Float32Array(3), new Float32Array(4))).rejects.toThrow('Expected 3 elements for up but received 4');
    await expect(kvCacheWrite(c, new Float32Array(4), new Float32Array(4), 4)).rejects.toThrow(/positions in \[0, 4\)/);
    await expect(kvCacheWrite(c, new Float32Array(8), new Float32Array(8), 3)).rejects.toThrow(/for positions\[1\] but received 4/);
    await expect(kvCacheWrite(c, new Float32Array(3), new Float32Array(3), 0)).rejects.toBeInstanceOf(ShapeMismatchError);
    await expect(attentionDecode(new Float32Array(8), c, { heads: 3, startPos: 0 })).rejects.toBeInstanceOf(ShapeMismatchError);
    await expect(attentionDecode(new Float32Array(12), c, { heads: 3, startPos: 0 })).rejects.toThrow(/kvHeads to divide heads/);
    await expect(attentionDecode(new Float32Array(8), c, { heads: 4, startPos: 4 })).rejects.toThrow(/pos0 \+ T <= maxSeq/);
    await expect(attentionDecode(new Float32Array(8), c, { heads: 4, startPos: -1 })).rejects.toThrow('Expected an integer >= 0 for startPos but received -1');
    await expect(attentionDecode(new Float32Array(8), null as never, { heads: 4, startPos: 0 })).rejects.toBeInstanceOf(QkError);
    await expect(attentionDecode(new Float32Array(8), c, { heads: 4, startPos: 0, isa: 'mmx' as never })).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  test('zero-sized work is legal and does nothing', async () => {
    await expect(rmsNorm(new Float32Array(0), new Float32Array(4))).resolves.toHaveLength(0);
    await expect(softmaxRows(new Float32Array(0), { n: 0 })).resolves.toHaveLength(0);
    await expect(siluMul(new Float32Array(0), new Float32Array(0))).resolves.toHaveLength(0);
    await expect(rope(new Float32Array(0), [], { headDim: 4 })).resolves.toHaveLength(0);
    const c = createKVCacheView(1, 2, 2);
    await expect(attentionDecode(new Float32Array(0), c, { heads: 2, startPos: 2 })).resolves.toHaveLength(0);
    await expect(kvCacheWrite(c, new Float32Array(0), new Float32Array(0), [])).resolves.toBeUndefined();
    expect(rng(1)()).toBeGreaterThanOrEqual(0);
  });
});
