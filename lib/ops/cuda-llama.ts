/**
 * The Llama float path on a CUDA device (RMSNorm, RoPE, row softmax, SiLU·mul, causal grouped-query attention over
 * a KV cache): the same arguments and layouts as the CPU ops of `ops/llama` (qk/kernels.h), host Float32Arrays in
 * and out (upload, run, download on the worker's stream). Results match the CPU within float32 tolerance (parallel
 * sums, CUDA's expf/cosf/sinf). They reject with `QK_UNSUPPORTED` without CUDA or a device.
 * @packageDocumentation
 */
import { callNative } from './call';
import { ready } from './cuda-dense';

type Dims = { rows?: number; n?: number; heads?: number; kvHeads?: number; headDim?: number; maxSeq?: number; pos0?: number; T?: number };

async function run(
  device: number, op: 0 | 1 | 2 | 3 | 4, a: Float32Array, b: Float32Array | null, c: Float32Array | null,
  positions: Int32Array | null, d: Dims, eps: number, theta: number, outLength: number,
): Promise<Float32Array> {
  ready(device);
  const dims = new Float64Array([d.rows ?? 0, d.n ?? 0, d.heads ?? 0, d.kvHeads ?? 0, d.headDim ?? 0, d.maxSeq ?? 0, d.pos0 ?? 0, d.T ?? 0]);
  const out = new Float32Array(outLength);
  await callNative((n) => n.cudaLlama(device, op, a, b, c, positions, dims, eps, theta, out));
  return out;
}

/**
 * RMSNorm of each row of `x` [rows, n] with `weight` [n] on the device.
 * @example
 * ```ts
 * const y = await cudaRmsNorm(x, weight, rows, n, 1e-5);
 * ```
 */
export function cudaRmsNorm(x: Float32Array, weight: Float32Array, rows: number, n: number, epsilon: number, device = 0): Promise<Float32Array> {
  return run(device, 0, x, weight, null, null, { rows, n }, epsilon, 0, rows * n);
}

/**
 * llama2.c's interleaved RoPE of `x` [rows, heads, headDim] at `positions` [rows] (returns the rotated copy).
 * @example
 * ```ts
 * const r = await cudaRope(q, Int32Array.of(0, 1), 2, 4, 64, 10000);
 * ```
 */
export function cudaRope(x: Float32Array, positions: Int32Array, rows: number, heads: number, headDim: number, theta: number, device = 0): Promise<Float32Array> {
  return run(device, 1, x, null, null, positions, { rows, heads, headDim }, 0, theta, rows * heads * headDim);
}

/**
 * Softmax of each row of `x` [rows, n] (returns a new array).
 * @example
 * ```ts
 * const p = await cudaSoftmaxRows(scores, rows, n);
 * ```
 */
export function cudaSoftmaxRows(x: Float32Array, rows: number, n: number, device = 0): Promise<Float32Array> {
  return run(device, 2, x, null, null, null, { rows, n }, 0, 0, rows * n);
}

/**
 * SiLU(gate) · up, element-wise over n values.
 * @example
 * ```ts
 * const h = await cudaSiluMul(gate, up);
 * ```
 */
export function cudaSiluMul(gate: Float32Array, up: Float32Array, device = 0): Promise<Float32Array> {
  return run(device, 3, gate, up, null, null, { n: gate.length }, 0, 0, gate.length);
}

/** Shape of a {@link cudaAttentionDecode} call (the layout of the CPU `attentionDecode`). */
export interface CudaAttentionShape {
  /** Query rows (tokens). */
  T: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Rows of each kv head in the caches. */
  maxSeq: number;
  /** Absolute position of query row 0; row t attends to cache positions 0 .. pos0 + t. */
  pos0: number;
}

/**
 * Causal grouped-query attention of `q` [T, heads, headDim] over `kCache` / `vCache` [kvHeads, maxSeq, headDim].
 * @example
 * ```ts
 * const o = await cudaAttentionDecode(q, kCache, vCache, { T: 1, heads: 8, kvHeads: 4, headDim: 64, maxSeq: 256, pos0: 9 });
 * ```
 */
export function cudaAttentionDecode(q: Float32Array, kCache: Float32Array, vCache: Float32Array, s: CudaAttentionShape, device = 0): Promise<Float32Array> {
  return run(device, 4, q, kCache, vCache, null, s, 0, 0, s.T * s.heads * s.headDim);
}
