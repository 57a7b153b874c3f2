/**
 * Weight-free building blocks of real models, with Keras names, configs and numerics: `Activation`, `Softmax`,
 * `Add`, `Multiply`, `Dropout` (a no-op at inference), `Reshape`, `Flatten` and `Identity`; plus the helpers
 * every layer's `fromConfig`/`getConfig` shares (Keras initializer and activation (de)serialization, base
 * options from a Keras config) and {@link setLayerPath}, which moves a layer and its sub-layers to a new path.
 * @packageDocumentation
 */
import { InvalidArgumentError, ShapeMismatchError, UnsupportedError } from '../errors';
import { getDTypePolicy } from '../dtype-policies';
import { deserializeObject, QuantizationConfig, serializeObject } from '../quantizers';
import { Tensor, describe } from '../tensor';
import { ActivationName, applyActivation, checkActivation } from './activations';
import type { Initializer } from './initializers';
import { Layer, LayerOptions } from './layer';

// ---------------------------------------------------------------------------------------------------------
// Config helpers
// ---------------------------------------------------------------------------------------------------------

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * Checks that `config` is a plain object (a Keras layer config) and returns it.
 * @example
 * ```ts
 * checkLayerConfig({ name: 'd', units: 4 }, 'Dense'); // the same object
 * ```
 */
export function checkLayerConfig(config: unknown, className: string): Record<string, unknown> {
  if (!isPlainObject(config)) {
    throw new InvalidArgumentError(`Expected a plain object (a Keras layer config) for the config of ${className} but received ${describe(config)}`);
  }
  return config;
}

/**
 * The base {@link LayerOptions} (`name`, `trainable`, `dtype`) of a Keras layer config; `dtype` may be a
 * policy name, a serialized policy or a serialized `DTypePolicyMap`.
 * @example
 * ```ts
 * layerOptionsFromConfig({ name: 'mha', trainable: true, dtype: 'float32' }); // { name: 'mha', trainable: true, dtype: DTypePolicy }
 * ```
 */
export function layerOptionsFromConfig(config: Record<string, unknown>): LayerOptions {
  const out: LayerOptions = {};
  if (config.name !== undefined && config.name !== null) out.name = config.name as string;
  if (config.trainable !== undefined && config.trainable !== null) {
    if (typeof config.trainable !== 'boolean') throw new InvalidArgumentError(`Expected a boolean for config.trainable but received ${describe(config.trainable)}`);
    out.trainable = config.trainable;
  }
  if (config.dtype !== undefined && config.dtype !== null) out.dtype = getDTypePolicy(config.dtype as string | Record<string, unknown>);
  return out;
}

/**
 * Reads `quantization_config` of a Keras config (a serialized config, a config object or null).
 * @example
 * ```ts
 * quantizationConfigFromConfig({ quantization_config: null }); // null
 * ```
 */
export function quantizationConfigFromConfig(config: Record<string, unknown>): QuantizationConfig | null {
  const v = config.quantization_config;
  if (v === undefined || v === null) return null;
  const obj = v instanceof QuantizationConfig ? v : deserializeObject(v, 'config.quantization_config');
  if (!(obj instanceof QuantizationConfig)) {
    throw new InvalidArgumentError(`Expected a serialized QuantizationConfig for config.quantization_config but received ${describe(v)}`);
  }
  return obj;
}

/**
 * Serializes a quantization config as Keras writes it (`null` when absent).
 * @example
 * ```ts
 * serializeQuantizationConfig(new Int4QuantizationConfig()).class_name; // 'Int4QuantizationConfig'
 * ```
 */
export function serializeQuantizationConfig(config: QuantizationConfig | null): Record<string, unknown> | null {
  return config ? (serializeObject(config) as unknown as Record<string, unknown>) : null;
}

const INITIALIZER_CLASSES: Record<string, { className: string; config: (seed: number | null) => Record<string, unknown> }> = {
  glorot_uniform: { className: 'GlorotUniform', config: (seed) => ({ seed, input_axes: null, output_axes: null }) },
  zeros: { className: 'Zeros', config: () => ({}) },
  ones: { className: 'Ones', config: () => ({}) },
  uniform: { className: 'RandomUniform', config: (seed) => ({ seed, minval: -0.05, maxval: 0.05 }) },
  random_normal: { className: 'RandomNormal', config: (seed) => ({ seed, mean: 0, stddev: 0.05 }) },
};

