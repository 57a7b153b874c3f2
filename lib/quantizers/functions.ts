/**
 * Quantization helper functions with Keras semantics: grouped int4 quantization with a zero point
 * (`abs_max_quantize_grouped_with_zero_point`, spec §2.5) and its inverse, and the float8 delayed-scaling
 * helpers (`compute_float8_scale`, `compute_float8_amax_history`, `quantize_and_dequantize`, spec §2.8).
 *
 * The grouped functions compute in emulated float32 (every step rounded with `Math.fround`, which equals
 * NumPy's float32 arithmetic for `+ - * /`), with round half to even.
 *
 * @example
 * ```ts
 * import { absMaxQuantizeGroupedWithZeroPoint, dequantizeGrouped, tensor } from 'quantkit';
 * const w = tensor([0.9, -0.3, 0.45], [3, 1]);
 * const { quantized, scale, zero } = absMaxQuantizeGroupedWithZeroPoint(w, 2);
 * // quantized = [7, -8, 7], scale ≈ [0.08, 0.03], zero = [-4, -8]
 * dequantizeGrouped(quantized, scale, zero, 2).data; // ≈ [0.88, -0.32, 0.45]
 * ```
 * @packageDocumentation
 */
import { InvalidArgumentError, ShapeMismatchError } from '../errors';
import { absMax } from '../ops/quantize';
import { Tensor, describe, roundHalfEven } from '../tensor';

const f = Math.fround;
/** Smallest normal float32 (`numpy.finfo(float32).tiny`). */
const FLOAT32_TINY = 1.1754943508222875e-38;

function floatInput(x: unknown, name: string): Tensor<'float32'> {
  if (!(x instanceof Tensor)) throw new InvalidArgumentError(`Expected a Tensor for ${name} but received ${describe(x)}`);
  switch (x.dtype) {
    case 'float32':
      return x as Tensor<'float32'>;
    case 'float16':
    case 'bfloat16':
    case 'float8_e4m3fn':
    case 'float8_e5m2':
      return x.toFloat32();
    default:
      throw new InvalidArgumentError(`Expected a floating-point Tensor for ${name} but received a ${x.dtype} tensor`);
  }
}

function resolveBlockSize(blockSize: unknown, rows: number): number {
  if (blockSize === -1) return Math.max(rows, 1);
  if (typeof blockSize !== 'number' || !Number.isSafeInteger(blockSize) || blockSize <= 0) {
    throw new InvalidArgumentError(`Expected a positive integer or -1 for blockSize but received ${describe(blockSize)}`);
  }
  return blockSize;
}

/** A NaN rounds to 0 (quantkit's NaN policy: a NaN quotient quantizes to the zero point). */
function rne0(v: number): number {
  return Number.isNaN(v) ? 0 : roundHalfEven(v);
}

/** Options of {@link absMaxQuantizeGroupedWithZeroPoint}. */
export interface GroupedQuantizeOptions {
  /** Integer range `[qmin, qmax]` with `qmin <= 0 <= qmax`, within [-128, 127]; default `[-8, 7]` (int4). */
  valueRange?: [number, number];
  /** Added to `max - min` before dividing; default `1e-7` (as float32, like NumPy does). */
  epsilon?: number;
  /**
   * Reproduce Keras 3.16 (the snapshot) exactly, quirks included: a group's range is its own `[min, max]`, so a
   * group whose values all have one sign saturates, and a constant group dequantizes to about `1e-7`.
   * Default `false`: quantkit's fixes are on (see {@link absMaxQuantizeGroupedWithZeroPoint}).
   */
  kerasCompat?: boolean;
}

/** Result of {@link absMaxQuantizeGroupedWithZeroPoint}. */
export interface GroupedQuantized {
  /** int8 levels in `valueRange`, `[rows, cols]`. */
  quantized: Tensor<'int8'>;
  /** float32 divisors `[G, cols]`, `G = ceil(rows / blockSize)`: `w ≈ (q - zero) * scale`. */
  scale: Tensor<'float32'>;
  /** int8 zero points `[G, cols]`, within `valueRange`. */
  zero: Tensor<'int8'>;
  /** Group of each row, `floor(i / blockSize)`, as float32 (the Keras `g_idx` variable). */
  gIdx: Float32Array;
}

