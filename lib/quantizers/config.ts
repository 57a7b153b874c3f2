/**
 * Quantization configs (Keras `keras.quantizers.*QuantizationConfig`, `GPTQConfig`) and the rules that turn a
 * `quantize(mode, config)` call into one config object ({@link validateAndResolveConfig}).
 *
 * Mode strings and configs are interchangeable: `quantize('int4')` is exactly
 * `quantize({ config: new Int4QuantizationConfig() })` (grouped, block size 128, weight-only).
 * Configs serialize with Keras's snake_case keys, so they round-trip through Keras `config.json` files.
 *
 * @example
 * ```ts
 * import { validateAndResolveConfig, Int4QuantizationConfig } from 'quantkit';
 * validateAndResolveConfig('int4');                                    // Int4QuantizationConfig { blockSize: 128 }
 * validateAndResolveConfig(null, new Int4QuantizationConfig({ blockSize: 32 }));
 * validateAndResolveConfig('int8', new Int4QuantizationConfig());     // throws: Contradictory arguments ...
 * ```
 * @packageDocumentation
 */
import { InvalidArgumentError, UnsupportedError } from '../errors';
import { describe } from '../tensor';
import { AbsMaxQuantizer, Quantizer } from './quantizer';
import { _isKind, _pyRepr, _registerBuiltin, deserializeObject, serializeObject } from './registry';

/** Quantization modes quantkit implements (a subset of Keras's). */
export type QuantizationMode = 'int8' | 'int4' | 'float8' | 'gptq';

/**
 * Every mode, in Keras's order (Keras's `QUANTIZATION_MODES` without `ternary` and `awq`, which quantkit lacks).
 * @example
 * ```ts
 * QUANTIZATION_MODES.includes('int4'); // true
 * ```
 */
export const QUANTIZATION_MODES: readonly QuantizationMode[] = Object.freeze(['int8', 'float8', 'int4', 'gptq'] as const);

/**
 * Keras modes quantkit does not implement; they give {@link UnsupportedError} rather than "invalid mode".
 * @internal
 */
export const _KERAS_ONLY_MODES: readonly string[] = Object.freeze(['ternary', 'awq']);

/** `('int8', 'float8', 'int4', 'gptq')`, as Keras prints the tuple. @internal */
export function _modesRepr(): string {
  return _pyRepr([...QUANTIZATION_MODES], true);
}

/**
 * Throws unless `mode` is `null`/`undefined` or one of {@link QUANTIZATION_MODES}.
 * @internal
 */
export function _validateMode(mode: unknown, name = 'mode'): asserts mode is QuantizationMode | null | undefined {
  if (mode === null || mode === undefined) return;
  if (typeof mode === 'string' && (QUANTIZATION_MODES as readonly string[]).includes(mode)) return;
  if (typeof mode === 'string' && _KERAS_ONLY_MODES.includes(mode)) {
    throw new UnsupportedError(
      `Expected one of ${_modesRepr()} for ${name} but received '${mode}': Keras's '${mode}' mode is not implemented by quantkit`,
    );
  }
  throw new InvalidArgumentError(
    `Expected one of ${_modesRepr()} for ${name} but received ${describe(mode)}: ` +
      `Invalid quantization mode. Expected one of ${_modesRepr()}. Received: ${name}=${typeof mode === 'string' ? mode : describe(mode)}`,
  );
}

/** A quantizer argument of a config: a {@link Quantizer}, `null` (none), or `'default'` (the config's default). */
export type QuantizerArg = Quantizer | null | 'default';

function checkQuantizerArg(q: unknown, name: string): Quantizer | null {
  if (q === null || q === undefined) return null;
  if (q instanceof Quantizer || _isKind(q, 'quantizer')) return q as Quantizer;
  throw new InvalidArgumentError(`Expected a Quantizer, null or 'default' for ${name} but received ${describe(q)}`);
}

