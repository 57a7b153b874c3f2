/**
 * `LayerNormalization` and `RMSNormalization` with Keras's variables (`gamma`/`beta`, `scale`), configs and
 * formulas. They are not quantized (as in Keras); a quantized policy passed down by a parent runs them in float.
 * @packageDocumentation
 */
import { InvalidArgumentError, ShapeMismatchError } from '../errors';
import { Tensor, describe } from '../tensor';
import {
  checkLayerConfig,
  deserializeInitializer,
  layerOptionsFromConfig,
  normalizeAxes,
  reductionIndex,
  serializeInitializer,
} from './core-layers';
import { initialize, Initializer } from './initializers';
import { Layer, LayerOptions } from './layer';
import { Variable } from './variable';

function checkAxisArg(axis: unknown): number | number[] {
  if (Number.isInteger(axis)) return axis as number;
  if (Array.isArray(axis) && axis.length > 0 && axis.every((a) => Number.isInteger(a))) return [...axis];
  throw new InvalidArgumentError(`Expected an integer or a non-empty list of integers for axis but received ${describe(axis)}`);
}

function checkEpsilon(eps: unknown): number {
  if (typeof eps !== 'number' || !(eps >= 0) || !Number.isFinite(eps)) {
    throw new InvalidArgumentError(`Expected a non-negative number for epsilon but received ${describe(eps)}`);
  }
  return eps;
}

/** Resolves `axis` for `inputShape` and returns the sorted axes and the parameter shape. */
function paramShape(layer: Layer, axis: number | readonly number[], inputShape: readonly (number | null)[]): { axes: number[]; shape: number[] } {
  if (!Array.isArray(inputShape) || inputShape.some((d) => Array.isArray(d))) {
    throw new InvalidArgumentError(`Expected one input shape for layer '${layer.name}' but received ${describe(inputShape)}`);
  }
  const axes = normalizeAxes(axis, inputShape.length);
  const shape = axes.map((a) => inputShape[a]);
  if (shape.some((d) => d === null || d === undefined || !(d >= 1))) {
    throw new InvalidArgumentError(`Expected known sizes on the normalized axes [${axes.join(', ')}] for layer '${layer.name}' but received input shape [${inputShape.join(', ')}]`);
  }
  return { axes, shape: shape as number[] };
}

function checkInput(layer: Layer, inputs: Tensor | Tensor[], axes: readonly number[], shape: readonly number[]): Tensor<'float32'> {
  const t = Array.isArray(inputs) ? (inputs.length === 1 ? inputs[0] : null) : inputs;
  if (!(t instanceof Tensor)) throw new InvalidArgumentError(`Expected one Tensor for inputs of layer '${layer.name}' but received ${describe(inputs)}`);
  const x = t.dtype === 'float32' ? (t as Tensor<'float32'>) : t.toFloat32();
  if (axes.some((a, i) => a >= x.rank || x.shape[a] !== shape[i])) {
    throw new ShapeMismatchError(
      `Expected inputs with sizes [${shape.join(', ')}] on axes [${axes.join(', ')}] for layer '${layer.name}' but received shape [${x.shape.join(', ')}]`,
    );
  }
  return x;
}

/** Options of {@link LayerNormalization}. */
export interface LayerNormalizationOptions extends LayerOptions {
  /** Axis or axes normalized over (default -1). */
  axis?: number | readonly number[];
  /** Added to the variance (default 1e-3, Keras's default). */
  epsilon?: number;
  /** Add the learned offset `beta` (default true). */
  center?: boolean;
  /** Multiply by the learned `gamma` (default true). */
  scale?: boolean;
  /** Keras's deprecated `rms_scaling`: `x * rsqrt(var(x) + eps) * gamma` (no centering, no beta). */
  rmsScaling?: boolean;
  betaInitializer?: Initializer;
  gammaInitializer?: Initializer;
}

