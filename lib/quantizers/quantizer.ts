/**
 * Quantizers: objects that turn a float tensor into int8 values and a scale (Keras `keras.quantizers.Quantizer`
 * and `AbsMaxQuantizer`). Layers use them for weights and activations; a {@link QuantizationConfig} carries
 * custom ones. Subclass {@link Quantizer} for your own scheme and register it with
 * {@link registerSerializable} so models that use it can be saved and loaded.
 *
 * Scale convention: as in Keras's abs-max quantization the scale is a **multiplier** — `q ≈ x * scale`, and
 * `x ≈ q / scale`.
 *
 * @example
 * ```ts
 * import { AbsMaxQuantizer, tensor } from 'quantkit';
 * const { quantized, scale } = await new AbsMaxQuantizer().quantize(tensor([0.3, -0.6, 0.9], [1, 3]));
 * // quantized = [42, -85, 127], scale ≈ [[141.111]]
 * ```
 * @packageDocumentation
 */
import { InvalidArgumentError, UnsupportedError } from '../errors';
import { absMaxQuantize } from '../ops/quantize';
import { Tensor, describe } from '../tensor';
import { _camelCaseKeys, _pyRepr, _registerBuiltin } from './registry';

/** What {@link Quantizer.quantize} returns. */
export interface QuantizerResult {
  /** int8 values, same shape as the input. */
  quantized: Tensor<'int8'>;
  /** float32 multipliers with the input's rank (size 1 on the reduced axes); dequantize with `q / scale`. */
  scale: Tensor<'float32'>;
}

/** Axis argument of {@link Quantizer.quantize}: one axis, adjacent axes, or `null`/absent for "not given". */
export type QuantizerAxis = number | readonly number[] | null;

/**
 * Base class of quantizers (Keras `keras.Quantizer`). Subclasses implement {@link Quantizer.quantize} and
 * {@link Quantizer.getConfig} (snake_case keys, like Keras); the default {@link Quantizer.fromConfig} calls the
 * constructor with the config's keys in camelCase.
 *
 * @example
 * ```ts
 * class HalfRangeQuantizer extends Quantizer {
 *   async quantize(x: Tensor, options: { axis?: QuantizerAxis } = {}) {
 *     return absMaxQuantize(x, options.axis ?? -1, { valueRange: [-63, 63] });
 *   }
 *   getConfig() { return { output_dtype: this.outputDtype }; }
 * }
 * registerSerializable(HalfRangeQuantizer, { package: 'my_pkg' });
 * ```
 */
export abstract class Quantizer {
  /** The container dtype of quantized values (Keras `output_dtype`); int4 values also ride in int8. */
  readonly outputDtype: 'int8';

  /**
   * @param options - `outputDtype` (only `'int8'`)
   * @throws InvalidArgumentError for another output dtype.
   */
  constructor(options: { outputDtype?: 'int8' } = {}) {
    if (options === null || typeof options !== 'object') {
      throw new InvalidArgumentError(`Expected an options object for options but received ${describe(options)}`);
    }
    const outputDtype = options.outputDtype ?? 'int8';
    if (outputDtype !== 'int8') {
      throw new InvalidArgumentError(`Expected 'int8' for outputDtype but received ${describe(outputDtype)}`);
    }
    this.outputDtype = outputDtype;
  }

  /**
   * Quantizes `x`; `options.axis` is the reduction axis (each subclass documents its default).
   * @example
   * ```ts
   * const { quantized, scale } = await quantizer.quantize(x, { axis: -1 });
   * ```
   */
  abstract quantize(x: Tensor, options?: { axis?: QuantizerAxis }): Promise<QuantizerResult>;

  /**
   * The constructor arguments as a snake_case dict (what `config.json` stores). The base class has none to
   * report: subclasses must override it (Keras raises `NotImplementedError` here too).
   * @throws UnsupportedError from the base class.
   * @example
   * ```ts
   * new AbsMaxQuantizer().getConfig(); // { value_range: [-127, 127], epsilon: 1e-7, output_dtype: 'int8' }
   * ```
   */
  getConfig(): Record<string, unknown> {
    throw new UnsupportedError(
      `Expected ${this.constructor.name} to override getConfig() for quantizer but received the base implementation: ` +
        `${this.constructor.name} does not implement get_config()`,
    );
  }

  /**
   * Builds a quantizer from {@link Quantizer.getConfig} output: `new this(camelCasedConfig)` (Keras
   * `cls(**config)`).
   * @example
   * ```ts
   * const q = AbsMaxQuantizer.fromConfig({ value_range: [-8, 7], epsilon: 1e-7, output_dtype: 'int8' });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): Quantizer {
    if (config === null || typeof config !== 'object' || Array.isArray(config)) {
      throw new InvalidArgumentError(`Expected a plain object for config but received ${describe(config)}`);
    }
    if ((this as unknown) === Quantizer) {
      throw new UnsupportedError('Expected a Quantizer subclass for fromConfig but received the abstract Quantizer class');
    }
    const Ctor = this as unknown as new (options: Record<string, unknown>) => Quantizer;
    return new Ctor(_camelCaseKeys(config));
  }

  /** `<ClassName config>` for logs. */
  toString(): string {
    let cfg = '';
    try {
      cfg = ` ${JSON.stringify(this.getConfig())}`;
    } catch {
      /* no config */
    }
    return `<${this.constructor.name}${cfg}>`;
  }
}