/**
 * Base class of quantization configs (Keras `keras.quantizers.QuantizationConfig`). Subclasses define `mode`;
 * do not instantiate it directly.
 *
 * @example
 * ```ts
 * const cfg: QuantizationConfig = new Int8QuantizationConfig();
 * cfg.mode;                 // 'int8'
 * cfg.activationQuantizer;  // AbsMaxQuantizer (per-token activations)
 * ```
 */
export abstract class QuantizationConfig {
  /** Quantizer for weights; `null` = the layer's built-in scheme. */
  weightQuantizer: Quantizer | null;
  /** Quantizer for activations; `null` = no activation quantization (weight-only). */
  activationQuantizer: Quantizer | null;

  /**
   * @throws UnsupportedError when `QuantizationConfig` itself is instantiated (from JavaScript).
   */
  constructor(options: { weightQuantizer?: Quantizer | null; activationQuantizer?: Quantizer | null } = {}) {
    if (new.target === QuantizationConfig) {
      throw new UnsupportedError(
        'Expected a QuantizationConfig subclass for config but received QuantizationConfig itself: ' +
          'Subclasses must implement this property. Do not instantiate QuantizationConfig directly.',
      );
    }
    this.weightQuantizer = checkQuantizerArg(options?.weightQuantizer, 'weightQuantizer');
    this.activationQuantizer = checkQuantizerArg(options?.activationQuantizer, 'activationQuantizer');
  }

  /** The quantization mode. */
  abstract get mode(): QuantizationMode;

  /**
   * `{ weight_quantizer, activation_quantizer }`, each serialized (or `null`).
   * @example
   * ```ts
   * new Int8QuantizationConfig({ activationQuantizer: null }).getConfig();
   * // { weight_quantizer: null, activation_quantizer: null }
   * ```
   */
  getConfig(): Record<string, unknown> {
    return {
      weight_quantizer: serializeObject(this.weightQuantizer),
      activation_quantizer: serializeObject(this.activationQuantizer),
    };
  }

  /**
   * Rebuilds a config from {@link QuantizationConfig.getConfig} output (quantizers are deserialized; custom
   * ones must be registered with {@link registerSerializable}).
   * @example
   * ```ts
   * const again = Int8QuantizationConfig.fromConfig(cfg.getConfig());
   * ```
   */
  static fromConfig(config: Record<string, unknown>): QuantizationConfig {
    const c = checkConfigDict(config);
    if ((this as unknown) === QuantizationConfig) {
      throw new UnsupportedError(
        'Expected a QuantizationConfig subclass for fromConfig but received QuantizationConfig itself: ' +
          'Do not instantiate QuantizationConfig directly.',
      );
    }
    const Ctor = this as unknown as new (o: object) => QuantizationConfig;
    return new Ctor({
      weightQuantizer: deserializeQuantizer(c.weight_quantizer, 'config.weight_quantizer'),
      activationQuantizer: deserializeQuantizer(c.activation_quantizer, 'config.activation_quantizer'),
    });
  }

  /**
   * The config's weight quantizer when there is a config and it has one, else `def` (Keras
   * `weight_quantizer_or_default`).
   * @example
   * ```ts
   * QuantizationConfig.weightQuantizerOrDefault(null, new AbsMaxQuantizer()); // the default
   * ```
   */
  static weightQuantizerOrDefault(config: QuantizationConfig | null | undefined, def: Quantizer | null): Quantizer | null {
    if (config !== null && config !== undefined && config.weightQuantizer !== null && config.weightQuantizer !== undefined) {
      return config.weightQuantizer;
    }
    return def;
  }

  /**
   * When a config exists its activation quantizer is returned **even when it is `null`** (weight-only); `def` is
   * used only when there is no config at all (Keras `activation_quantizer_or_default`). So a layer built from a
   * policy string keeps its built-in activation scheme, while a layer quantized with a config follows the config.
   * @example
   * ```ts
   * const cfg = new Int8QuantizationConfig({ activationQuantizer: null });
   * QuantizationConfig.activationQuantizerOrDefault(cfg, new AbsMaxQuantizer());  // null
   * QuantizationConfig.activationQuantizerOrDefault(null, new AbsMaxQuantizer()); // the default
   * ```
   */
  static activationQuantizerOrDefault(config: QuantizationConfig | null | undefined, def: Quantizer | null): Quantizer | null {
    if (config !== null && config !== undefined) return config.activationQuantizer ?? null;
    return def;
  }