/**
 * Layer normalization (Keras `keras.layers.LayerNormalization`):
 * `y = (x - mean) * rsqrt(var + epsilon) * gamma + beta` with mean and (population) variance over `axis`.
 * Variables, in Keras's order: `gamma` (when `scale`), `beta` (when `center`), shaped like the normalized axes.
 * @example
 * ```ts
 * const ln = new LayerNormalization({ epsilon: 1e-5 });
 * const y = await ln.apply(x);   // x: [batch, seq, dim]; gamma, beta: [dim]
 * ```
 */
export class LayerNormalization extends Layer {
  axis: number | readonly number[];
  readonly epsilon: number;
  readonly center: boolean;
  readonly scale: boolean;
  readonly rmsScaling: boolean;
  private readonly betaInitializer: Initializer;
  private readonly gammaInitializer: Initializer;
  gamma: Variable<'float32'> | null = null;
  beta: Variable<'float32'> | null = null;
  private axes: number[] = [];
  private pShape: number[] = [];

  constructor(options: LayerNormalizationOptions = {}) {
    super(options);
    this.axis = checkAxisArg(options.axis ?? -1);
    this.epsilon = checkEpsilon(options.epsilon ?? 1e-3);
    this.center = options.center ?? true;
    this.scale = options.scale ?? true;
    this.rmsScaling = options.rmsScaling ?? false;
    this.betaInitializer = options.betaInitializer ?? 'zeros';
    this.gammaInitializer = options.gammaInitializer ?? 'ones';
  }

  build(inputShape: readonly (number | null)[]): void {
    const { axes, shape } = paramShape(this, this.axis, inputShape);
    this.axes = axes;
    this.pShape = shape;
    this.axis = [...axes];
    if (this.scale || this.rmsScaling) this.gamma = this.addWeight('gamma', initialize(this.gammaInitializer, shape));
    if (this.center && !this.rmsScaling) this.beta = this.addWeight('beta', initialize(this.betaInitializer, shape));
    this.built = true;
  }

  async call(inputs: Tensor | Tensor[]): Promise<Tensor<'float32'>> {
    const x = checkInput(this, inputs, this.axes, this.pShape);
    const { group, param, groups, groupSize } = reductionIndex(x.shape, this.axes);
    const d = x.data;
    const mean = new Float64Array(groups);
    for (let i = 0; i < d.length; i++) mean[group[i]] += d[i];
    for (let g = 0; g < groups; g++) mean[g] /= groupSize;
    const variance = new Float64Array(groups);
    for (let i = 0; i < d.length; i++) {
      const c = d[i] - mean[group[i]];
      variance[group[i]] += c * c;
    }
    const inv = new Float64Array(groups);
    for (let g = 0; g < groups; g++) inv[g] = 1 / Math.sqrt(variance[g] / groupSize + this.epsilon);
    const gamma = this.gamma?.value.data ?? null;
    const beta = this.beta?.value.data ?? null;
    const out = new Float32Array(d.length);
    for (let i = 0; i < d.length; i++) {
      const g = group[i];
      let y = this.rmsScaling ? d[i] * inv[g] : (d[i] - mean[g]) * inv[g];
      if (gamma) y *= gamma[param[i]];
      if (beta) y += beta[param[i]];
      out[i] = y;
    }
    return new Tensor('float32', x.shape, out);
  }

  protected override quantizedCall(inputs: Tensor | Tensor[]): Promise<Tensor> {
    return this.call(inputs);
  }

  override getConfig(): Record<string, unknown> {
    return {
      ...super.getConfig(),
      axis: Array.isArray(this.axis) ? [...this.axis] : this.axis,
      epsilon: this.epsilon,
      center: this.center,
      scale: this.scale,
      rms_scaling: this.rmsScaling,
      beta_initializer: serializeInitializer(this.betaInitializer),
      gamma_initializer: serializeInitializer(this.gammaInitializer),
      beta_regularizer: null,
      gamma_regularizer: null,
      beta_constraint: null,
      gamma_constraint: null,
    };
  }