const INITIALIZER_ALIASES: Record<string, Exclude<Initializer, (s: readonly number[]) => Float32Array>> = {
  glorot_uniform: 'glorot_uniform',
  glorotuniform: 'glorot_uniform',
  zeros: 'zeros',
  zero: 'zeros',
  ones: 'ones',
  one: 'ones',
  uniform: 'uniform',
  random_uniform: 'uniform',
  randomuniform: 'uniform',
  normal: 'random_normal',
  random_normal: 'random_normal',
  randomnormal: 'random_normal',
};

/**
 * A Keras-serialized initializer (`{ module: 'keras.initializers', class_name: 'GlorotUniform', config: {...} }`);
 * a custom function initializer cannot be serialized and is written as `null`.
 * @example
 * ```ts
 * serializeInitializer('zeros'); // { module: 'keras.initializers', class_name: 'Zeros', config: {}, registered_name: null }
 * ```
 */
export function serializeInitializer(init: Initializer, seed?: number | null): Record<string, unknown> | null {
  if (typeof init === 'function') return null;
  const entry = INITIALIZER_CLASSES[init];
  if (!entry) throw new InvalidArgumentError(`Expected a known initializer for init but received ${describe(init)}`);
  return { module: 'keras.initializers', class_name: entry.className, config: entry.config(seed ?? null), registered_name: null };
}

/**
 * Reads a Keras initializer (a name such as `'glorot_uniform'` or a serialized dict) into quantkit's initializer
 * name and its seed. `RandomUniform`/`RandomNormal` must have Keras's default ranges (±0.05 / stddev 0.05):
 * only weights created before loading depend on them.
 * @throws UnsupportedError for other initializers.
 * @example
 * ```ts
 * deserializeInitializer({ class_name: 'GlorotUniform', config: { seed: 3 } }); // { init: 'glorot_uniform', seed: 3 }
 * ```
 */
export function deserializeInitializer(value: unknown, argName = 'initializer'): { init: Initializer | undefined; seed: number | undefined } {
  if (value === undefined || value === null) return { init: undefined, seed: undefined };
  if (typeof value === 'function') return { init: value as Initializer, seed: undefined };
  let className: string;
  let cfg: Record<string, unknown> = {};
  if (typeof value === 'string') className = value;
  else if (isPlainObject(value) && typeof value.class_name === 'string') {
    className = value.class_name;
    if (isPlainObject(value.config)) cfg = value.config;
  } else {
    throw new InvalidArgumentError(`Expected an initializer name or a serialized initializer for ${argName} but received ${describe(value)}`);
  }
  const key = className.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
  const init = INITIALIZER_ALIASES[key] ?? INITIALIZER_ALIASES[key.replace(/_/g, '')];
  if (!init) {
    throw new UnsupportedError(`Expected one of GlorotUniform, Zeros, Ones, RandomUniform, RandomNormal for ${argName} but received '${className}'`);
  }
  const seed = typeof cfg.seed === 'number' ? cfg.seed : undefined;
  return { init, seed };
}

/**
 * Reads a Keras activation (a name, or a serialized function `{ class_name: 'function', config: 'relu' }`).
 * @example
 * ```ts
 * activationFromConfig('gelu'); // 'gelu'
 * ```
 */
export function activationFromConfig(value: unknown, argName = 'activation'): ActivationName {
  if (isPlainObject(value) && typeof value.config === 'string') return checkActivation(value.config, argName);
  return checkActivation(value, argName);
}

/**
 * Moves a layer to `path`: sets its `path`, its variables' paths, and (recursively) the paths of its sub-layers
 * from {@link Layer.savableChildren} to `<path>/<child name>`.
 * @example
 * ```ts
 * setLayerPath(mha, 'encoder/mha'); // mha.path === 'encoder/mha'; its query sub-layer: 'encoder/mha/query'
 * ```
 */