  /** `<ClassName mode>` for logs. */
  toString(): string {
    return `<${this.constructor.name} ${JSON.stringify(this.getConfig())}>`;
  }
}

function checkConfigDict(config: unknown): Record<string, unknown> {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new InvalidArgumentError(`Expected a plain object for config but received ${describe(config)}`);
  }
  return config as Record<string, unknown>;
}

function deserializeQuantizer(v: unknown, name: string): Quantizer | null {
  const q = deserializeObject(v ?? null, name);
  if (q === null) return null;
  if (!_isKind(q, 'quantizer')) {
    throw new InvalidArgumentError(`Expected a serialized Quantizer or null for ${name} but received ${describe(q)}`);
  }
  return q as Quantizer;
}

function resolveDefault(arg: unknown, def: () => Quantizer | null, name: string): Quantizer | null {
  if (arg === undefined || arg === 'default') return def();
  return checkQuantizerArg(arg, name);
}

/** Options of {@link Int8QuantizationConfig}. */
export interface Int8QuantizationConfigOptions {
  /** Weight quantizer (output dtype int8); default `null` = per-channel abs-max along the input axis. */
  weightQuantizer?: Quantizer | null;
  /** Activation quantizer; `'default'` (the default) = `new AbsMaxQuantizer()` (per token); `null` = weight-only. */
  activationQuantizer?: QuantizerArg;
}

/**
 * int8 quantization (Keras `Int8QuantizationConfig`): W8A8 with dynamic per-token activations by default;
 * `activationQuantizer: null` gives weight-only int8.
 *
 * @example
 * ```ts
 * await model.quantize('int8');                                                    // the default config
 * await model.quantize('int8', { config: new Int8QuantizationConfig({ activationQuantizer: null }) }); // W8A16
 * ```
 */
export class Int8QuantizationConfig extends QuantizationConfig {
  /**
   * @throws InvalidArgumentError when the weight quantizer's output dtype is not int8.
   */
  constructor(options: Int8QuantizationConfigOptions = {}) {
    super({
      weightQuantizer: checkQuantizerArg(options?.weightQuantizer, 'weightQuantizer'),
      activationQuantizer: resolveDefault(options?.activationQuantizer, () => new AbsMaxQuantizer(), 'activationQuantizer'),
    });
    const wq = this.weightQuantizer;
    if (wq !== null && wq.outputDtype !== 'int8') {
      throw new InvalidArgumentError(
        `Expected a weight quantizer with outputDtype 'int8' for weightQuantizer but received ${describe(wq.outputDtype)}: ` +
          `Int8QuantizationConfig requires a weight_quantizer with output_dtype='int8'. Received: output_dtype=${String(wq.outputDtype)}`,
      );
    }
  }

  /** Always `'int8'`. */
  get mode(): 'int8' {
    return 'int8';
  }

  /**
   * Rebuilds the config from {@link QuantizationConfig.getConfig} output.
   * @example
   * ```ts
   * Int8QuantizationConfig.fromConfig({ weight_quantizer: null, activation_quantizer: null }).activationQuantizer; // null
   * ```
   */
  static override fromConfig(config: Record<string, unknown>): Int8QuantizationConfig {
    const c = checkConfigDict(config);
    return new Int8QuantizationConfig({
      weightQuantizer: deserializeQuantizer(c.weight_quantizer, 'config.weight_quantizer'),
      activationQuantizer: deserializeQuantizer(c.activation_quantizer, 'config.activation_quantizer'),
    });
  }
}

