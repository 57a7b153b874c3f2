// Shared by test/native/gptq-core.test.ts and test/unit/gptq-matrix.test.ts: a small seeded PRNG, random
// matrices with correlated columns, the closed-form GPTQ Hessian, an independent grouped round-to-nearest
// reference (emulated float32 with Math.fround) and bit-level comparison of typed arrays.

/** xorshift32 with a Box-Muller normal; deterministic from the seed. */
export class Prng {
  private s: number;
  private spare: number | null = null;
  constructor(seed: number) {
    this.s = (seed >>> 0) ^ 0x9e3779b9 || 1;
    for (let i = 0; i < 8; i++) this.next();
  }
  /** Uniform in [0, 1). */
  next(): number {
    let s = this.s;
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    this.s = s;
    return s / 4294967296;
  }
  /** Uniform in [lo, hi). */
  uniform(lo = -1, hi = 1): number {
    return lo + (hi - lo) * this.next();
  }
  /** Standard normal. */
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    let u = this.next();
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
  /** float32 array of normals times `scale`. */
  normalF32(n: number, scale = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal() * scale;
    return out;
  }
}

/**
 * Activations with strongly correlated columns: X = Z · A ([rows, cols]) with Z standard normal [rows, cols] and
 * A = I + a random mixing matrix whose columns have very different norms, so H = 2/N XᵀX is far from diagonal
 * and its diagonal spans about two decades.
 */
export function correlatedActivations(rows: number, cols: number, seed: number): Float32Array {
  const r = new Prng(seed);
  const A = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) {
    for (let j = 0; j < cols; j++) A[i * cols + j] = (r.normal() * 0.7) / Math.sqrt(cols);
    A[i * cols + i] += 0.3;
  }
  const colScale = new Float64Array(cols);
  for (let j = 0; j < cols; j++) colScale[j] = Math.exp(r.uniform(-1.5, 1.5));
  const Z = new Float64Array(cols);
  const X = new Float32Array(rows * cols);
  for (let t = 0; t < rows; t++) {
    for (let k = 0; k < cols; k++) Z[k] = r.normal();
    // shared low-rank factor makes the columns strongly correlated
    const f = r.normal() * 1.5;
    for (let j = 0; j < cols; j++) {
      let s = f;
      for (let k = 0; k < cols; k++) s += Z[k] * A[k * cols + j];
      X[t * cols + j] = s * colScale[j];
    }
  }
  return X;
}

/**
 * The running sum S = Σ_t x_t x_tᵀ in ascending row order (float64; each product of two float32 values is exact),
 * full matrix. This is the summation order the native core documents, so it must agree bit for bit.
 */
export function hessianSumRowOrder(X: Float32Array, rows: number, cols: number): Float64Array {
  const S = new Float64Array(cols * cols);
  for (let t = 0; t < rows; t++) {
    const o = t * cols;
    for (let i = 0; i < cols; i++) {
      const xi = X[o + i];
      for (let j = 0; j <= i; j++) S[i * cols + j] += xi * X[o + j];
    }
  }
  for (let i = 0; i < cols; i++) for (let j = 0; j < i; j++) S[j * cols + i] = S[i * cols + j];
  return S;
}

/** H = 2/N · XᵀX computed column-pair by column-pair (a different order than the native core): float64. */
export function hessianClosedForm(X: Float32Array, rows: number, cols: number): Float64Array {
  const H = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let t = 0; t < rows; t++) s += X[t * cols + i] * X[t * cols + j];
      const v = (2 * s) / rows;
      H[i * cols + j] = v;
      H[j * cols + i] = v;
    }
  }
  return H;
}