export function setLayerPath(layer: Layer, path: string): void {
  if (typeof path !== 'string' || path.length === 0) throw new InvalidArgumentError(`Expected a non-empty string for path but received ${describe(path)}`);
  layer.path = path;
  for (const v of layer.variables) v.path = `${path}/${v.name}`;
  for (const [, child] of layer.savableChildren()) setLayerPath(child, `${path}/${child.name}`);
}

// ---------------------------------------------------------------------------------------------------------
// Shape and broadcasting helpers
// ---------------------------------------------------------------------------------------------------------

function asFloat(t: Tensor): Tensor<'float32'> {
  return t.dtype === 'float32' ? (t as Tensor<'float32'>) : t.toFloat32();
}

/**
 * NumPy broadcasting of two shapes; null when incompatible.
 * @internal
 */
export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] | null {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return null;
    out.push(da === 1 ? db : da);
  }
  return out;
}

/**
 * Index of every element of `out` into a tensor of `shape` broadcast to `out` (null when the shapes are equal).
 * @internal
 */
export function broadcastIndex(shape: readonly number[], out: readonly number[]): Int32Array | null {
  const n = out.reduce((p, q) => p * q, 1);
  if (shape.length === out.length && shape.every((d, i) => d === out[i])) return null; // identity
  const rank = out.length;
  const strides = new Array<number>(rank).fill(0);
  let s = 1;
  for (let i = rank - 1; i >= 0; i--) {
    const d = shape[shape.length - rank + i] ?? 1;
    strides[i] = d === 1 ? 0 : s;
    s *= d;
  }
  const idx = new Int32Array(n);
  const coord = new Array<number>(rank).fill(0);
  let src = 0;
  for (let o = 0; o < n; o++) {
    idx[o] = src;
    for (let d = rank - 1; d >= 0; d--) {
      coord[d]++;
      src += strides[d];
      if (coord[d] < out[d]) break;
      src -= strides[d] * coord[d];
      coord[d] = 0;
    }
  }
  return idx;
}

/**
 * Normalizes axes (negative counts from the end) for a tensor of rank `rank`; sorted, unique.
 * @example
 * ```ts
 * normalizeAxes([-1], 3); // [2]
 * ```
 */
export function normalizeAxes(axis: number | readonly number[], rank: number, argName = 'axis'): number[] {
  const list = typeof axis === 'number' ? [axis] : [...axis];
  const out = list.map((a) => {
    if (!Number.isInteger(a) || a < -rank || a >= rank) {
      throw new InvalidArgumentError(`Expected integers in [-${rank}, ${rank}) for ${argName} of an input of rank ${rank} but received ${JSON.stringify(axis)}`);
    }
    return a < 0 ? a + rank : a;
  });
  if (new Set(out).size !== out.length) throw new InvalidArgumentError(`Expected distinct axes for ${argName} but received ${JSON.stringify(axis)}`);
  return out.sort((x, y) => x - y);
}

/**
 * Groups the elements of a tensor of `shape` by the reduced `axes`: `group[i]` is the index over the kept axes
 * and `param[i]` the index over the reduced axes (row-major over those axes).
 * @internal
 */
export function reductionIndex(shape: readonly number[], axes: readonly number[]): { group: Int32Array; param: Int32Array; groups: number; groupSize: number } {
  const n = shape.reduce((p, q) => p * q, 1);
  const rank = shape.length;
  const reduced = new Set(axes);
  const gStride = new Array<number>(rank).fill(0);
  const pStride = new Array<number>(rank).fill(0);
  let g = 1;
  let p = 1;
  for (let d = rank - 1; d >= 0; d--) {
    if (reduced.has(d)) {
      pStride[d] = p;
      p *= shape[d];
    } else {
      gStride[d] = g;
      g *= shape[d];
    }
  }
  const group = new Int32Array(n);
  const param = new Int32Array(n);
  const coord = new Array<number>(rank).fill(0);
  let gi = 0;
  let pi = 0;
  for (let i = 0; i < n; i++) {
    group[i] = gi;
    param[i] = pi;
    for (let d = rank - 1; d >= 0; d--) {
      coord[d]++;
      gi += gStride[d];
      pi += pStride[d];
      if (coord[d] < shape[d]) break;
      gi -= gStride[d] * coord[d];
      pi -= pStride[d] * coord[d];
      coord[d] = 0;
    }
  }
  return { group, param, groups: g, groupSize: p };
}