/**
 * Grouped asymmetric quantization with a zero point along axis 0 of a 2-D `[rows, cols]` tensor (Keras
 * `abs_max_quantize_grouped_with_zero_point`, the int4 kernel scheme). Rows are split into groups of
 * `blockSize` (the last one zero-padded); per group and column:
 * ```
 * s = (mx - mn + eps) / (qmax - qmin)              a DIVISOR
 * z = clip(round(-mn / s) + qmin, qmin, qmax)
 * q = clip(round(w / s) + z, qmin, qmax)            dequant: (q - z) * s
 * ```
 * Deliberate fixes (default; `kerasCompat: true` turns them off): `mn = min(mn, 0)` and `mx = max(mx, 0)`, so the
 * range always holds 0, the zero point is always inside the level range without saturating, and groups of one
 * sign or constant groups reconstruct to within `s/2`; `s` is floored at the smallest normal float32 so an
 * all-zero group with `epsilon: 0` cannot divide by zero. NaN: a group containing NaN gets a NaN scale and its
 * levels go to the zero point.
 *
 * @param x - float tensor `[rows, cols]` (float16/bfloat16/fp8 are widened to float32)
 * @param blockSize - rows per group (> 0), or `-1` for one group over all rows
 * @throws InvalidArgumentError for a non-2-D input, a bad block size, range or epsilon.
 * @example
 * ```ts
 * const w = tensor([0.9, -0.3, 0.45], [3, 1]);
 * absMaxQuantizeGroupedWithZeroPoint(w, 2); // q [7, -8, 7], s [0.08, 0.03], z [-4, -8], gIdx [0, 0, 1]
 * absMaxQuantizeGroupedWithZeroPoint(tensor([1.0, 1.1], [2, 1]), 2, { kerasCompat: true }); // q [7, 7], z [-8]: saturates
 * ```
 */
export function absMaxQuantizeGroupedWithZeroPoint(
  x: Tensor,
  blockSize: number,
  options: GroupedQuantizeOptions = {},
): GroupedQuantized {
  const xf = floatInput(x, 'x');
  if (xf.rank !== 2) {
    throw new InvalidArgumentError(`Expected a 2-D tensor [rows, cols] for x but received shape [${xf.shape.join(', ')}]`);
  }
  const [rows, cols] = xf.shape;
  const B = resolveBlockSize(blockSize, rows);
  const range = options.valueRange ?? [-8, 7];
  if (
    !Array.isArray(range) ||
    range.length !== 2 ||
    !range.every((v) => typeof v === 'number' && Number.isInteger(v)) ||
    !(range[0] <= 0 && 0 <= range[1] && range[0] < range[1]) ||
    range[0] < -128 ||
    range[1] > 127
  ) {
    throw new InvalidArgumentError(
      `Expected [qmin, qmax] with integers -128 <= qmin <= 0 <= qmax <= 127 and qmin < qmax for valueRange but received ${describe(range)}`,
    );
  }
  const [qmin, qmax] = range;
  const epsilon = options.epsilon ?? 1e-7;
  if (typeof epsilon !== 'number' || !Number.isFinite(epsilon) || epsilon < 0) {
    throw new InvalidArgumentError(`Expected a finite number >= 0 for epsilon but received ${describe(epsilon)}`);
  }
  const compat = options.kerasCompat === true;
  const eps = f(epsilon);
  const levels = qmax - qmin;
  const G = Math.ceil(rows / B);
  const w = xf.data;
  const q = new Int8Array(rows * cols);
  const scale = new Float32Array(G * cols);
  const zero = new Int8Array(G * cols);
  const gIdx = new Float32Array(rows);
  const mn = new Float32Array(cols);
  const mx = new Float32Array(cols);
  const nan = new Uint8Array(cols);
  for (let g = 0; g < G; g++) {
    const r0 = g * B;
    const r1 = Math.min(rows, r0 + B);
    const padded = r1 - r0 < B;
    mn.fill(Infinity);
    mx.fill(-Infinity);
    nan.fill(0);
    for (let r = r0; r < r1; r++) {
      gIdx[r] = g;
      const row = r * cols;
      for (let j = 0; j < cols; j++) {
        const v = w[row + j];
        if (Number.isNaN(v)) nan[j] = 1;
        else {
          if (v < mn[j]) mn[j] = v;
          if (v > mx[j]) mx[j] = v;
        }
      }
    }
    for (let j = 0; j < cols; j++) {
      let lo = mn[j];
      let hi = mx[j];
      // Zero-padding rows join the last group's min and max (Keras pads with zero rows).
      if (!compat || padded) {
        lo = Math.min(lo, 0);
        hi = Math.max(hi, 0);
      }
      let s: number;
      if (nan[j]) s = NaN;
      else {
        s = f(f(f(hi - lo) + eps) / levels);
        if (!compat && s < FLOAT32_TINY) s = FLOAT32_TINY;
      }
      const z = Math.min(qmax, Math.max(qmin, rne0(f(-lo / s)) + qmin));
      scale[g * cols + j] = s;
      zero[g * cols + j] = z;
      for (let r = r0; r < r1; r++) {
        const idx = r * cols + j;
        q[idx] = Math.min(qmax, Math.max(qmin, rne0(f(w[idx] / s)) + z));
      }
    }
  }
  return {
    quantized: new Tensor('int8', [rows, cols], q),
    scale: new Tensor('float32', [G, cols], scale),
    zero: new Tensor('int8', [G, cols], zero),
    gIdx,
  };
}