/** Options of {@link Int4QuantizationConfig}. */
export interface Int4QuantizationConfigOptions {
  /** Custom weight quantizer (per-channel only): needs `valueRange` `[-8, 7]` and output dtype int8. */
  weightQuantizer?: Quantizer | null;
  /** Activation quantizer (per-channel only); `'default'` (the default) = `null`, weight-only. */
  activationQuantizer?: QuantizerArg;
  /** Rows per group along the input axis; default 128; `null` or `-1` = per-channel (symmetric abs-max). */
  blockSize?: number | null;
}

/**
 * int4 quantization (Keras `Int4QuantizationConfig`). With `blockSize > 0` (default 128) the kernel is quantized
 * in groups of `blockSize` input rows, asymmetric with a zero point (W4A16); with `blockSize` `null`/`-1` it is
 * per-channel symmetric abs-max, the only form that accepts custom quantizers.
 *
 * @example
 * ```ts
 * new Int4QuantizationConfig().blockSize;                    // 128
 * new Int4QuantizationConfig({ blockSize: -1 }).perChannel;  // true (blockSize normalised to null)
 * new Int4QuantizationConfig({ blockSize: 0 });              // throws: block_size must be None, -1, or a positive integer
 * ```
 */
export class Int4QuantizationConfig extends QuantizationConfig {
  /** Group size along the input axis, or `null` for per-channel (`-1` is normalised to `null`). */
  readonly blockSize: number | null;

  /**
   * @throws InvalidArgumentError for a bad block size, a custom quantizer with a grouped block size, or a
   *   weight quantizer whose range is not [-8, 7] or output dtype not int8.
   */
  constructor(options: Int4QuantizationConfigOptions = {}) {
    super({
      weightQuantizer: checkQuantizerArg(options?.weightQuantizer, 'weightQuantizer'),
      activationQuantizer: resolveDefault(options?.activationQuantizer, () => null, 'activationQuantizer'),
    });
    const blockSize = options?.blockSize === undefined ? 128 : options.blockSize;
    if (blockSize !== null && blockSize !== -1 && !(typeof blockSize === 'number' && Number.isSafeInteger(blockSize) && blockSize > 0)) {
      throw new InvalidArgumentError(
        `Expected null, -1 or a positive integer for blockSize but received ${describe(blockSize)}: ` +
          `block_size must be None, -1, or a positive integer. Received: block_size=${_pyRepr(blockSize)}`,
      );
    }
    this.blockSize = blockSize === -1 ? null : blockSize;
    if (this.blockSize !== null && (this.weightQuantizer !== null || this.activationQuantizer !== null)) {
      throw new InvalidArgumentError(
        `Expected no custom quantizers for a grouped int4 config (blockSize ${this.blockSize}) for weightQuantizer/activationQuantizer but received ` +
          `${this.weightQuantizer ? 'a weight quantizer' : 'an activation quantizer'}: ` +
          'Int4 sub-channel quantization (block_size > 0) does not support custom quantizers. Either set block_size to None ' +
          `or -1 for per-channel quantization, or remove the custom quantizer arguments. Received: block_size=${this.blockSize}`,
      );
    }
    const wq = this.weightQuantizer;
    if (wq !== null) {
      const range = (wq as unknown as { valueRange?: unknown }).valueRange;
      if (!Array.isArray(range) || range.length !== 2 || range[0] !== -8 || range[1] !== 7) {
        throw new InvalidArgumentError(
          `Expected a weight quantizer with valueRange [-8, 7] for weightQuantizer but received ${describe(range)}: ` +
            `Int4QuantizationConfig requires a weight_quantizer with value_range=(-8, 7). Received: value_range=${_pyRepr(range, true)}`,
        );
      }
      if (wq.outputDtype !== 'int8') {
        throw new InvalidArgumentError(
          `Expected a weight quantizer with outputDtype 'int8' for weightQuantizer but received ${describe(wq.outputDtype)}: ` +
            `Int4QuantizationConfig requires a weight_quantizer with output_dtype='int8'. Received: output_dtype=${String(wq.outputDtype)}`,
        );
      }
    }
  }

  /** Always `'int4'`. */
  get mode(): 'int4' {
    return 'int4';
  }