// ---------------------------------------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------------------------------------

/**
 * Base of layers without weights: `build` only marks the layer built, and a quantized policy (a parent's
 * policy passed down, say) runs the float computation, since there is nothing to quantize.
 * @example
 * ```ts
 * class Negate extends StatelessLayer { async call(x: Tensor) { ... } static fromConfig(c) { ... } }
 * ```
 */
export abstract class StatelessLayer extends Layer {
  build(_inputShape: readonly (number | null)[] | readonly (readonly (number | null)[])[]): void {
    this.built = true;
  }

  protected override quantizedCall(inputs: Tensor | Tensor[], options?: Record<string, unknown>): Promise<Tensor> {
    return this.call(inputs, options);
  }

  /** The single input tensor (a one-element list is accepted). */
  protected single(inputs: Tensor | Tensor[]): Tensor<'float32'> {
    const t = Array.isArray(inputs) ? (inputs.length === 1 ? inputs[0] : null) : inputs;
    if (!(t instanceof Tensor)) {
      throw new InvalidArgumentError(`Expected one Tensor for inputs of layer '${this.name}' but received ${describe(inputs)}`);
    }
    return asFloat(t);
  }
}

/** Options of {@link Activation}. */
export interface ActivationOptions extends LayerOptions {
  /** `relu`, `gelu` (exact, erf), `gelu_approximate` (tanh form), `silu`/`swish`, `tanh`, `sigmoid`, `softmax` (last axis), `linear`. */
  activation: ActivationName;
}

/**
 * Applies an element-wise activation (Keras `keras.layers.Activation`).
 * @example
 * ```ts
 * const y = await new Activation({ activation: 'gelu' }).apply(x);
 * ```
 */
export class Activation extends StatelessLayer {
  readonly activation: ActivationName;

  constructor(options: ActivationOptions) {
    super(options);
    if (!options || options.activation === undefined || options.activation === null) {
      throw new InvalidArgumentError(`Expected an activation name for activation but received ${describe(options?.activation)}`);
    }
    this.activation = checkActivation(options.activation);
  }

  async call(inputs: Tensor | Tensor[]): Promise<Tensor<'float32'>> {
    const x = this.single(inputs);
    const out = Float32Array.from(x.data);
    applyActivation(this.activation, out, x.rank ? x.shape[x.rank - 1] : 1);
    return new Tensor('float32', x.shape, out);
  }

  override getConfig(): Record<string, unknown> {
    return { ...super.getConfig(), activation: this.activation };
  }

  /**
   * Rebuilds the layer from a Keras config (`{ name, dtype, activation }`).
   * @example
   * ```ts
   * Activation.fromConfig({ name: 'act', activation: 'relu' });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): Activation {
    const c = checkLayerConfig(config, 'Activation');
    return new Activation({ ...layerOptionsFromConfig(c), activation: activationFromConfig(c.activation) });
  }
}

/** Options of {@link Softmax}. */
export interface SoftmaxOptions extends LayerOptions {
  /** Axis or axes normalized over (default -1). */
  axis?: number | readonly number[];
}

/**
 * Softmax over one or several axes (Keras `keras.layers.Softmax`). With `{ mask }` (a tensor broadcastable to
 * the inputs; non-zero = keep), masked positions take -1e9 before the softmax and 0 after it, as in Keras, so a
 * fully masked row gives zeros.
 * @example
 * ```ts
 * const p = await new Softmax({ axis: -1 }).apply(scores, { mask });
 * ```
 */
export class Softmax extends StatelessLayer {
  readonly axis: number | readonly number[];

  constructor(options: SoftmaxOptions = {}) {
    super(options);
    const axis = options.axis ?? -1;
    if (!(Number.isInteger(axis) || (Array.isArray(axis) && axis.length > 0 && axis.every((a) => Number.isInteger(a))))) {
      throw new InvalidArgumentError(`Expected an integer or a non-empty list of integers for axis but received ${describe(axis)}`);
    }
    this.axis = Array.isArray(axis) ? [...axis] : axis;
  }

