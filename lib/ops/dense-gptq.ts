/**
 * GPTQ inference on the native kernels: `y[M, N] = x[M, K] @ W_hat + bias` with W_hat dequantized in registers
 * from 2/3/4/8-bit levels (never materialized as floats), plus the one-time conversion of GPTQ levels into the
 * in-memory runtime layout the kernel reads.
 *
 * The runtime layout (quantkit's own, in memory only; see `csrc/include/qk/kernels.h`): row k = 0..K-1 is input k
 * in RUNTIME order (after the act-order permutation, if any), levels packed along N (the outputs). Every row is
 * `ceil(bits * N / 8)` bytes read as a little-endian bit stream, and the level of output j is its bits
 * `[bits*j, bits*j + bits)`: 8 bits = one byte per level; 4 bits = low nibble for even j; 2 bits = bits 2*(j%4) of
 * byte j/4; 3 bits = exactly 3 bits per weight, a level may straddle two bytes.
 *
 * Dequantization: `W_hat[k, j] = (q[k, j] - zero[g, j]) * scale[g, j]` (one float32 subtraction, one float32
 * product), `g = floor(k / groupSize)`, groups being contiguous runs of `groupSize` runtime rows.
 * @packageDocumentation
 */
import { InvalidArgumentError, ShapeMismatchError } from '../errors';
import { Tensor, describe } from '../tensor';
import { callNative, OpOptions } from './call';
import { useLowbitA8, WeightOnlyPathOptions } from './lowbit-a8';
import { lowbitGemv } from './lowbit-pack';

/** Bit widths of the GPTQ runtime layout. */
export type GptqBits = 2 | 3 | 4 | 8;

/** GPTQ weights of one Dense-like projection in the runtime layout (see {@link packGptqRuntime}). */
export interface GptqRuntimeWeights {
  /** Bits per level: 2, 3, 4 or 8. */
  bits: GptqBits;
  /** Packed levels: K rows of {@link gptqRuntimeRowBytes}(N, bits) bytes (from {@link packGptqRuntime}). */
  kernel: Uint8Array;
  /** float32 scales `[G, N]`, G = ceil(K / groupSize). */
  scale: Float32Array;
  /** Zero points `[G, N]` (one byte each; GPTQ produces levels in [0, 2^bits - 1]). */
  zero: Uint8Array;
  /** Runtime rows per group (>= 1), or -1 for one group over all K rows. */
  groupSize: number;
}

function checkBits(bits: unknown, name = 'bits'): GptqBits {
  if (bits !== 2 && bits !== 3 && bits !== 4 && bits !== 8) {
    throw new InvalidArgumentError(`Expected one of 2, 3, 4, 8 for ${name} but received ${describe(bits)}`);
  }
  return bits;
}

function checkDim(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new InvalidArgumentError(`Expected a non-negative integer for ${name} but received ${describe(v)}`);
  }
  return v;
}

function checkBytes(v: unknown, name: string, length: number, shape: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new InvalidArgumentError(`Expected a Uint8Array for ${name} but received ${describe(v)}`);
  if (v.length !== length) {
    throw new ShapeMismatchError(`Expected ${length} bytes (${shape}) for ${name} but received ${v.length}`);
  }
  return v;
}

/**
 * Bytes per runtime row of `N` outputs at `bits` bits: `ceil(bits * N / 8)`.
 * @example
 * ```ts
 * gptqRuntimeRowBytes(4096, 3); // 1536
 * ```
 */
export function gptqRuntimeRowBytes(N: number, bits: GptqBits): number {
  checkDim(N, 'N');
  checkBits(bits);
  return Math.ceil((bits * N) / 8);
}

/**
 * Packs GPTQ levels into the runtime layout (done once, at quantize or load time).
 *
 * @param levels One level per byte in the Keras GPTQ `[out, in]` = `[N, K]` layout, each in `[0, 2^bits - 1]`.
 * @param N Outputs (units).
 * @param K Inputs.
 * @param bits 2, 3, 4 or 8.
 * @param perm Optional act-order permutation: runtime row k holds input `perm[k]` (a permutation of 0..K-1). The
 *   activations must then be permuted the same way (`x'[k] = x[perm[k]]`) before {@link denseGptq}, and the
 *   groups are runs of runtime rows.
 * @returns K rows of `gptqRuntimeRowBytes(N, bits)` bytes.
 * @throws InvalidArgumentError for bad bits/dims/perm or levels out of range; ShapeMismatchError for lengths.
 * @example
 * ```ts
 * const q = new Uint8Array([0, 1, 2, 3, 4, 5]); // N = 2 outputs x K = 3 inputs, 3-bit levels
 * const packed = await packGptqRuntime(q, 2, 3, 3);
 * ```
 */
export async function packGptqRuntime(
  levels: Uint8Array,
  N: number,
  K: number,
  bits: GptqBits,
  perm: Int32Array | readonly number[] | null = null,
  options: OpOptions = {},
): Promise<Uint8Array> {
  checkDim(N, 'N');
  checkDim(K, 'K');
  checkBits(bits);
  checkBytes(levels, 'levels', N * K, `[N, K] = [${N}, ${K}]`);
  let p: Int32Array | null = null;
  if (perm !== null && perm !== undefined) {
    if (!(perm instanceof Int32Array) && !Array.isArray(perm)) {
      throw new InvalidArgumentError(`Expected an Int32Array, an array of integers or null for perm but received ${describe(perm)}`);
    }
    if (perm.length !== K) throw new ShapeMismatchError(`Expected ${K} entries (K) for perm but received ${perm.length}`);
    if (Array.isArray(perm)) {
      perm.forEach((v, i) => {
        if (!Number.isInteger(v) || v < 0 || v >= K) {
          throw new InvalidArgumentError(`Expected a permutation of 0..${K - 1} for perm but received perm[${i}] = ${describe(v)}`);
        }
      });
      p = Int32Array.from(perm);
    } else {
      p = perm;
    }
  }
  const dst = new Uint8Array(K * gptqRuntimeRowBytes(N, bits));
  await callNative((n) => n.gptqRuntimePack(levels, N, K, p, bits, dst, options.isa));
  return dst;
}