  /**
   * True for per-channel int4 (`blockSize` `null`).
   * @example
   * ```ts
   * new Int4QuantizationConfig({ blockSize: null }).perChannel; // true
   * ```
   */
  get perChannel(): boolean {
    return this.blockSize === null;
  }

  /**
   * `{ weight_quantizer, activation_quantizer, block_size }` (per-channel writes `block_size: null`).
   * @example
   * ```ts
   * new Int4QuantizationConfig().getConfig(); // { weight_quantizer: null, activation_quantizer: null, block_size: 128 }
   * ```
   */
  override getConfig(): Record<string, unknown> {
    return { ...super.getConfig(), block_size: this.blockSize };
  }

  /**
   * Rebuilds the config; a missing `block_size` means per-channel (checkpoints written before grouped int4).
   * @example
   * ```ts
   * Int4QuantizationConfig.fromConfig({ weight_quantizer: null, activation_quantizer: null }).blockSize; // null
   * ```
   */
  static override fromConfig(config: Record<string, unknown>): Int4QuantizationConfig {
    const c = checkConfigDict(config);
    return new Int4QuantizationConfig({
      weightQuantizer: deserializeQuantizer(c.weight_quantizer, 'config.weight_quantizer'),
      activationQuantizer: deserializeQuantizer(c.activation_quantizer, 'config.activation_quantizer'),
      blockSize: c.block_size === undefined ? null : (c.block_size as number | null),
    });
  }
}

/**
 * float8 (Keras `Float8QuantizationConfig`): QDQ mixed-precision with E4M3 forward and E5M2 gradients and
 * delayed scaling. It takes no quantizers; its config is `{}`.
 *
 * @example
 * ```ts
 * await model.quantize('float8'); // same as { config: new Float8QuantizationConfig() }
 * ```
 */
export class Float8QuantizationConfig extends QuantizationConfig {
  constructor() {
    super({ weightQuantizer: null, activationQuantizer: null });
  }

  /** Always `'float8'`. */
  get mode(): 'float8' {
    return 'float8';
  }

  /**
   * Always `{}`.
   * @example
   * ```ts
   * new Float8QuantizationConfig().getConfig(); // {}
   * ```
   */
  override getConfig(): Record<string, unknown> {
    return {};
  }

  /**
   * A new config (the dict is ignored, as in Keras).
   * @example
   * ```ts
   * Float8QuantizationConfig.fromConfig({});
   * ```
   */
  static override fromConfig(config: Record<string, unknown> = {}): Float8QuantizationConfig {
    checkConfigDict(config);
    return new Float8QuantizationConfig();
  }
}

/** Options of {@link GPTQConfig} (Keras's arguments in camelCase). */
export interface GPTQConfigOptions {
  /**
   * Calibration data: an iterable (or async iterable) of strings, or of token id arrays. Required for calibration
   * (it may be `null` in a config read back from a file, which needs no calibration). A string is rejected.
   */
  dataset?: unknown;
  /** Tokenizer for string samples (`tokenizer.tokenize(text)`); required for calibration, even for token data. */
  tokenizer?: unknown;
  /** 2, 3, 4 or 8; default 4. */
  weightBits?: number;
  /** Number of calibration windows; default 128. */
  numSamples?: number;
  /** Windows per calibration forward pass; default 8 (does not change the Hessian). */
  calibrationBatchSize?: number;
  /** `false` = per-tensor parameters inside each group; default true. */
  perChannel?: boolean;
  /** Window length in tokens; default 512. */
  sequenceLength?: number;
  /** Fraction of mean(diag H) added to the diagonal, in [0, 1]; default 0.01. */
  hessianDamping?: number;
  /** Input columns per group; `-1` = one group per output channel; default 128. */
  groupSize?: number;
  /** Symmetric scale and zero; default false. */
  symmetric?: boolean;
  /** Process columns in descending damped-Hessian-diagonal order; default false. */
  activationOrder?: boolean;
  /** `{ preBlockLayers, sequentialBlocks }`, else the model's `getQuantizationLayerStructure('gptq')`; default null. */
  quantizationLayerStructure?: Record<string, unknown> | null;
}

