/**
 * Abs-max reduction and symmetric abs-max quantization with Keras semantics
 * (`keras.quantizers.abs_max_quantize`): `scale = hi / (amax + epsilon)` is a multiplier, dequantization is
 * `q / scale`, and `q = clip(roundHalfEven(x * scale), lo, hi)`.
 *
 * NaN/Inf policy: a NaN anywhere in a reduced slice makes its `amax` (and so its scale) NaN, as `numpy.max`
 * does; a NaN product quantizes to 0. An infinite element makes `amax = inf` and `scale = 0`, so that slice
 * quantizes to all zeros. Keras leaves these cases to the backend; quantkit defines them.
 * @packageDocumentation
 */
import { InvalidArgumentError, UnsupportedError } from '../errors';
import { Tensor, describe } from '../tensor';
import { axisView, callNative, normalizeAxis, OpOptions } from './call';

/** Reduction axes: one axis, several adjacent axes, or `null` for all. */
export type Axes = number | readonly number[] | null;

function resolveAxes(axis: Axes, rank: number, name: string): { first: number; last: number; axes: number[] } {
  if (axis === null) {
    const axes = Array.from({ length: rank }, (_, i) => i);
    return { first: 0, last: rank - 1, axes };
  }
  const list = typeof axis === 'number' ? [axis] : Array.isArray(axis) ? [...axis] : undefined;
  if (!list || list.length === 0) {
    throw new InvalidArgumentError(`Expected an integer, a non-empty array of integers or null for ${name} but received ${describe(axis)}`);
  }
  const axes = [...new Set(list.map((a, i) => normalizeAxis(a, rank, typeof axis === 'number' ? name : `${name}[${i}]`)))].sort((a, b) => a - b);
  for (let i = 1; i < axes.length; i++) {
    if (axes[i] !== axes[i - 1] + 1) {
      throw new UnsupportedError(
        `Expected adjacent axes for ${name} but received [${list.join(', ')}]; transpose the tensor so the reduced axes are adjacent`,
      );
    }
  }
  return { first: axes[0], last: axes[axes.length - 1], axes };
}

function asFloat32(x: unknown, name: string): Tensor<'float32'> {
  if (!(x instanceof Tensor)) throw new InvalidArgumentError(`Expected a Tensor for ${name} but received ${describe(x)}`);
  if (x.dtype === 'float32') return x as Tensor<'float32'>;
  const info = x.dtype;
  if (info === 'float16' || info === 'bfloat16' || info === 'float8_e4m3fn' || info === 'float8_e5m2') return x.toFloat32();
  throw new InvalidArgumentError(`Expected a floating-point Tensor for ${name} but received a ${x.dtype} tensor`);
}

function keptShape(shape: readonly number[], axes: number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

/**
 * `max(|x|)` over `axis` with `keepdims` (default true), as float32.
 * @param x - a floating-point tensor (float16/bfloat16/fp8 are widened to float32 first)
 * @param axis - an axis, adjacent axes, or `null` for the whole tensor
 * @example
 * ```ts
 * const amax = await absMax(tensor([1, -3, 2, -0.5], [2, 2]), -1); // [[3], [2]]
 * ```
 */
export async function absMax(
  x: Tensor,
  axis: Axes = -1,
  options: OpOptions & { keepdims?: boolean } = {},
): Promise<Tensor<'float32'>> {
  const xf = asFloat32(x, 'x');
  const rank = xf.rank;
  if (rank === 0) axis = null;
  const { first, last, axes } = resolveAxes(axis, rank, 'axis');
  const { outer, len, inner } = axisView(xf.shape, first, last);
  const out = new Float32Array(outer * inner);
  await callNative((n) => n.absmax(xf.data, outer, len, inner, out, options.isa));
  const shape = options.keepdims === false ? xf.shape.filter((_, i) => !axes.includes(i)) : keptShape(xf.shape, axes);
  return new Tensor('float32', shape, out);
}

/** Options of {@link absMaxQuantize}. */
export interface AbsMaxQuantizeOptions extends OpOptions {
  /** Integer range `[lo, hi]` within [-128, 127]; default `[-127, 127]`. */
  valueRange?: readonly [number, number];
  /** Added to `amax` before dividing; default `1e-7` (Keras's backend epsilon). */
  epsilon?: number;
  /** Output dtype; only `'int8'` (the Keras container for int8 and int4 values). */
  dtype?: 'int8';
}

/** Result of {@link absMaxQuantize}. */
export interface AbsMaxQuantized {
  /** int8 values in `valueRange`, same shape as the input. */
  quantized: Tensor<'int8'>;
  /** float32 multipliers, the input's rank with size 1 on the reduced axes; dequantize with `q / scale`. */
  scale: Tensor<'float32'>;
}

/**
 * Symmetric abs-max quantization, bit-exact with Keras `abs_max_quantize(x, axis, value_range, "int8", epsilon)`
 * on float32 inputs.
 *
 * @example
 * ```ts
 * const w = tensor([0.5, -1, -0.25, 0.2, 1, 0.1], [3, 2]);
 * const { quantized, scale } = await absMaxQuantize(w, 0);
 * // quantized = [[63, -127], [-32, 25], [127, 13]], scale = [[126.999985, 126.999985]]
 * ```
 */
export async function absMaxQuantize(x: Tensor, axis: Axes, options: AbsMaxQuantizeOptions = {}): Promise<AbsMaxQuantized> {
  const xf = asFloat32(x, 'x');
  const [lo, hi] = validateValueRange(options.valueRange ?? [-127, 127]);
  const epsilon = options.epsilon ?? 1e-7;
  if (typeof epsilon !== 'number' || !Number.isFinite(epsilon) || epsilon < 0) {
    throw new InvalidArgumentError(`Expected a finite number >= 0 for epsilon but received ${describe(epsilon)}`);
  }
  if (options.dtype !== undefined && options.dtype !== 'int8') {
    throw new InvalidArgumentError(`Expected 'int8' for dtype but received ${describe(options.dtype)}`);
  }
  if (axis === undefined) throw new InvalidArgumentError('Expected an integer, an array of integers or null for axis but received undefined');
  const rank = xf.rank;
  if (rank === 0) axis = null;
  const { first, last, axes } = resolveAxes(axis, rank, 'axis');
  const { outer, len, inner } = axisView(xf.shape, first, last);
  const q = new Int8Array(xf.size);
  const scale = new Float32Array(outer * inner);
  await callNative((n) => n.absmaxQuantize(xf.data, outer, len, inner, lo, hi, epsilon, q, scale, options.isa));
  return {
    quantized: new Tensor('int8', xf.shape, q),
    scale: new Tensor('float32', keptShape(xf.shape, axes), scale),
  };
}

/**
 * Checks a `[lo, hi]` integer range for int8 output (the Keras rule: within [-128, 127]).
 * @internal
 */
export function validateValueRange(range: unknown, name = 'valueRange'): [number, number] {
  if (
    !Array.isArray(range) ||
    range.length !== 2 ||
    !range.every((v) => typeof v === 'number' && Number.isInteger(v)) ||
    range[0] >= range[1] ||
    range[1] <= 0
  ) {
    throw new InvalidArgumentError(`Expected [lo, hi] with integers lo < hi and hi > 0 for ${name} but received ${describe(range)}`);
  }
  if (range[0] < -128 || range[1] > 127) {
    throw new InvalidArgumentError(
      `Expected ${name} to be within the interval [-128, 127] for output dtype int8 but received [${range[0]}, ${range[1]}]`,
    );
  }
  return [range[0], range[1]];
}