function normalizeAxisOption(axis: unknown, name: string): readonly number[] | null {
  if (axis === null || axis === undefined) return null;
  if (typeof axis === 'number') {
    if (!Number.isInteger(axis)) throw new InvalidArgumentError(`Expected an integer for ${name} but received ${describe(axis)}`);
    return Object.freeze([axis]);
  }
  if (Array.isArray(axis) && axis.length > 0 && axis.every((a) => typeof a === 'number' && Number.isInteger(a))) {
    return Object.freeze([...(axis as number[])]);
  }
  throw new InvalidArgumentError(`Expected an integer, a non-empty array of integers or null for ${name} but received ${describe(axis)}`);
}

/** Options of {@link AbsMaxQuantizer}. */
export interface AbsMaxQuantizerOptions {
  /** Default reduction axis (deprecated in Keras in favour of the call argument); default `null` = use `-1`. */
  axis?: QuantizerAxis;
  /** Integer range `[lo, hi]`, within [-128, 127]; default `[-127, 127]`. */
  valueRange?: readonly [number, number];
  /** Added to `amax` before dividing; default `1e-7` (Keras's backend epsilon). */
  epsilon?: number;
  /** Only `'int8'`. */
  outputDtype?: 'int8';
}

/**
 * Symmetric abs-max quantizer (Keras `keras.quantizers.AbsMaxQuantizer`):
 * `scale = hi / (max|x| + epsilon)` over the reduced axes, `q = clip(round(x * scale), lo, hi)` with round half
 * to even. Runs the native {@link absMaxQuantize} kernel.
 *
 * Axis precedence (as Keras): the `axis` given to {@link AbsMaxQuantizer.quantize}, then the constructor's
 * `axis`, then `-1`. `null` means "not given" in both places.
 *
 * @example
 * ```ts
 * const w = tensor([0.5, -1, -0.25, 0.2, 1, 0.1], [3, 2]);
 * const { quantized, scale } = await new AbsMaxQuantizer().quantize(w, { axis: 0 });
 * // quantized = [[63, -127], [-32, 25], [127, 13]], scale ≈ [[126.999985, 126.999985]]
 * ```
 */
export class AbsMaxQuantizer extends Quantizer {
  /** The constructor's axis as an array, or `null` when none was given. */
  readonly axis: readonly number[] | null;
  readonly valueRange: readonly [number, number];
  readonly epsilon: number;

  /**
   * @throws InvalidArgumentError for a malformed range, a range outside [-128, 127], or a bad epsilon/axis.
   */
  constructor(options: AbsMaxQuantizerOptions = {}) {
    if (options === null || typeof options !== 'object') {
      throw new InvalidArgumentError(`Expected an options object for options but received ${describe(options)}`);
    }
    super({ outputDtype: options.outputDtype });
    this.axis = normalizeAxisOption(options.axis, 'axis');
    const range = options.valueRange ?? [-127, 127];
    if (
      !Array.isArray(range) ||
      range.length !== 2 ||
      !range.every((v) => typeof v === 'number' && Number.isInteger(v)) ||
      range[0] >= range[1]
    ) {
      throw new InvalidArgumentError(`Expected [lo, hi] with integers lo < hi for valueRange but received ${describe(range)}`);
    }
    if (range[0] < -128 || range[1] > 127) {
      throw new InvalidArgumentError(
        `Expected a range within [-128, 127] for valueRange but received [${range[0]}, ${range[1]}]: ` +
          `Quantizer with output_dtype='int8' requires value_range to be within the interval [-128, 127]. ` +
          `Received: value_range=${_pyRepr(range, true)}`,
      );
    }
    this.valueRange = Object.freeze([range[0], range[1]]) as readonly [number, number];
    const epsilon = options.epsilon ?? 1e-7;
    if (typeof epsilon !== 'number' || !Number.isFinite(epsilon) || epsilon < 0) {
      throw new InvalidArgumentError(`Expected a finite number >= 0 for epsilon but received ${describe(epsilon)}`);
    }
    this.epsilon = epsilon;
  }

  /**
   * Quantizes `x` (float32; float16/bfloat16/fp8 are widened) along `options.axis`, else the constructor's axis,
   * else `-1`.
   * @example
   * ```ts
   * const { quantized } = await new AbsMaxQuantizer({ axis: 0 }).quantize(w);            // along axis 0
   * const { quantized: q2 } = await new AbsMaxQuantizer({ axis: 0 }).quantize(w, { axis: 1 }); // call wins
   * ```
   */
  async quantize(x: Tensor, options: { axis?: QuantizerAxis } = {}): Promise<QuantizerResult> {
    const callAxis = normalizeAxisOption(options?.axis, 'axis');
    const axis = callAxis ?? this.axis ?? [-1];
    return absMaxQuantize(x, axis.length === 1 ? axis[0] : axis, {
      valueRange: this.valueRange,
      epsilon: this.epsilon,
      dtype: this.outputDtype,
    });
  }

  /**
   * `{ value_range, epsilon, output_dtype }`, plus `axis` when the constructor had one (Keras's keys and order).
   * @example
   * ```ts
   * new AbsMaxQuantizer({ axis: -1 }).getConfig();
   * // { value_range: [-127, 127], epsilon: 1e-7, output_dtype: 'int8', axis: [-1] }
   * ```
   */
  override getConfig(): Record<string, unknown> {
    const config: Record<string, unknown> = {
      value_range: [this.valueRange[0], this.valueRange[1]],
      epsilon: this.epsilon,
      output_dtype: this.outputDtype,
    };
    if (this.axis !== null) config.axis = [...this.axis];
    return config;
  }
}

_registerBuiltin(Quantizer, { module: 'keras', kind: 'quantizer' });
_registerBuiltin(AbsMaxQuantizer, { module: 'keras.quantizers' });