function checkPositiveInt(v: unknown, name: string, snake: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    throw new InvalidArgumentError(`Expected a positive integer for ${name} but received ${describe(v)}: ${snake} must be a positive integer.`);
  }
  return v;
}

function checkBool(v: unknown, name: string): boolean {
  if (typeof v !== 'boolean') throw new InvalidArgumentError(`Expected a boolean for ${name} but received ${describe(v)}`);
  return v;
}

/**
 * GPTQ (Keras `GPTQConfig`): layer-wise, Hessian-aware weight quantization calibrated on data. Unlike Keras
 * (whose calibration hooks never run, so it degenerates to round-to-nearest), quantkit really calibrates.
 *
 * @example
 * ```ts
 * const config = new GPTQConfig({ dataset: texts, tokenizer, weightBits: 4, groupSize: 128 });
 * config.dtypePolicyString(); // 'gptq/4/128'
 * await model.quantize('gptq', { config });
 * ```
 */
export class GPTQConfig extends QuantizationConfig {
  readonly dataset: unknown;
  readonly tokenizer: unknown;
  readonly weightBits: 2 | 3 | 4 | 8;
  readonly numSamples: number;
  readonly calibrationBatchSize: number;
  readonly perChannel: boolean;
  readonly sequenceLength: number;
  readonly hessianDamping: number;
  readonly groupSize: number;
  readonly symmetric: boolean;
  readonly activationOrder: boolean;
  readonly quantizationLayerStructure: Record<string, unknown> | null;

  /**
   * @throws InvalidArgumentError for any value outside the rules of Keras's GPTQConfig (bits not in
   *   {2, 3, 4, 8}; non-positive sample count, batch size or sequence length; damping outside [0, 1];
   *   group size 0 or below -1), for non-boolean flags, and for a string dataset.
   */
  constructor(options: GPTQConfigOptions = {}) {
    super({ weightQuantizer: null, activationQuantizer: null });
    const o = options ?? {};
    const weightBits = o.weightBits ?? 4;
    if (!([2, 3, 4, 8] as unknown[]).includes(weightBits)) {
      throw new InvalidArgumentError(
        `Expected one of 2, 3, 4, 8 for weightBits but received ${describe(weightBits)}: ` +
          `Unsupported weight_bits ${String(weightBits)}. Supported values are 2, 3, 4, and 8.`,
      );
    }
    this.weightBits = weightBits as 2 | 3 | 4 | 8;
    this.numSamples = checkPositiveInt(o.numSamples ?? 128, 'numSamples', 'num_samples');
    this.calibrationBatchSize = checkPositiveInt(o.calibrationBatchSize ?? 8, 'calibrationBatchSize', 'calibration_batch_size');
    this.sequenceLength = checkPositiveInt(o.sequenceLength ?? 512, 'sequenceLength', 'sequence_length');
    const damping = o.hessianDamping ?? 0.01;
    if (typeof damping !== 'number' || !(damping >= 0 && damping <= 1)) {
      throw new InvalidArgumentError(
        `Expected a number in [0, 1] for hessianDamping but received ${describe(damping)}: hessian_damping must be between 0 and 1.`,
      );
    }
    this.hessianDamping = damping;
    const groupSize = o.groupSize ?? 128;
    if (typeof groupSize !== 'number' || !Number.isSafeInteger(groupSize) || groupSize < -1 || groupSize === 0) {
      throw new InvalidArgumentError(
        `Expected -1 or a positive integer for groupSize but received ${describe(groupSize)}: ` +
          `Invalid group_size. Supported values are -1 (whole-tensor) or a positive integer, but got ${String(groupSize)}.`,
      );
    }
    this.groupSize = groupSize;
    this.perChannel = checkBool(o.perChannel ?? true, 'perChannel');
    this.symmetric = checkBool(o.symmetric ?? false, 'symmetric');
    this.activationOrder = checkBool(o.activationOrder ?? false, 'activationOrder');
    const structure = o.quantizationLayerStructure ?? null;
    if (structure !== null && (typeof structure !== 'object' || Array.isArray(structure))) {
      throw new InvalidArgumentError(
        `Expected null or an object { preBlockLayers, sequentialBlocks } for quantizationLayerStructure but received ${describe(structure)}`,
      );
    }
    this.quantizationLayerStructure = structure;
    const dataset = o.dataset ?? null;
    if (typeof dataset === 'string' || dataset instanceof Uint8Array) {
      throw new InvalidArgumentError(
        `Expected an iterable of strings or token arrays for dataset but received ${describe(dataset)}: ` +
          'The `dataset` argument must be an iterable (e.g., a list of strings, a generator, or a NumPy array). ' +
          `Got type: ${typeof dataset === 'string' ? 'str' : 'bytes'}. Please pass the loaded dataset directly.`,
      );
    }
    if (
      dataset !== null &&
      typeof (dataset as { [Symbol.iterator]?: unknown })[Symbol.iterator] !== 'function' &&
      typeof (dataset as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] !== 'function'
    ) {
      throw new InvalidArgumentError(`Expected an iterable of strings or token arrays for dataset but received ${describe(dataset)}`);
    }
    this.dataset = dataset;
    this.tokenizer = o.tokenizer ?? null;
  }

