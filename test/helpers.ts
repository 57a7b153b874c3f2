// Shared test utilities: the awkward size sweep, a seeded RNG, and independent JavaScript references that
// emulate float32 arithmetic with Math.fround (so native results are checked against maths written separately).

/** The size sweep every optimised kernel is checked over. */
export const SIZES = [1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 127, 128, 129, 255, 257];

/** mulberry32: small, fast, deterministic. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform float32 values in [-scale, scale). */
export function randomF32(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

/** Uniform int8 values in [lo, hi]. */
export function randomI8(n: number, seed: number, lo = -128, hi = 127): Int8Array {
  const r = rng(seed);
  const out = new Int8Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + Math.floor(r() * (hi - lo + 1));
  return out;
}

/** Round half to even on a double. */
export function rne(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Keras abs_max_quantize in emulated float32 over an [outer, len, inner] view. */
export function absmaxQuantizeRef(
  x: Float32Array,
  outer: number,
  len: number,
  inner: number,
  lo = -127,
  hi = 127,
  eps = 1e-7,
): { q: Int8Array; scale: Float32Array } {
  const q = new Int8Array(x.length);
  const scale = new Float32Array(outer * inner);
  const feps = Math.fround(eps);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let amax = 0;
      let nan = false;
      for (let l = 0; l < len; l++) {
        const v = x[(o * len + l) * inner + i];
        if (Number.isNaN(v)) nan = true;
        else amax = Math.max(amax, Math.abs(v));
      }
      if (nan) amax = NaN;
      const s = Math.fround(hi / Math.fround(amax + feps));
      scale[o * inner + i] = s;
      for (let l = 0; l < len; l++) {
        const idx = (o * len + l) * inner + i;
        const p = Math.fround(x[idx] * s);
        q[idx] = Number.isNaN(p) ? 0 : Math.min(hi, Math.max(lo, rne(p)));
      }
    }
  }
  return { q, scale };
}

/** Bit-exact comparison of two float arrays (NaN equals NaN; -0 differs from 0). */
export function firstBitMismatch(a: Float32Array, b: Float32Array): number {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    if (ua[i] !== ub[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return i;
  }
  return -1;
}

/** Index of the first differing element, or -1. */
export function firstMismatch(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/**
 * fp32 GEMM result check against a float64 reference (C = A[M,K] B[K,N], row-major): every element within
 * |c - exact| <= 2 gamma_K sum_k |a b| (the tolerance table of test/native/gemm.test.ts); null or the first failure.
 */
export function rowsCheck(M: number, N: number, K: number, a: Float32Array, b: Float32Array, c: Float32Array): string | null {
  const u = 2 ** -24;
  const gamma = (K * u) / (1 - K * u);
  for (let i = 0; i < M; i++) {
    const exact = new Float64Array(N);
    const mag = new Float64Array(N);
    for (let k = 0; k < K; k++) {
      const x = a[i * K + k];
      for (let j = 0; j < N; j++) {
        const p = x * b[k * N + j];
        exact[j] += p;
        mag[j] += Math.abs(p);
      }
    }
    for (let j = 0; j < N; j++) {
      const err = Math.abs(c[i * N + j] - exact[j]);
      if (!(err <= 2 * gamma * mag[j] + 1e-30)) return `C[${i},${j}] = ${c[i * N + j]}, expected ${exact[j]} (|err| ${err} > ${2 * gamma * mag[j]})`;
    }
  }
  return null;
}
