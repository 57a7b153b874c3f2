/**
 * CUDA versions of the quantized Dense forwards, sub-byte packing and fp8 conversion. Same arguments and
 * semantics as the CPU ops they mirror (qk/kernels.h); host arrays in and out (upload, run, download on the
 * worker's stream). They reject with `QK_UNSUPPORTED` without CUDA, without a device, or (fp8) below compute
 * capability 8.9.
 * @packageDocumentation
 */
import { InvalidArgumentError, UnsupportedError } from '../errors';
import { loadNative } from '../native/load';
import { describe } from '../tensor';
import { callNative } from './call';
import { cudaAvailable } from './cuda';

/** The run-time capability predicate's features (qk_cuda.h QK_CUDA_FEATURE_*). */
export const CUDA_FEATURES = { base: 0, int8Mma: 1, int8MmaM16N8K32: 2, cpAsync: 3, fp8Mma: 4, f16Mma: 5 } as const;

/**
 * True when `device` exists, this build runs on it, and it has `feature`.
 * @example
 * ```ts
 * if (cudaDeviceHas('fp8Mma')) await cudaDenseFp8(...);
 * ```
 */
export function cudaDeviceHas(feature: keyof typeof CUDA_FEATURES, device = 0): boolean {
  return loadNative().cudaDeviceHas(device, CUDA_FEATURES[feature]);
}

/**
 * Throws InvalidArgumentError for a bad device index and UnsupportedError without CUDA or a device.
 * @internal shared by the CUDA op wrappers (not re-exported from the package)
 * @example
 * ```ts
 * ready(0); // throws QK_UNSUPPORTED on a machine without a CUDA device
 * ```
 */
export function ready(device: number): void {
  if (!Number.isInteger(device) || device < 0) {
    throw new InvalidArgumentError(`Expected a non-negative integer for device but received ${describe(device)}`);
  }
  if (!cudaAvailable()) {
    const c = loadNative().capabilities().cuda;
    throw new UnsupportedError(`CUDA is not available: ${c.error ?? 'no CUDA device found'}`);
  }
}

/** Options of the CUDA dense ops. */
export interface CudaDenseOptions {
  /** Device index (default 0). */
  device?: number;
  /** Bias [N] (optional). */
  bias?: Float32Array | null;
}

/**
 * float32 Dense on the device (the SIMT tiled GEMM of cuda/gemm_f32.cu): `x` [M, K], `w` [K, N] (Keras layout),
 * optional bias [N]; returns y [M, N]. Matches the CPU float Dense to float32 rounding (another summation order).
 * @example
 * ```ts
 * const y = await cudaDenseF32(x, w, M, N, K, { bias });
 * ```
 */
export async function cudaDenseF32(x: Float32Array, w: Float32Array, M: number, N: number, K: number, options: CudaDenseOptions = {}): Promise<Float32Array> {
  const device = options.device ?? 0;
  ready(device);
  const y = new Float32Array(M * N);
  await callNative((n) => n.cudaDenseF32(device, x, M, N, K, w, options.bias ?? null, y));
  return y;
}

/**
 * int8 W8A8 Dense on Tensor Cores, bit-exact with the CPU `dense_w8a8`: `x` float32 [M, K], `w` int8 [K, N],
 * `wScale` [N] multipliers; returns y float32 [M, N].
 * @example
 * ```ts
 * const y = await cudaDenseW8A8(x, w, wScale, M, N, K);
 * ```
 */
export async function cudaDenseW8A8(
  x: Float32Array, w: Int8Array, wScale: Float32Array, M: number, N: number, K: number,
  options: CudaDenseOptions & { valueRange?: readonly [number, number]; epsilon?: number } = {},
): Promise<Float32Array> {
  const device = options.device ?? 0;
  ready(device);
  const [lo, hi] = options.valueRange ?? [-127, 127];
  const y = new Float32Array(M * N);
  await callNative((n) => n.cudaDenseW8A8(device, x, M, N, K, w, wScale, options.bias ?? null, lo, hi, options.epsilon ?? 1e-7, y));
  return y;
}

/**
 * float8 e4m3 Dense on Tensor Cores (compute capability 8.9+), the CPU `dense_fp8` within tolerance.
 * @example
 * ```ts
 * const y = await cudaDenseFp8(x, xScale, w8, wScale, M, N, K);
 * ```
 */
export async function cudaDenseFp8(
  x: Float32Array, xScale: number, w8: Uint8Array, wScale: number, M: number, N: number, K: number,
  options: CudaDenseOptions = {},
): Promise<Float32Array> {
  const device = options.device ?? 0;
  ready(device);
  const y = new Float32Array(M * N);
  await callNative((n) => n.cudaDenseFp8(device, x, M, N, K, xScale, w8, wScale, options.bias ?? null, y));
  return y;
}