  /**
   * Rebuilds the layer from a Keras config (`axis`, `epsilon`, `center`, `scale`, `rms_scaling`, initializers;
   * regularizers and constraints only matter for training and are ignored).
   * @example
   * ```ts
   * LayerNormalization.fromConfig({ name: 'ln', axis: [2], epsilon: 0.001, center: true, scale: true });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): LayerNormalization {
    const c = checkLayerConfig(config, 'LayerNormalization');
    return new LayerNormalization({
      ...layerOptionsFromConfig(c),
      axis: (c.axis ?? -1) as number | number[],
      epsilon: (c.epsilon ?? 1e-3) as number,
      center: (c.center ?? true) as boolean,
      scale: (c.scale ?? true) as boolean,
      rmsScaling: (c.rms_scaling ?? false) as boolean,
      betaInitializer: deserializeInitializer(c.beta_initializer, 'config.beta_initializer').init,
      gammaInitializer: deserializeInitializer(c.gamma_initializer, 'config.gamma_initializer').init,
    });
  }
}

/** Options of {@link RMSNormalization}. */
export interface RMSNormalizationOptions extends LayerOptions {
  /** Axis or axes normalized over (default -1). */
  axis?: number | readonly number[];
  /** Added to the mean square (default 1e-6, Keras's default). */
  epsilon?: number;
}

/**
 * Root-mean-square normalization (Keras `keras.layers.RMSNormalization`):
 * `y = x * rsqrt(mean(x^2) + epsilon) * scale`. One variable, `scale` (initialized to ones).
 * @example
 * ```ts
 * const norm = new RMSNormalization({ epsilon: 1e-6 });
 * const y = await norm.apply(x);
 * ```
 */
export class RMSNormalization extends Layer {
  axis: number | readonly number[];
  readonly epsilon: number;
  /** The learned scale (named `scale`, as in Keras). */
  scale: Variable<'float32'> | null = null;
  private axes: number[] = [];
  private pShape: number[] = [];

  constructor(options: RMSNormalizationOptions = {}) {
    super(options);
    this.axis = checkAxisArg(options.axis ?? -1);
    this.epsilon = checkEpsilon(options.epsilon ?? 1e-6);
  }

  build(inputShape: readonly (number | null)[]): void {
    const { axes, shape } = paramShape(this, this.axis, inputShape);
    this.axes = axes;
    this.pShape = shape;
    // Keras keeps an integer axis as a one-element list after build
    this.axis = Array.isArray(this.axis) ? [...(this.axis as number[])].sort((a, b) => a - b) : [this.axis as number];
    this.scale = this.addWeight('scale', initialize('ones', shape));
    this.built = true;
  }

  async call(inputs: Tensor | Tensor[]): Promise<Tensor<'float32'>> {
    const x = checkInput(this, inputs, this.axes, this.pShape);
    const { group, param, groups, groupSize } = reductionIndex(x.shape, this.axes);
    const d = x.data;
    const ms = new Float64Array(groups);
    for (let i = 0; i < d.length; i++) ms[group[i]] += d[i] * d[i];
    const inv = new Float64Array(groups);
    for (let g = 0; g < groups; g++) inv[g] = 1 / Math.sqrt(ms[g] / groupSize + this.epsilon);
    const s = (this.scale as Variable<'float32'>).value.data;
    const out = new Float32Array(d.length);
    for (let i = 0; i < d.length; i++) out[i] = d[i] * inv[group[i]] * s[param[i]];
    return new Tensor('float32', x.shape, out);
  }

  protected override quantizedCall(inputs: Tensor | Tensor[]): Promise<Tensor> {
    return this.call(inputs);
  }

  override getConfig(): Record<string, unknown> {
    return { ...super.getConfig(), axis: Array.isArray(this.axis) ? [...this.axis] : this.axis, epsilon: this.epsilon };
  }

  /**
   * Rebuilds the layer from a Keras config (`{ axis, epsilon }`).
   * @example
   * ```ts
   * RMSNormalization.fromConfig({ name: 'norm', axis: -1, epsilon: 1e-6 });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): RMSNormalization {
    const c = checkLayerConfig(config, 'RMSNormalization');
    return new RMSNormalization({ ...layerOptionsFromConfig(c), axis: (c.axis ?? -1) as number | number[], epsilon: (c.epsilon ?? 1e-6) as number });
  }
}