/**
 * Inverse of {@link absMaxQuantizeGroupedWithZeroPoint}: `w[i, j] = (q[i, j] - zero[g, j]) * scale[g, j]` with
 * `g = floor(i / blockSize)`, in float32 (Keras `dequantize_with_sz_map` along axis 0).
 *
 * @param q - int8 levels `[rows, cols]`
 * @param scale - float32 `[G, cols]`
 * @param zero - int8 (or float32 holding integers) `[G, cols]`
 * @param blockSize - rows per group (> 0), or `-1` for one group
 * @throws ShapeMismatchError when the shapes disagree with `G = ceil(rows / blockSize)`.
 * @example
 * ```ts
 * const { quantized, scale, zero } = absMaxQuantizeGroupedWithZeroPoint(w, 128);
 * const wHat = dequantizeGrouped(quantized, scale, zero, 128);
 * ```
 */
export function dequantizeGrouped(q: Tensor, scale: Tensor, zero: Tensor, blockSize: number): Tensor<'float32'> {
  if (!(q instanceof Tensor) || q.rank !== 2 || (q.dtype !== 'int8' && q.dtype !== 'float32')) {
    throw new InvalidArgumentError(
      `Expected a 2-D int8 Tensor for q but received ${q instanceof Tensor ? `a ${q.dtype} tensor of shape [${q.shape.join(', ')}]` : describe(q)}`,
    );
  }
  if (!(scale instanceof Tensor) || scale.dtype !== 'float32') {
    throw new InvalidArgumentError(`Expected a float32 Tensor for scale but received ${scale instanceof Tensor ? `a ${scale.dtype} tensor` : describe(scale)}`);
  }
  if (!(zero instanceof Tensor) || (zero.dtype !== 'int8' && zero.dtype !== 'float32')) {
    throw new InvalidArgumentError(`Expected an int8 Tensor for zero but received ${zero instanceof Tensor ? `a ${zero.dtype} tensor` : describe(zero)}`);
  }
  const [rows, cols] = q.shape;
  const B = resolveBlockSize(blockSize, rows);
  const G = Math.ceil(rows / B);
  for (const [t, name] of [
    [scale, 'scale'],
    [zero, 'zero'],
  ] as const) {
    if (t.rank !== 2 || t.shape[0] !== G || t.shape[1] !== cols) {
      throw new ShapeMismatchError(`Expected shape [${G}, ${cols}] for ${name} but received [${t.shape.join(', ')}]`);
    }
  }
  const qd = q.data as Int8Array | Float32Array;
  const sd = scale.data as Float32Array;
  const zd = zero.data as Int8Array | Float32Array;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const g = Math.floor(r / B) * cols;
    for (let j = 0; j < cols; j++) out[r * cols + j] = f((qd[r * cols + j] - zd[g + j]) * sd[g + j]);
  }
  return new Tensor('float32', [rows, cols], out);
}