/** Round half to even. */
export function rne(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

const f32 = Math.fround;

/** Scale and zero of one group, float32 emulation of the documented rule (qk/gptq.h gptq_group_params). */
export function groupParams(mn: number, mx: number, bits: number, symmetric: boolean): { scale: number; zero: number } {
  const maxq = 2 ** bits - 1;
  mn = Math.min(mn, 0);
  mx = Math.max(mx, 0);
  if (symmetric) {
    const a = Math.max(-mn, mx);
    mn = -a;
    mx = a;
  }
  if (mn === mx) {
    mn = -1;
    mx = 1;
  }
  let scale = f32(f32(mx - mn) / maxq);
  if (!(scale > 0)) scale = f32(1e-8);
  const zero = symmetric ? 2 ** (bits - 1) : Math.min(maxq, Math.max(0, rne(f32(-mn / scale))));
  return { scale, zero };
}

/** One level: clamp(rne(fl(fl(w / s) + z)), 0, maxq). */
export function quantizeLevel(w: number, s: number, z: number, bits: number): number {
  const t = rne(f32(f32(w / s) + z));
  return Math.min(2 ** bits - 1, Math.max(0, t));
}

export interface RtnResult {
  levels: Uint8Array; // [out, in]
  scale: Float32Array; // [out, G]
  zero: Uint8Array; // [out, G]
  dequantized: Float32Array; // [in, out]
}

/**
 * Grouped round-to-nearest of a Dense kernel W [in, out] (groups are runs of `groupSize` inputs, -1 = all),
 * with the parameter rules above; `perChannel = false` shares one (scale, zero) per group over all outputs.
 */
export function rtnReference(W: Float32Array, inDim: number, outDim: number, bits: number, groupSize: number, symmetric: boolean, perChannel = true): RtnResult {
  const g = groupSize === -1 ? Math.max(inDim, 1) : groupSize;
  const G = groupSize === -1 ? 1 : Math.ceil(inDim / groupSize);
  const levels = new Uint8Array(outDim * inDim);
  const scale = new Float32Array(outDim * G);
  const zero = new Uint8Array(outDim * G);
  const dequantized = new Float32Array(inDim * outDim);
  for (let gi = 0; gi < G; gi++) {
    const k0 = gi * g;
    const k1 = Math.min(inDim, k0 + g);
    const mns = new Array<number>(outDim);
    const mxs = new Array<number>(outDim);
    for (let o = 0; o < outDim; o++) {
      let mn = Infinity;
      let mx = -Infinity;
      for (let k = k0; k < k1; k++) {
        mn = Math.min(mn, W[k * outDim + o]);
        mx = Math.max(mx, W[k * outDim + o]);
      }
      mns[o] = mn;
      mxs[o] = mx;
    }
    let gmn = Infinity;
    let gmx = -Infinity;
    if (!perChannel) {
      for (let o = 0; o < outDim; o++) {
        gmn = Math.min(gmn, mns[o]);
        gmx = Math.max(gmx, mxs[o]);
      }
    }
    for (let o = 0; o < outDim; o++) {
      const { scale: s, zero: z } = perChannel ? groupParams(mns[o], mxs[o], bits, symmetric) : groupParams(gmn, gmx, bits, symmetric);
      scale[o * G + gi] = s;
      zero[o * G + gi] = z;
      for (let k = k0; k < k1; k++) {
        const q = quantizeLevel(W[k * outDim + o], s, z, bits);
        levels[o * inDim + k] = q;
        dequantized[k * outDim + o] = f32(s * (q - z));
      }
    }
  }
  return { levels, scale, zero, dequantized };
}

/** null when a and b have identical bytes, else a description of the first differing element. */
export function bitDiff(a: ArrayBufferView & ArrayLike<number>, b: ArrayBufferView & ArrayLike<number>): string | null {
  if (a.constructor !== b.constructor) return `types differ: ${a.constructor.name} vs ${b.constructor.name}`;
  if (a.length !== b.length) return `lengths differ: ${a.length} vs ${b.length}`;
  const ua = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const ub = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  const bpe = a.byteLength / Math.max(a.length, 1);
  for (let i = 0; i < ua.length; i++) {
    if (ua[i] !== ub[i]) {
      const e = Math.floor(i / bpe);
      return `element ${e}: ${a[e]} vs ${b[e]}`;
    }
  }
  return null;
}

/** ‖X·(W − Ŵ)‖² / ‖X·W‖² in float64, X [rows, in], W and Ŵ [in, out]. */
export function relativeOutputError(X: Float32Array, rows: number, inDim: number, outDim: number, W: Float32Array, What: Float32Array): number {
  const D = new Float64Array(inDim * outDim);
  for (let i = 0; i < D.length; i++) D[i] = W[i] - What[i];
  let num = 0;
  let den = 0;
  const y = new Float64Array(outDim);
  const e = new Float64Array(outDim);
  for (let t = 0; t < rows; t++) {
    y.fill(0);
    e.fill(0);
    for (let k = 0; k < inDim; k++) {
      const x = X[t * inDim + k];
      const o0 = k * outDim;
      for (let o = 0; o < outDim; o++) {
        y[o] += x * W[o0 + o];
        e[o] += x * D[o0 + o];
      }
    }
    for (let o = 0; o < outDim; o++) {
      num += e[o] * e[o];
      den += y[o] * y[o];
    }
  }
  return num / den;
}
