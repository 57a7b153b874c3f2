/**
 * Native kernels of a Llama decoder's float path: RMSNorm, rotary embeddings (llama2.c's interleaved pairs),
 * row softmax, SwiGLU's `silu(gate) * up`, and causal grouped-query attention over a KV cache (decode and
 * prefill). They run on a worker thread (multithreaded where it pays) and never copy their inputs; outputs go
 * into caller-provided arrays when given (`options.out`), so a decode loop can reuse its buffers.
 *
 * Numerics (the scalar reference, `isa: 'ref'`, is the specification and follows llama2.c's `run.c` operation by
 * operation in float32): `rope` is bit-exact on every ISA; the SIMD variants of `rmsNorm` (summation order),
 * `softmaxRows`, `siluMul` (vector exp) and `attentionDecode` (FMA dot products, vector exp) agree with the
 * reference to a few float32 ulps.
 *
 * Inputs are `Float32Array`s or float32 {@link Tensor}s; a function given a Tensor returns a Tensor of the same
 * shape, given an array returns an array.
 * @packageDocumentation
 */
import { InvalidArgumentError, ShapeMismatchError } from '../errors';
import { Tensor, describe } from '../tensor';
import { callNative, OpOptions } from './call';

/** A float32 operand: a `Float32Array` or a float32 {@link Tensor} (row-major, contiguous). */
export type Float32Input = Float32Array | Tensor<'float32'>;

/** What a function returns for an input of type `X`: a Tensor for a Tensor, an array for an array. */
export type Float32Output<X extends Float32Input> = X extends Tensor ? Tensor<'float32'> : Float32Array;

/** Options of the ops that produce a new array: `out` receives the result (it may be the input itself). */
export interface LlamaOutOptions extends OpOptions {
  /** Output buffer of the input's length; default: a new array. */
  out?: Float32Array;
}

/**
 * One sequence's KV cache for one attention layer: `k` and `v` are float32 `[kvHeads, maxSeq, headDim]`
 * (head-major: the `maxSeq` rows of one kv head are contiguous). Row `p` of kv head `g` holds the key/value of the
 * token at position `p`. A batch of sequences uses one view per sequence (e.g. `subarray`s of a larger buffer).
 */
export interface KVCacheView {
  k: Float32Array;
  v: Float32Array;
  kvHeads: number;
  maxSeq: number;
  headDim: number;
}

function dataOf(x: unknown, name: string): Float32Array {
  if (x instanceof Float32Array) return x;
  if (x instanceof Tensor && x.dtype === 'float32') return x.data as Float32Array;
  throw new InvalidArgumentError(
    `Expected a Float32Array or a float32 Tensor for ${name} but received ${x instanceof Tensor ? `a ${x.dtype} tensor` : describe(x)}`,
  );
}

function wrapLike<X extends Float32Input>(x: X, data: Float32Array): Float32Output<X> {
  return (x instanceof Tensor ? new Tensor('float32', x.shape, data) : data) as Float32Output<X>;
}

function outFor(options: LlamaOutOptions, length: number): Float32Array {
  const out = options.out;
  if (out === undefined) return new Float32Array(length);
  if (!(out instanceof Float32Array)) throw new InvalidArgumentError(`Expected a Float32Array for out but received ${describe(out)}`);
  if (out.length !== length) throw new ShapeMismatchError(`Expected ${length} elements for out but received ${out.length}`);
  return out;
}

function intArg(v: unknown, name: string, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw new InvalidArgumentError(`Expected an integer >= ${min} for ${name} but received ${describe(v)}`);
  }
  return v;
}

function positionsArg(p: unknown, name: string): Int32Array {
  if (p instanceof Int32Array) return p;
  if (Array.isArray(p)) {
    p.forEach((v, i) => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0x7fffffff) {
        throw new InvalidArgumentError(`Expected a non-negative int32 for ${name}[${i}] but received ${describe(v)}`);
      }
    });
    return Int32Array.from(p as number[]);
  }
  throw new InvalidArgumentError(`Expected an Int32Array or an array of integers for ${name} but received ${describe(p)}`);
}