  /** Always `'gptq'`. */
  get mode(): 'gptq' {
    return 'gptq';
  }

  /**
   * The policy suffix a GPTQ layer gets: `gptq/<bits>/<groupSize>`.
   * @example
   * ```ts
   * new GPTQConfig({ weightBits: 3, groupSize: -1 }).dtypePolicyString(); // 'gptq/3/-1'
   * ```
   */
  dtypePolicyString(): string {
    return `gptq/${this.weightBits}/${this.groupSize}`;
  }

  /**
   * Keras's keys and order; `dataset`, `tokenizer` and `quantization_layer_structure` are written as `null`
   * (only needed for the one-time calibration).
   * @example
   * ```ts
   * new GPTQConfig().getConfig().group_size; // 128
   * ```
   */
  override getConfig(): Record<string, unknown> {
    return {
      dataset: null,
      tokenizer: null,
      quantization_layer_structure: null,
      weight_bits: this.weightBits,
      num_samples: this.numSamples,
      calibration_batch_size: this.calibrationBatchSize,
      per_channel: this.perChannel,
      sequence_length: this.sequenceLength,
      hessian_damping: this.hessianDamping,
      group_size: this.groupSize,
      symmetric: this.symmetric,
      activation_order: this.activationOrder,
    };
  }

  /**
   * Rebuilds a config (without dataset or tokenizer) from {@link GPTQConfig.getConfig} output or a Keras file;
   * missing keys take their defaults (older Keras versions lack `calibration_batch_size`).
   * @example
   * ```ts
   * GPTQConfig.fromConfig({ weight_bits: 4, group_size: 8 }).dtypePolicyString(); // 'gptq/4/8'
   * ```
   */
  static override fromConfig(config: Record<string, unknown>): GPTQConfig {
    const c = checkConfigDict(config);
    const pick = <T>(k: string): T | undefined => (c[k] === null || c[k] === undefined ? undefined : (c[k] as T));
    return new GPTQConfig({
      dataset: pick('dataset'),
      tokenizer: pick('tokenizer'),
      weightBits: pick('weight_bits'),
      numSamples: pick('num_samples'),
      calibrationBatchSize: pick('calibration_batch_size'),
      perChannel: pick('per_channel'),
      sequenceLength: pick('sequence_length'),
      hessianDamping: pick('hessian_damping'),
      groupSize: pick('group_size'),
      symmetric: pick('symmetric'),
      activationOrder: pick('activation_order'),
      quantizationLayerStructure: pick('quantization_layer_structure'),
    });
  }
}