/**
 * The inverse of the bit packing of {@link packGptqRuntime}: levels `[K, N]`, one per byte, in RUNTIME row order
 * (the permutation is not undone: `out[k * N + j] = levels[j * K + perm[k]]`).
 * @example
 * ```ts
 * const levels = await unpackGptqRuntime(packed, 2, 3, 3); // Uint8Array(6), [K, N]
 * ```
 */
export async function unpackGptqRuntime(
  packed: Uint8Array,
  N: number,
  K: number,
  bits: GptqBits,
  options: OpOptions = {},
): Promise<Uint8Array> {
  checkDim(N, 'N');
  checkDim(K, 'K');
  checkBits(bits);
  checkBytes(packed, 'packed', K * gptqRuntimeRowBytes(N, bits), `K rows of ${gptqRuntimeRowBytes(N, bits)} bytes`);
  const dst = new Uint8Array(K * N);
  await callNative((n) => n.gptqRuntimeUnpack(packed, N, K, bits, dst, options.isa));
  return dst;
}

/**
 * `x @ W_hat + bias` where `x` is `[..., K]` float32 (K in runtime order, i.e. already permuted if the weights
 * were packed with an act-order `perm`) and W_hat is given by GPTQ runtime weights, `[K, units]` logically.
 * On AVX-512 VNNI every batch takes the int8-compute path (activations quantized per row to int8: below 16 rows the
 * packed-once decode GEMV of lib/ops/lowbit-pack.ts, from 16 rows the GEMM, bit-identical to each other;
 * `options.weightOnlyExact` or `QK_WEIGHT_ONLY_EXACT=1` keeps the exact weight-only kernels, see lib/ops/lowbit-a8.ts);
 * elsewhere the exact kernels: `[1, K]` inputs a streaming GEMV, larger batches a blocked GEMM.
 * @example
 * ```ts
 * const kernel = await packGptqRuntime(levels, 64, 128, 4);
 * const y = await denseGptq(x, { bits: 4, kernel, scale, zero, groupSize: 32 }, 64, bias);
 * ```
 */
export async function denseGptq(
  x: Tensor,
  w: GptqRuntimeWeights,
  units: number,
  bias: Float32Array | null,
  options: OpOptions & WeightOnlyPathOptions = {},
): Promise<Tensor<'float32'>> {
  if (!(x instanceof Tensor) || x.dtype !== 'float32') {
    throw new InvalidArgumentError(`Expected a float32 Tensor for inputs but received ${x instanceof Tensor ? `a ${x.dtype} tensor` : describe(x)}`);
  }
  if (x.rank < 1) throw new InvalidArgumentError('Expected inputs of rank >= 1 but received a scalar');
  if (w === null || typeof w !== 'object') throw new InvalidArgumentError(`Expected GPTQ runtime weights for w but received ${describe(w)}`);
  const N = checkDim(units, 'units');
  const bits = checkBits(w.bits, 'w.bits');
  const K = x.shape[x.rank - 1];
  const M = K === 0 ? x.shape.slice(0, -1).reduce((a, b) => a * b, 1) : x.size / K;
  const gs = w.groupSize;
  if (typeof gs !== 'number' || !Number.isSafeInteger(gs) || !(gs === -1 || gs >= 1)) {
    throw new InvalidArgumentError(`Expected -1 or a positive integer for w.groupSize but received ${describe(gs)}`);
  }
  const group = gs === -1 ? Math.max(K, 1) : gs;
  const G = Math.ceil(K / group);
  const rb = gptqRuntimeRowBytes(N, bits);
  checkBytes(w.kernel, 'w.kernel', K * rb, `K = ${K} rows of ${rb} bytes`);
  if (!(w.scale instanceof Float32Array)) throw new InvalidArgumentError(`Expected a Float32Array for w.scale but received ${describe(w.scale)}`);
  if (w.scale.length !== G * N) throw new ShapeMismatchError(`Expected ${G * N} elements ([G, N] = [${G}, ${N}]) for w.scale but received ${w.scale.length}`);
  checkBytes(w.zero, 'w.zero', G * N, `[G, N] = [${G}, ${N}]`);
  if (bias !== null && bias !== undefined) {
    if (!(bias instanceof Float32Array)) throw new InvalidArgumentError(`Expected a Float32Array or null for bias but received ${describe(bias)}`);
    if (bias.length !== N) throw new ShapeMismatchError(`Expected ${N} elements (units) for bias but received ${bias.length}`);
  }
  const y = new Float32Array(M * N);
  const xd = x.data as Float32Array;
  const gemv = lowbitGemv({ kind: 'gptq', bits, kernel: w.kernel, scale: w.scale, zero: w.zero, group }, M, K, N, xd, bias ?? null, y, options);
  if (gemv !== null) await gemv;
  else await callNative((n) =>
    useLowbitA8(M, K, group, options)
      ? n.denseLowbitA8(M, N, K, xd, w.kernel, bits, false, w.scale, w.zero, group, bias ?? null, y, options.isa)
      : n.denseGptq(M, N, K, xd, w.kernel, bits, w.scale, w.zero, group, bias ?? null, y, options.isa),
  );
  return new Tensor('float32', [...x.shape.slice(0, -1), N], y);
}