/**
 * RMSNorm over the last axis: `y = x / sqrt(mean(x²) + epsilon) * weight`, in llama2.c's order
 * (`ss = Σx²` summed in float32, `ss /= n`, `ss += epsilon`, `ss = 1 / sqrtf(ss)`, `y = weight * (ss * x)`).
 * `x` holds `rows` rows of `n = weight.length` values.
 * @param x - `[..., n]` activations
 * @param weight - `[n]` gains
 * @param epsilon - added to the mean square (default 1e-5, llama2.c's)
 * @param options - `out` for the result (may be `x` itself for in place), `isa` to force a variant
 * @example
 * ```ts
 * const y = await rmsNorm(new Float32Array([1, 2, 3, 4]), new Float32Array([1, 1]), 1e-5); // 2 rows of 2
 * ```
 */
export async function rmsNorm<X extends Float32Input>(
  x: X,
  weight: Float32Input,
  epsilon = 1e-5,
  options: LlamaOutOptions = {},
): Promise<Float32Output<X>> {
  const xd = dataOf(x, 'x');
  const wd = dataOf(weight, 'weight');
  const n = wd.length;
  if (x instanceof Tensor && (x.rank === 0 || x.shape[x.rank - 1] !== n)) {
    throw new ShapeMismatchError(`Expected a last dimension of ${n} (weight's length) for x but received shape [${x.shape.join(', ')}]`);
  }
  if (n === 0 ? xd.length !== 0 : xd.length % n !== 0) {
    throw new ShapeMismatchError(`Expected a multiple of ${n} (weight's length) elements for x but received ${xd.length}`);
  }
  const rows = n === 0 ? 0 : xd.length / n;
  const out = outFor(options, xd.length);
  await callNative((b) => b.rmsnorm(xd, wd, rows, n, epsilon, out, options.isa));
  return wrapLike(x, out);
}

/** Options of {@link rope}. */
export interface RopeOptions extends OpOptions {
  /** Elements per head (even). */
  headDim: number;
  /** Base of the frequencies (default 10000). */
  theta?: number;
}

/**
 * Rotary position embedding in place, llama2.c's interleaved-pair convention: `x` is `[rows, heads, headDim]`
 * and pair `i` (elements `2i, 2i+1`) of every head of row `r` is rotated by the angle
 * `positions[r] / theta^(2i / headDim)`: `(x0, x1) -> (x0 cos − x1 sin, x0 sin + x1 cos)`, with run.c's float32
 * `powf`, `cosf`, `sinf` (identical results on every ISA).
 * @param x - `rows * heads * headDim` values, modified in place and returned
 * @param positions - the absolute position of each row (`rows = positions.length`)
 * @example
 * ```ts
 * const q = new Float32Array(1 * 8 * 64); // one token, 8 heads of 64
 * await rope(q, [17], { headDim: 64 });    // the token at position 17
 * ```
 */
export async function rope<X extends Float32Input>(x: X, positions: Int32Array | readonly number[], options: RopeOptions): Promise<X> {
  const xd = dataOf(x, 'x');
  const pos = positionsArg(positions, 'positions');
  const headDim = intArg(options?.headDim, 'headDim', 2);
  if (headDim % 2 !== 0) throw new InvalidArgumentError(`Expected an even integer >= 2 for headDim (RoPE rotates pairs) but received ${headDim}`);
  const theta = options.theta ?? 10000;
  const rows = pos.length;
  const perRow = rows === 0 ? 0 : xd.length / rows;
  if (rows === 0 ? xd.length !== 0 : !Number.isInteger(perRow) || perRow % headDim !== 0) {
    throw new ShapeMismatchError(
      `Expected ${rows} rows (positions.length) of whole heads of ${headDim} for x but received ${xd.length} elements`,
    );
  }
  const heads = rows === 0 ? 0 : perRow / headDim;
  await callNative((b) => b.rope(xd, rows, heads, headDim, pos, theta, options.isa));
  return x;
}

