/**
 * Matrix products on the native GEMM kernels (blocked, packed, multithreaded; AVX-512/AVX2/scalar chosen at
 * run time). `a` may have leading batch dimensions (`[..., K]`); `b` is `[K, N]`.
 * @packageDocumentation
 */
import { InvalidArgumentError, ShapeMismatchError } from '../errors';
import { Tensor, describe } from '../tensor';
import { callNative, OpOptions } from './call';
import { packedWeightsFor, withPacked } from './weight-pack';

function dims(a: unknown, b: unknown, dtype: 'float32' | 'int8'): { M: number; K: number; N: number; outShape: number[] } {
  if (!(a instanceof Tensor) || a.dtype !== dtype) {
    throw new InvalidArgumentError(`Expected a ${dtype} Tensor for a but received ${a instanceof Tensor ? `a ${a.dtype} tensor` : describe(a)}`);
  }
  if (!(b instanceof Tensor) || b.dtype !== dtype) {
    throw new InvalidArgumentError(`Expected a ${dtype} Tensor for b but received ${b instanceof Tensor ? `a ${b.dtype} tensor` : describe(b)}`);
  }
  if (a.rank < 1) throw new InvalidArgumentError(`Expected rank >= 1 for a but received shape [${a.shape.join(', ')}]`);
  if (b.rank !== 2) throw new InvalidArgumentError(`Expected rank 2 ([K, N]) for b but received shape [${b.shape.join(', ')}]`);
  const K = a.shape[a.rank - 1];
  if (b.shape[0] !== K) {
    throw new ShapeMismatchError(
      `Expected b.shape[0] = ${K} (a's last dimension) for b but received shape [${b.shape.join(', ')}]`,
    );
  }
  const N = b.shape[1];
  const M = a.shape.slice(0, -1).reduce((x, y) => x * y, 1);
  return { M, K, N, outShape: [...a.shape.slice(0, -1), N] };
}

/**
 * float32 `a @ b`.
 * @example
 * ```ts
 * const y = await matmul(tensor([1, 2, 3, 4], [2, 2]), tensor([1, 0, 0, 1], [2, 2])); // [[1, 2], [3, 4]]
 * ```
 */
export async function matmul(a: Tensor, b: Tensor, options: OpOptions = {}): Promise<Tensor<'float32'>> {
  const { M, K, N, outShape } = dims(a, b, 'float32');
  const out = new Float32Array(M * N);
  const bd = b.data as Float32Array;
  // b is packed once if the same array comes back with M >= PACK_MIN_ROWS (lib/ops/weight-pack.ts)
  await callNative((n) => withPacked(packedWeightsFor('f32', bd, K, N, M, options.isa), (pk) => n.sgemm(M, N, K, a.data as Float32Array, bd, out, options.isa, pk)));
  return new Tensor('float32', outShape, out);
}

/**
 * int8 × int8 → int32 `a @ b` with exact integer accumulation (K ≤ 131071).
 * @example
 * ```ts
 * const acc = await matmulInt8(tensor([42, -85, 127], [1, 3], 'int8'), qw); // Int32 [[21495, -5808]]
 * ```
 */
export async function matmulInt8(a: Tensor, b: Tensor, options: OpOptions = {}): Promise<Tensor<'int32'>> {
  const { M, K, N, outShape } = dims(a, b, 'int8');
  const out = new Int32Array(M * N);
  const bd = b.data as Int8Array;
  await callNative((n) => withPacked(packedWeightsFor('w8a8', bd, K, N, M, options.isa), (pk) => n.igemm(M, N, K, a.data as Int8Array, bd, out, options.isa, pk)));
  return new Tensor('int32', outShape, out);
}