/**
 * The next float8 scale from an amax (Keras `compute_float8_scale`, Transformer Engine's delayed scaling):
 * `sf = (dtypeMax / amax) / 2**margin`; when `amax` is not finite and positive, `sf = 1 / scale` (keep the
 * current scale); returns `1 / sf`. Computed in float32.
 *
 * @param amax - the history's maximum |x|
 * @param scale - the current scale
 * @param dtypeMax - 448 for float8_e4m3fn, 57344 for float8_e5m2
 * @param margin - extra headroom in powers of two; default 0
 * @example
 * ```ts
 * computeFloat8Scale(3, 4, 448);  // 3 / 448 ≈ 0.0066964
 * computeFloat8Scale(0, 4, 448);  // 4 (amax 0 keeps the scale)
 * ```
 */
export function computeFloat8Scale(amax: number, scale: number, dtypeMax: number, margin = 0): number {
  for (const [v, name] of [
    [amax, 'amax'],
    [scale, 'scale'],
    [dtypeMax, 'dtypeMax'],
    [margin, 'margin'],
  ] as const) {
    if (typeof v !== 'number') throw new InvalidArgumentError(`Expected a number for ${name} but received ${describe(v)}`);
  }
  const a = f(amax);
  let sf = f(f(f(dtypeMax) / a) / f(2 ** margin));
  if (!(a > 0 && Number.isFinite(a))) sf = f(1 / f(scale));
  return f(1 / sf);
}

/**
 * Updates a float8 amax history (Keras `compute_float8_amax_history`): the history rolls left by one and slot 0
 * takes `max|x|` (slot 0 always holds the newest amax). Returns a new array; `amaxHistory` is not changed.
 *
 * @example
 * ```ts
 * await computeFloat8AmaxHistory(tensor([1, -7, 2], [3]), new Float32Array([1, 2, 3, 4])); // [7, 3, 4, 1]
 * ```
 */
export async function computeFloat8AmaxHistory(x: Tensor, amaxHistory: Float32Array): Promise<Float32Array> {
  if (!(amaxHistory instanceof Float32Array) || amaxHistory.length === 0) {
    throw new InvalidArgumentError(`Expected a non-empty Float32Array for amaxHistory but received ${describe(amaxHistory)}`);
  }
  const xf = floatInput(x, 'x');
  const amax = xf.size === 0 ? 0 : (await absMax(xf, null, { keepdims: false })).data[0];
  const n = amaxHistory.length;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = amaxHistory[(i + 1) % n];
  out[0] = amax;
  return out;
}

const FP8_MAX = { float8_e4m3fn: 448, float8_e5m2: 57344 } as const;

/**
 * float8 quantize-dequantize (Keras `quantize_and_dequantize`): `y = fp8(clip(x / scale, -max, max)) * scale`,
 * rounding to nearest even; `max` is 448 for E4M3FN and 57344 for E5M2. Returns float32 (the compute dtype).
 *
 * @example
 * ```ts
 * quantizeAndDequantize(tensor([0.0151, 10], [2]), 0.01, 'float8_e4m3fn').data; // ≈ [0.015, 4.48]
 * ```
 */
export function quantizeAndDequantize(
  x: Tensor,
  scale: number,
  quantizedDtype: 'float8_e4m3fn' | 'float8_e5m2',
): Tensor<'float32'> {
  const xf = floatInput(x, 'x');
  if (typeof scale !== 'number') throw new InvalidArgumentError(`Expected a number for scale but received ${describe(scale)}`);
  const max = FP8_MAX[quantizedDtype];
  if (max === undefined) {
    throw new InvalidArgumentError(`Expected 'float8_e4m3fn' or 'float8_e5m2' for quantizedDtype but received ${describe(quantizedDtype)}`);
  }
  const s = f(scale);
  const scaled = new Float32Array(xf.size);
  for (let i = 0; i < scaled.length; i++) {
    const v = f(xf.data[i] / s);
    scaled[i] = v > max ? max : v < -max ? -max : v;
  }
  const back = new Tensor('float32', xf.shape, scaled).astype(quantizedDtype).toFloat32().data;
  for (let i = 0; i < back.length; i++) back[i] = f(back[i] * s);
  return new Tensor('float32', xf.shape, back);
}