/** Options of {@link softmaxRows}. */
export interface SoftmaxRowsOptions extends OpOptions {
  /** Row length; default: the last dimension of a Tensor, the whole array for a Float32Array. */
  n?: number;
}

/**
 * Numerically stable softmax of each row, in place (llama2.c: `x = exp(x − max)`, then `x /= Σ`). A row containing
 * NaN becomes NaN; a row of `-Infinity` becomes NaN.
 * @param x - `rows * n` values, modified in place and returned
 * @example
 * ```ts
 * const p = await softmaxRows(new Float32Array([1, 2, 3, 0, 0, 0]), { n: 3 }); // two rows
 * ```
 */
export async function softmaxRows<X extends Float32Input>(x: X, options: SoftmaxRowsOptions = {}): Promise<X> {
  const xd = dataOf(x, 'x');
  const n = options.n ?? (x instanceof Tensor ? (x.rank === 0 ? 1 : x.shape[x.rank - 1]) : xd.length);
  intArg(n, 'n', 0);
  if (n === 0 ? xd.length !== 0 : xd.length % n !== 0) {
    throw new ShapeMismatchError(`Expected a multiple of n = ${n} elements for x but received ${xd.length}`);
  }
  const rows = n === 0 ? 0 : xd.length / n;
  await callNative((b) => b.softmaxRows(xd, rows, n, options.isa));
  return x;
}

/**
 * SwiGLU's gating: `out = silu(gate) * up = gate * sigmoid(gate) * up`, element-wise (llama2.c:
 * `v = g; v *= 1 / (1 + expf(-v)); v *= up`).
 * @param options - `out` for the result (may be `gate` or `up` itself), `isa` to force a variant
 * @example
 * ```ts
 * const h = await siluMul(gateProj, upProj);            // new array
 * await siluMul(gateProj, upProj, { out: gateProj });   // in place
 * ```
 */
export async function siluMul<X extends Float32Input>(
  gate: X,
  up: Float32Input,
  options: LlamaOutOptions = {},
): Promise<Float32Output<X>> {
  const g = dataOf(gate, 'gate');
  const u = dataOf(up, 'up');
  const out = outFor(options, g.length);
  await callNative((b) => b.siluMul(g, u, out, options.isa));
  return wrapLike(gate, out);
}

/**
 * Allocates a zeroed {@link KVCacheView} (`k`, `v`: `[kvHeads, maxSeq, headDim]` float32).
 * @example
 * ```ts
 * const cache = createKVCacheView(4, 2048, 64);
 * ```
 */
export function createKVCacheView(kvHeads: number, maxSeq: number, headDim: number): KVCacheView {
  intArg(kvHeads, 'kvHeads', 1);
  intArg(maxSeq, 'maxSeq', 0);
  intArg(headDim, 'headDim', 1);
  const n = kvHeads * maxSeq * headDim;
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`Expected a cache size that fits in 2^53 but received ${kvHeads} x ${maxSeq} x ${headDim}`);
  return { k: new Float32Array(n), v: new Float32Array(n), kvHeads, maxSeq, headDim };
}

function checkCache(cache: KVCacheView): void {
  if (cache === null || typeof cache !== 'object') throw new InvalidArgumentError(`Expected a KVCacheView for cache but received ${describe(cache)}`);
  if (!(cache.k instanceof Float32Array) || !(cache.v instanceof Float32Array)) {
    throw new InvalidArgumentError(`Expected Float32Arrays for cache.k and cache.v but received ${describe(cache.k)} and ${describe(cache.v)}`);
  }
}