/** Options of {@link cudaDenseWq}. */
export interface CudaDenseWqOptions extends CudaDenseOptions {
  /** Activation (and result) type; float16/bfloat16 ride in Uint16Array. Default float32. */
  dtype?: 'float32' | 'float16' | 'bfloat16';
  /**
   * int32 [K]: the group of each weight row (GPTQ checkpoints with act-order keep rows in input order); every
   * entry in [0, ceil(K / group)). Default: row k is in group k / group.
   */
  gIdx?: Int32Array | null;
  /**
   * 'auto' (default): Tensor Cores (mma.m16n8k16, compute capability 8.0+) for float16/bfloat16 and M >= 16,
   * else the CUDA-core GEMM/GEMV. 'simt' / 'mma' force one ('mma' rejects float32 and devices below 8.0).
   */
  path?: 'auto' | 'simt' | 'mma';
}

const WQ_PATHS = { auto: 0, simt: 1, mma: 2 } as const;

/**
 * Fused dequantize GEMM/GEMV for GPTQ (runtime layout, `isSigned: false`, bits 2/3/4/8, uint8 zero) or Keras
 * grouped int4 (`isSigned: true`, bits 4, int8 zero). `x`/result: Float32Array, or Uint16Array holding float16
 * (`dtype: 'float16'`) or bfloat16 bits.
 * @example
 * ```ts
 * const y = await cudaDenseWq(x, wq, 4, false, scale, zero, 128, M, N, K);
 * const yh = await cudaDenseWq(xHalf, wq, 4, false, scale, zero, 128, M, N, K, { dtype: 'float16', gIdx });
 * ```
 */
export async function cudaDenseWq(
  x: Float32Array | Uint16Array, wq: Uint8Array, bits: 2 | 3 | 4 | 8, isSigned: boolean, scale: Float32Array,
  zero: Uint8Array | Int8Array, group: number, M: number, N: number, K: number,
  options: CudaDenseWqOptions = {},
): Promise<Float32Array | Uint16Array> {
  const device = options.device ?? 0;
  const path = options.path ?? 'auto';
  if (!(path in WQ_PATHS)) {
    throw new InvalidArgumentError(`Expected 'auto', 'simt' or 'mma' for options.path but received ${describe(path)}`);
  }
  ready(device);
  const dt = options.dtype ?? 'float32';
  const code = dt === 'float32' ? 0 : dt === 'float16' ? 1 : 2;
  const y = code === 0 ? new Float32Array(M * N) : new Uint16Array(M * N);
  await callNative((n) =>
    n.cudaDenseWq(device, code, x, M, N, K, wq, bits, isSigned, scale, zero, group, options.bias ?? null, y,
      options.gIdx ?? null, WQ_PATHS[path]));
  return y;
}

const PACK_OPS = { packInt4: 0, unpackInt4: 1, unpackInt4Signed: 2, packInt2: 3, unpackInt2: 4, unpackInt2Signed: 5 } as const;

/**
 * Keras int4/int2 packing on the device along the middle axis of the [outer, len, inner] view (bit-exact with
 * the CPU ops). `len` is the unpacked length.
 * @example
 * ```ts
 * const packed = await cudaPack('packInt4', q, 1, K, N);
 * ```
 */
export async function cudaPack(
  op: keyof typeof PACK_OPS, src: Uint8Array | Int8Array, outer: number, len: number, inner: number, device = 0,
): Promise<Uint8Array> {
  ready(device);
  const per = op.endsWith('Int4') || op === 'unpackInt4Signed' ? 2 : 4;
  const packing = op.startsWith('pack');
  const out = new Uint8Array(packing ? outer * Math.ceil(len / per) * inner : outer * len * inner);
  await callNative((n) => n.cudaPack(device, PACK_OPS[op], src, outer, len, inner, out));
  return out;
}

/**
 * float32 <-> fp8 (e4m3fn or e5m2) codes on the device, bit-exact with the CPU conversion.
 * @example
 * ```ts
 * const codes = (await cudaFp8Convert(new Float32Array([1, 2]), 'e4m3fn')) as Uint8Array;
 * ```
 */
export async function cudaFp8Convert(src: Float32Array | Uint8Array, format: 'e4m3fn' | 'e5m2', device = 0): Promise<Uint8Array | Float32Array> {
  ready(device);
  const toFp8 = src instanceof Float32Array;
  const out = toFp8 ? new Uint8Array(src.length) : new Float32Array(src.length);
  await callNative((n) => n.cudaFp8(device, toFp8, format === 'e4m3fn' ? 0 : 1, src, out));
  return out;
}