function kerasTypeName(v: unknown): string {
  if (v === null || v === undefined) return "<class 'NoneType'>";
  if (typeof v === 'object' || typeof v === 'function') return `<class '${(v as object).constructor?.name ?? 'object'}'>`;
  const map: Record<string, string> = { string: 'str', number: 'float', boolean: 'bool', bigint: 'int', symbol: 'symbol' };
  return `<class '${map[typeof v] ?? typeof v}'>`;
}

/**
 * Turns the `(mode, config)` pair of a `quantize()` call into one config (Keras `validate_and_resolve_config`):
 * 1. a string `config` is taken as the mode;
 * 2. `mode` must be one of {@link QUANTIZATION_MODES} or `null`/`undefined`;
 * 3. without a config, int8/int4/float8 get their default config; gptq needs a {@link GPTQConfig};
 * 4. a config must be a {@link QuantizationConfig};
 * 5. a mode that contradicts `config.mode` is an error;
 * 6. gptq requires a {@link GPTQConfig}.
 *
 * @throws InvalidArgumentError with Keras's wording (UnsupportedError for Keras modes quantkit lacks).
 * @example
 * ```ts
 * validateAndResolveConfig('int8');                              // Int8QuantizationConfig
 * validateAndResolveConfig(undefined, 'float8');                 // Float8QuantizationConfig
 * validateAndResolveConfig('gptq');                              // throws: For GPTQ, you must pass a `GPTQConfig` ...
 * validateAndResolveConfig('int8', new Int4QuantizationConfig()); // throws: Contradictory arguments: mode='int8' but config.mode='int4'
 * ```
 */
export function validateAndResolveConfig(mode: unknown, config?: unknown): QuantizationConfig {
  if (typeof config === 'string') {
    mode = config;
    config = undefined;
  }
  _validateMode(mode);
  let resolved: QuantizationConfig;
  if (config === null || config === undefined) {
    switch (mode) {
      case 'int8':
        resolved = new Int8QuantizationConfig();
        break;
      case 'int4':
        resolved = new Int4QuantizationConfig();
        break;
      case 'float8':
        resolved = new Float8QuantizationConfig();
        break;
      case 'gptq':
        throw new InvalidArgumentError(
          "Expected a GPTQConfig for config but received nothing: For GPTQ, you must pass a `GPTQConfig` object in the `config` argument.",
        );
      default:
        throw new InvalidArgumentError(
          'Expected a mode or a config for mode/config but received neither: You must provide either `mode` or `config` to `quantize`.',
        );
    }
  } else {
    if (!(config instanceof QuantizationConfig)) {
      throw new InvalidArgumentError(
        `Expected a QuantizationConfig for config but received ${describe(config)}: ` +
          'Argument `config` must be an instance of `QuantizationConfig`. ' +
          `Received: config=${_pyRepr(config)} (of type ${kerasTypeName(config)})`,
      );
    }
    resolved = config;
  }
  const configMode = resolved.mode;
  if (mode !== null && mode !== undefined && configMode !== mode) {
    throw new InvalidArgumentError(
      `Expected a config whose mode is '${String(mode)}' for config but received a config with mode '${configMode}': ` +
        `Contradictory arguments: mode='${String(mode)}' but config.mode='${configMode}'`,
    );
  }
  _validateMode(configMode, 'mode');
  if (configMode === 'gptq' && !(resolved instanceof GPTQConfig)) {
    throw new InvalidArgumentError(
      `Expected a GPTQConfig for config but received a ${resolved.constructor.name}: ` +
        `Mode 'gptq' requires a valid \`config\` argument of type \`GPTQConfig\`. Received: <class '${resolved.constructor.name}'>`,
    );
  }
  return resolved;
}

_registerBuiltin(QuantizationConfig, { module: 'keras.quantizers', kind: 'quantization_config' });
_registerBuiltin(Int8QuantizationConfig, { module: 'keras.quantizers' });
_registerBuiltin(Int4QuantizationConfig, { module: 'keras.quantizers' });
_registerBuiltin(Float8QuantizationConfig, { module: 'keras.quantizers' });
_registerBuiltin(GPTQConfig, { module: 'keras.quantizers' });
