/**
 * Dense forward ops on the native kernels: `y[M, N] = x[M, K] @ W + bias` for float32 weights and for each
 * quantized storage format (Keras layouts, spec §2.3-§2.5). Weights are never expanded to float per call:
 * W8A8/W4A8 quantize activations per row and run an int8 GEMM; weight-only int8/int4/fp8 dequantize in registers.
 * These are the building blocks of the quantized layers; they are exported for downstream libraries that keep
 * their own weights.
 * @packageDocumentation
 */
import { InvalidArgumentError } from '../errors';
import { Tensor, describe } from '../tensor';
import { callNative, OpOptions } from './call';
import { useLowbitA8, WeightOnlyPathOptions } from './lowbit-a8';
import { packedWeightsFor, withPacked } from './weight-pack';
import { lowbitGemv } from './lowbit-pack';

/** Weights of one Dense-like projection in one of quantkit's storage formats. */
export type DenseWeights =
  | { format: 'float32'; kernel: Float32Array }
  | { format: 'int8'; kernel: Int8Array; scale: Float32Array }
  | { format: 'int4'; kernel: Int8Array | Uint8Array; scale: Float32Array }
  | { format: 'int4-grouped'; kernel: Int8Array | Uint8Array; scale: Float32Array; zero: Int8Array; groupSize: number }
  | { format: 'float8'; kernel: Uint8Array; scale: number };

/** Activation quantization for the int8-compute paths (abs-max per row, Keras `AbsMaxQuantizer` semantics). */
export interface ActivationQuant {
  valueRange: readonly [number, number];
  epsilon: number;
}

/** Options of {@link denseForward} (`weightOnlyExact`: see lib/ops/lowbit-a8.ts; int4 weight-only formats). */
export interface DenseForwardOptions extends OpOptions, WeightOnlyPathOptions {
  /** Quantize activations per row to int8 (int8 and int4 per-channel weights only). */
  activation?: ActivationQuant | null;
  /** float8 only: the activation scale (default: dynamic, `max|x| / 448`). */
  inputScale?: number;
  /**
   * float32 and int8 W8A8: use (and make, on the second large call) a packed copy of the weights, cached per weight
   * array (lib/ops/weight-pack.ts; costs the weights' memory again). Default true; `QK_PACK_WEIGHTS=0` disables it.
   */
  packWeights?: boolean;
}

/**
 * `x @ W + bias` where `x` is `[..., K]` float32 and W is stored in `weights.format`, `[K, N]` logically.
 * @example
 * ```ts
 * const y = await denseForward(x, { format: 'int8', kernel: q, scale: s }, 64, bias, { activation: { valueRange: [-127, 127], epsilon: 1e-7 } });
 * ```
 */
export async function denseForward(
  x: Tensor,
  weights: DenseWeights,
  units: number,
  bias: Float32Array | null,
  options: DenseForwardOptions = {},
): Promise<Tensor<'float32'>> {
  if (!(x instanceof Tensor) || x.dtype !== 'float32') {
    throw new InvalidArgumentError(`Expected a float32 Tensor for inputs but received ${x instanceof Tensor ? `a ${x.dtype} tensor` : describe(x)}`);
  }
  if (x.rank < 1) throw new InvalidArgumentError('Expected inputs of rank >= 1 but received a scalar');
  const K = x.shape[x.rank - 1];
  const M = K === 0 ? x.shape.slice(0, -1).reduce((a, b) => a * b, 1) : x.size / K;
  const N = units;
  const y = new Float32Array(M * N);
  const xd = x.data as Float32Array;
  const isa = options.isa;
  const act = options.activation;
  // Small batches (M < LOWBIT_GEMV_ROW_LIMIT) of int4 weights: the packed-once int8-compute GEMV when it applies (lib/ops/lowbit-pack.ts).
  const gemv =
    weights.format === 'int4-grouped'
      ? lowbitGemv({ kind: 'int4-grouped', kernel: weights.kernel, scale: weights.scale, zero: weights.zero, group: weights.groupSize }, M, K, N, xd, bias, y, options)
      : weights.format === 'int4'
        ? lowbitGemv({ kind: 'int4', kernel: weights.kernel, scale: weights.scale }, M, K, N, xd, bias, y, options)
        : null;
  if (gemv !== null) {
    await gemv;
    return new Tensor('float32', [...x.shape.slice(0, -1), N], y);
  }
  // A plain (non-async) callback: one promise hop less per call; synchronous throws are caught by callNative.
  await callNative((n) => {
    switch (weights.format) {
      case 'float32': {
        const w = weights.kernel;
        return withPacked(packedWeightsFor('f32', w, K, N, M, isa, options.packWeights), (pk) => n.denseF32(M, N, K, xd, w, bias, y, isa, pk));
      }
      case 'int8': {
        const { kernel: w, scale } = weights;
        return act
          ? withPacked(packedWeightsFor('w8a8', w, K, N, M, isa, options.packWeights), (pk) =>
              n.denseW8A8(M, N, K, xd, w, scale, bias, act.valueRange[0], act.valueRange[1], act.epsilon, y, isa, pk),
            )
          : n.denseW8(M, N, K, xd, w, scale, bias, y, isa);
      }
      case 'int4':
        if (act) return n.denseW4A8(M, N, K, xd, weights.kernel, weights.scale, bias, act.valueRange[0], act.valueRange[1], act.epsilon, y, isa);
        // per-channel int4 weight-only: from LOWBIT_A8_MIN_ROWS rows, the W4A8 kernel (int8 activations per row)
        return useLowbitA8(M, K, K, options)
          ? n.denseW4A8(M, N, K, xd, weights.kernel, weights.scale, bias, -127, 127, 1e-7, y, isa)
          : n.denseW4(M, N, K, xd, weights.kernel, weights.scale, bias, y, isa);
      case 'int4-grouped':
        return useLowbitA8(M, K, weights.groupSize, options)
          ? n.denseLowbitA8(M, N, K, xd, weights.kernel, 4, true, weights.scale, weights.zero, weights.groupSize, bias, y, isa)
          : n.denseW4G(M, N, K, xd, weights.kernel, weights.scale, weights.zero, weights.groupSize, bias, y, isa);
      case 'float8': {
        let xs = options.inputScale;
        if (xs === undefined) {
          let amax = 0;
          for (let i = 0; i < xd.length; i++) {
            const a = Math.abs(xd[i]);
            if (a > amax) amax = a;
          }
          xs = amax > 0 && Number.isFinite(amax) ? amax / 448 : 1;
        }
        return n.denseFp8(M, N, K, xd, xs, weights.kernel, weights.scale, bias, y, isa);
      }
      default:
        throw new InvalidArgumentError(`Expected a known weights.format but received ${describe((weights as { format: unknown }).format)}`);
    }
  });
  return new Tensor('float32', [...x.shape.slice(0, -1), N], y);
}