/**
 * Writes the keys and values of `T` new tokens into the cache: row `positions[t]` of every kv head receives
 * `k[t, g, :]` / `v[t, g, :]`. `k` and `v` are `[T, kvHeads, headDim]` (the K and V projections). `positions` may be
 * one number: the first of `T` consecutive positions.
 * @example
 * ```ts
 * await kvCacheWrite(cache, kProj, vProj, 17);          // one token at position 17
 * await kvCacheWrite(cache, kProj, vProj, [0, 1, 2]);   // a 3-token prompt
 * ```
 */
export async function kvCacheWrite(
  cache: KVCacheView,
  k: Float32Input,
  v: Float32Input,
  positions: Int32Array | readonly number[] | number,
  options: OpOptions = {},
): Promise<void> {
  checkCache(cache);
  const kd = dataOf(k, 'k');
  const vd = dataOf(v, 'v');
  const { kvHeads, maxSeq, headDim } = cache;
  let pos: Int32Array;
  if (typeof positions === 'number') {
    intArg(positions, 'positions', 0);
    const perToken = intArg(kvHeads, 'cache.kvHeads', 1) * intArg(headDim, 'cache.headDim', 1);
    if (kd.length % perToken !== 0) {
      throw new ShapeMismatchError(`Expected whole tokens of ${perToken} values (kvHeads * headDim) for k but received ${kd.length}`);
    }
    const T = kd.length / perToken;
    if (positions + T > 0x7fffffff) throw new InvalidArgumentError(`Expected positions + T within int32 for positions but received ${positions}`);
    pos = new Int32Array(T);
    for (let t = 0; t < T; t++) pos[t] = positions + t;
  } else {
    pos = positionsArg(positions, 'positions');
  }
  await callNative((b) => b.kvCacheWrite(kd, vd, pos.length, kvHeads, headDim, pos, cache.k, cache.v, maxSeq, options.isa));
}

/** Options of {@link attentionDecode}. */
export interface AttentionDecodeOptions extends LlamaOutOptions {
  /** Query heads (a multiple of `cache.kvHeads`; query head `h` reads kv head `h / (heads / kvHeads)`). */
  heads: number;
  /** Absolute position of the first query row; row `t` attends to cache positions `0 .. startPos + t`. */
  startPos: number;
}

/**
 * Causal grouped-query attention of `T` query rows over a KV cache: `q` is `[T, heads, headDim]`, query row `t`
 * sits at position `startPos + t` and attends to cache rows `0 .. startPos + t` (already written, e.g. by
 * {@link kvCacheWrite}); scores `q·k / sqrt(headDim)`, softmax, weighted sum of `v`. `T = 1` is a decode step,
 * `T > 1` a prefill chunk. Returns `[T, heads, headDim]` (in `options.out` when given; it may be `q` itself).
 * @example
 * ```ts
 * await kvCacheWrite(cache, kProj, vProj, pos);
 * const att = await attentionDecode(qProj, cache, { heads: 32, startPos: pos });
 * ```
 */
export async function attentionDecode<X extends Float32Input>(
  q: X,
  cache: KVCacheView,
  options: AttentionDecodeOptions,
): Promise<Float32Output<X>> {
  checkCache(cache);
  const qd = dataOf(q, 'q');
  const heads = intArg(options?.heads, 'heads', 1);
  const startPos = intArg(options.startPos, 'startPos', 0);
  const headDim = intArg(cache.headDim, 'cache.headDim', 1);
  const perRow = heads * headDim;
  if (qd.length % perRow !== 0) {
    throw new ShapeMismatchError(`Expected whole rows of ${perRow} values (heads * headDim) for q but received ${qd.length}`);
  }
  const T = qd.length / perRow;
  const out = outFor(options, qd.length);
  await callNative((b) =>
    b.attentionDecode(qd, T, heads, cache.kvHeads, headDim, cache.k, cache.v, cache.maxSeq, startPos, out, options.isa),
  );
  return wrapLike(q, out);
}