  async call(inputs: Tensor | Tensor[], options: { mask?: Tensor | null } = {}): Promise<Tensor<'float32'>> {
    const x = this.single(inputs);
    const axes = normalizeAxes(this.axis, x.rank);
    const data = Float32Array.from(x.data);
    let keep: Int32Array | null | undefined;
    let maskData: ArrayLike<number> | null = null;
    const mask = options.mask ?? null;
    if (mask !== null) {
      if (!(mask instanceof Tensor)) throw new InvalidArgumentError(`Expected a Tensor or null for mask but received ${describe(mask)}`);
      const b = broadcastShapes(mask.shape, x.shape);
      if (mask.rank > x.rank || !b || b.some((d, i) => d !== x.shape[i])) {
        throw new ShapeMismatchError(`Expected a mask broadcastable to [${x.shape.join(', ')}] for mask but received shape [${mask.shape.join(', ')}]`);
      }
      keep = broadcastIndex(mask.shape, x.shape);
      maskData = mask.dtype === 'float32' || mask.dtype === 'int32' || mask.dtype === 'uint8' || mask.dtype === 'int8' ? (mask.data as ArrayLike<number>) : mask.toFloat32().data;
      for (let i = 0; i < data.length; i++) {
        const m = maskData[keep ? keep[i] : i];
        if (!(m > 0.5)) data[i] = -1e9;
      }
    }
    const { group, groups } = reductionIndex(x.shape, axes);
    const max = new Float64Array(groups).fill(-Infinity);
    for (let i = 0; i < data.length; i++) if (data[i] > max[group[i]]) max[group[i]] = data[i];
    const sum = new Float64Array(groups);
    const e = new Float64Array(data.length);
    for (let i = 0; i < data.length; i++) {
      e[i] = Math.exp(data[i] - max[group[i]]);
      sum[group[i]] += e[i];
    }
    for (let i = 0; i < data.length; i++) data[i] = e[i] / sum[group[i]];
    if (maskData) for (let i = 0; i < data.length; i++) if (!(maskData[keep ? keep[i] : i] > 0.5)) data[i] = 0;
    return new Tensor('float32', x.shape, data);
  }

  override getConfig(): Record<string, unknown> {
    return { ...super.getConfig(), axis: Array.isArray(this.axis) ? [...this.axis] : this.axis };
  }

  /**
   * Rebuilds the layer from a Keras config (`{ name, dtype, axis }`).
   * @example
   * ```ts
   * Softmax.fromConfig({ axis: [3] });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): Softmax {
    const c = checkLayerConfig(config, 'Softmax');
    return new Softmax({ ...layerOptionsFromConfig(c), axis: (c.axis ?? -1) as number | number[] });
  }
}

/** Element-wise merge of several tensors with NumPy broadcasting. */
abstract class Merge extends StatelessLayer {
  protected abstract combine(a: number, b: number): number;

  async call(inputs: Tensor | Tensor[]): Promise<Tensor<'float32'>> {
    if (!Array.isArray(inputs) || inputs.length < 1) {
      throw new InvalidArgumentError(`Expected a list of at least 1 Tensor for inputs of layer '${this.name}' but received ${describe(inputs)}: A merge layer should be called on a list of inputs.`);
    }
    let out = Float32Array.from(asFloat(inputs[0]).data);
    let shape: number[] = [...inputs[0].shape];
    for (let k = 1; k < inputs.length; k++) {
      const t = asFloat(inputs[k]);
      const s = broadcastShapes(shape, t.shape);
      if (!s) {
        throw new ShapeMismatchError(
          `Expected shapes that broadcast together for inputs of layer '${this.name}' but received [${shape.join(', ')}] and [${t.shape.join(', ')}]: Inputs have incompatible shapes.`,
        );
      }
      const ia = broadcastIndex(shape, s);
      const ib = broadcastIndex(t.shape, s);
      const n = s.reduce((p, q) => p * q, 1);
      const next = new Float32Array(n);
      const td = t.data;
      for (let i = 0; i < n; i++) next[i] = this.combine(out[ia ? ia[i] : i], td[ib ? ib[i] : i]);
      out = next;
      shape = s;
    }
    return new Tensor('float32', shape, out);
  }
}

/**
 * Sums a list of tensors (Keras `keras.layers.Add`; NumPy broadcasting).
 * @example
 * ```ts
 * const y = await new Add().apply([x, residual]);
 * ```
 */
export class Add extends Merge {
  protected combine(a: number, b: number): number {
    return a + b;
  }

  /**
   * Rebuilds the layer from a Keras config.
   * @example
   * ```ts
   * Add.fromConfig({ name: 'residual' });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): Add {
    return new Add(layerOptionsFromConfig(checkLayerConfig(config, 'Add')));
  }
}

/**
 * Multiplies a list of tensors element-wise (Keras `keras.layers.Multiply`; NumPy broadcasting).
 * @example
 * ```ts
 * const y = await new Multiply().apply([gate, up]);
 * ```
 */
export class Multiply extends Merge {
  protected combine(a: number, b: number): number {
    return a * b;
  }

  /**
   * Rebuilds the layer from a Keras config.
   * @example
   * ```ts
   * Multiply.fromConfig({ name: 'mul' });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): Multiply {
    return new Multiply(layerOptionsFromConfig(checkLayerConfig(config, 'Multiply')));
  }
}

/** Options of {@link Dropout}. */
export interface DropoutOptions extends LayerOptions {
  /** Fraction dropped in training, in [0, 1). */
  rate: number;
  seed?: number | null;
  noiseShape?: readonly (number | null)[] | null;
}

/**
 * Dropout (Keras `keras.layers.Dropout`): quantkit runs inference only, so the layer returns its input.
 * @example
 * ```ts
 * const y = await new Dropout({ rate: 0.1 }).apply(x); // y is x
 * ```
 */
export class Dropout extends StatelessLayer {
  readonly rate: number;
  readonly seed: number | null;
  readonly noiseShape: readonly (number | null)[] | null;

  constructor(options: DropoutOptions) {
    super(options);
    const rate = options?.rate;
    if (typeof rate !== 'number' || !(rate >= 0 && rate < 1)) {
      throw new InvalidArgumentError(`Expected a number in [0, 1) for rate but received ${describe(rate)}: The \`rate\` argument must be a float in the range [0, 1).`);
    }
    this.rate = rate;
    this.seed = options.seed ?? null;
    this.noiseShape = options.noiseShape ? [...options.noiseShape] : null;
  }

  async call(inputs: Tensor | Tensor[]): Promise<Tensor> {
    const t = Array.isArray(inputs) ? inputs[0] : inputs;
    if (Array.isArray(inputs) && inputs.length !== 1) {
      throw new InvalidArgumentError(`Expected one Tensor for inputs of layer '${this.name}' but received ${describe(inputs)}`);
    }
    return t;
  }

  override getConfig(): Record<string, unknown> {
    return { ...super.getConfig(), rate: this.rate, seed: this.seed, noise_shape: this.noiseShape ? [...this.noiseShape] : null };
  }

  /**
   * Rebuilds the layer from a Keras config (`{ rate, seed, noise_shape }`).
   * @example
   * ```ts
   * Dropout.fromConfig({ name: 'dropout', rate: 0.1, seed: null, noise_shape: null });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): Dropout {
    const c = checkLayerConfig(config, 'Dropout');
    return new Dropout({
      ...layerOptionsFromConfig(c),
      rate: (c.rate ?? 0) as number,
      seed: (c.seed ?? null) as number | null,
      noiseShape: (c.noise_shape ?? null) as (number | null)[] | null,
    });
  }
}

/** Options of {@link Reshape}. */
export interface ReshapeOptions extends LayerOptions {
  /** Target shape without the batch dimension; one entry may be -1. */
  targetShape: readonly number[];
}

/**
 * Reshapes every sample to `targetShape` (Keras `keras.layers.Reshape`; the batch dimension stays).
 * @example
 * ```ts
 * const y = await new Reshape({ targetShape: [4, -1] }).apply(x); // [batch, 4, n / 4]
 * ```
 */
export class Reshape extends StatelessLayer {
  readonly targetShape: readonly number[];

  constructor(options: ReshapeOptions) {
    super(options);
    const ts = options?.targetShape;
    if (!Array.isArray(ts) || ts.some((d) => !Number.isInteger(d) || (d < 1 && d !== -1)) || ts.filter((d) => d === -1).length > 1) {
      throw new InvalidArgumentError(`Expected positive integers (at most one -1) for targetShape but received ${describe(ts)}`);
    }
    this.targetShape = [...ts];
  }

  async call(inputs: Tensor | Tensor[]): Promise<Tensor> {
    const x = Array.isArray(inputs) && inputs.length === 1 ? inputs[0] : inputs;
    if (!(x instanceof Tensor) || x.rank < 1) throw new InvalidArgumentError(`Expected one Tensor of rank >= 1 for inputs of layer '${this.name}' but received ${describe(x)}`);
    const per = x.shape.slice(1).reduce((p, q) => p * q, 1);
    const known = this.targetShape.filter((d) => d !== -1).reduce((p, q) => p * q, 1);
    const target = this.targetShape.map((d) => (d === -1 ? per / known : d));
    if (target.reduce((p, q) => p * q, 1) !== per || target.some((d) => !Number.isInteger(d))) {
      throw new ShapeMismatchError(
        `Expected a target shape with ${per} elements per sample for layer '${this.name}' but received [${this.targetShape.join(', ')}] (input shape [${x.shape.join(', ')}])`,
      );
    }
    return x.reshape([x.shape[0], ...target]);
  }

  override getConfig(): Record<string, unknown> {
    return { ...super.getConfig(), target_shape: [...this.targetShape] };
  }

  /**
   * Rebuilds the layer from a Keras config (`{ target_shape }`).
   * @example
   * ```ts
   * Reshape.fromConfig({ target_shape: [8, 4] });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): Reshape {
    const c = checkLayerConfig(config, 'Reshape');
    return new Reshape({ ...layerOptionsFromConfig(c), targetShape: c.target_shape as number[] });
  }
}

/** Options of {@link Flatten}. */
export interface FlattenOptions extends LayerOptions {
  /** `'channels_last'` (default) or `'channels_first'` (axis 1 moves last before flattening, as Keras). */
  dataFormat?: 'channels_last' | 'channels_first' | null;
}

/**
 * Flattens every sample to one dimension (Keras `keras.layers.Flatten`).
 * @example
 * ```ts
 * const y = await new Flatten().apply(x); // [batch, prod(rest)]
 * ```
 */
export class Flatten extends StatelessLayer {
  readonly dataFormat: 'channels_last' | 'channels_first';

  constructor(options: FlattenOptions = {}) {
    super(options);
    const f = options.dataFormat ?? 'channels_last';
    if (f !== 'channels_last' && f !== 'channels_first') {
      throw new InvalidArgumentError(`Expected 'channels_last' or 'channels_first' for dataFormat but received ${describe(f)}`);
    }
    this.dataFormat = f;
  }

  async call(inputs: Tensor | Tensor[]): Promise<Tensor> {
    const x = Array.isArray(inputs) && inputs.length === 1 ? inputs[0] : inputs;
    if (!(x instanceof Tensor) || x.rank < 1) throw new InvalidArgumentError(`Expected one Tensor of rank >= 1 for inputs of layer '${this.name}' but received ${describe(x)}`);
    const per = x.shape.slice(1).reduce((p, q) => p * q, 1);
    if (this.dataFormat === 'channels_first' && x.rank >= 3) {
      // [N, C, rest] -> [N, rest, C]
      const f = asFloat(x).data;
      const [N, C] = x.shape;
      const R = per / C;
      const out = new Float32Array(f.length);
      for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let r = 0; r < R; r++) out[(n * R + r) * C + c] = f[(n * C + c) * R + r];
      return new Tensor('float32', [N, per], out);
    }
    return x.reshape([x.shape[0], per]);
  }

  override getConfig(): Record<string, unknown> {
    return { ...super.getConfig(), data_format: this.dataFormat };
  }

  /**
   * Rebuilds the layer from a Keras config (`{ data_format }`).
   * @example
   * ```ts
   * Flatten.fromConfig({ data_format: 'channels_last' });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): Flatten {
    const c = checkLayerConfig(config, 'Flatten');
    return new Flatten({ ...layerOptionsFromConfig(c), dataFormat: (c.data_format ?? null) as 'channels_last' | null });
  }
}

/**
 * Returns its input (Keras `keras.layers.Identity`).
 * @example
 * ```ts
 * const y = await new Identity().apply(x); // y is x
 * ```
 */
export class Identity extends StatelessLayer {
  async call(inputs: Tensor | Tensor[]): Promise<Tensor> {
    if (Array.isArray(inputs)) {
      if (inputs.length !== 1) throw new InvalidArgumentError(`Expected one Tensor for inputs of layer '${this.name}' but received ${describe(inputs)}`);
      return inputs[0];
    }
    return inputs;
  }

  /**
   * Rebuilds the layer from a Keras config.
   * @example
   * ```ts
   * Identity.fromConfig({ name: 'id' });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): Identity {
    return new Identity(layerOptionsFromConfig(checkLayerConfig(config, 'Identity')));
  }
}

/** Options of {@link GlobalAveragePooling1D}. */
export interface GlobalPooling1DOptions extends LayerOptions {
  /** `'channels_last'` (`[batch, steps, features]`, default) or `'channels_first'` (`[batch, features, steps]`). */
  dataFormat?: 'channels_last' | 'channels_first' | null;
  /** Keep the pooled axis with size 1 (default false). */
  keepdims?: boolean;
}

/**
 * Averages over the steps axis of `[batch, steps, features]` (Keras `keras.layers.GlobalAveragePooling1D`).
 * @example
 * ```ts
 * const y = await new GlobalAveragePooling1D().apply(x); // [batch, features]
 * ```
 */
export class GlobalAveragePooling1D extends StatelessLayer {
  readonly dataFormat: 'channels_last' | 'channels_first';
  readonly keepdims: boolean;

  constructor(options: GlobalPooling1DOptions = {}) {
    super(options);
    const f = options.dataFormat ?? 'channels_last';
    if (f !== 'channels_last' && f !== 'channels_first') {
      throw new InvalidArgumentError(`Expected 'channels_last' or 'channels_first' for dataFormat but received ${describe(f)}`);
    }
    this.dataFormat = f;
    this.keepdims = options.keepdims ?? false;
  }

  async call(inputs: Tensor | Tensor[]): Promise<Tensor> {
    const x = this.single(inputs);
    if (x.rank !== 3) throw new InvalidArgumentError(`Expected a rank-3 Tensor for inputs of layer '${this.name}' but received shape [${x.shape.join(', ')}]`);
    const [N, A, B] = x.shape;
    const first = this.dataFormat === 'channels_first';
    const [steps, feats] = first ? [B, A] : [A, B];
    const f = x.data;
    const out = new Float32Array(N * feats);
    for (let n = 0; n < N; n++) {
      for (let c = 0; c < feats; c++) {
        let s = 0;
        for (let t = 0; t < steps; t++) s += first ? f[(n * feats + c) * steps + t] : f[(n * steps + t) * feats + c];
        out[n * feats + c] = steps > 0 ? s / steps : 0;
      }
    }
    const shape = this.keepdims ? (first ? [N, feats, 1] : [N, 1, feats]) : [N, feats];
    return new Tensor('float32', shape, out);
  }

  override getConfig(): Record<string, unknown> {
    return { ...super.getConfig(), data_format: this.dataFormat, keepdims: this.keepdims };
  }

  /**
   * Rebuilds the layer from a Keras config (`{ data_format, keepdims }`).
   * @example
   * ```ts
   * GlobalAveragePooling1D.fromConfig({ data_format: 'channels_last', keepdims: false });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): GlobalAveragePooling1D {
    const c = checkLayerConfig(config, 'GlobalAveragePooling1D');
    return new GlobalAveragePooling1D({
      ...layerOptionsFromConfig(c),
      dataFormat: (c.data_format ?? null) as 'channels_last' | null,
      keepdims: c.keepdims === true,
    });
  }
}
