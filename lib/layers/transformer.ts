/**
 * `TransformerEncoder`: a pre- or post-norm transformer block (self-attention + feed-forward, each with a
 * residual), built like KerasHub's `keras_hub.layers.TransformerEncoder` (same sub-layer names, attribute names
 * and config keys), and quantizable through its `Dense`/`EinsumDense` sub-layers.
 * @packageDocumentation
 */
import { InvalidArgumentError, ShapeMismatchError } from '../errors';
import { Tensor, describe } from '../tensor';
import { ActivationName, checkActivation } from './activations';
import { AttentionCallOptions, CompositeLayer, MultiHeadAttention } from './attention';
import { activationFromConfig, checkLayerConfig, deserializeInitializer, Dropout, layerOptionsFromConfig, serializeInitializer } from './core-layers';
import { Dense } from './dense';
import type { Initializer } from './initializers';
import { Layer, LayerOptions } from './layer';
import { LayerNormalization } from './normalization';

/** Options of {@link TransformerEncoder}. */
export interface TransformerEncoderOptions extends LayerOptions {
  /** Hidden size of the feed-forward network. */
  intermediateDim: number;
  /** Attention heads; the head size is `floor(features / numHeads)`. */
  numHeads: number;
  /** Dropout rate (a no-op at inference; kept for the config). Default 0. */
  dropout?: number;
  /** Activation of the first feed-forward Dense (default relu). */
  activation?: ActivationName;
  /** Epsilon of both layer norms (default 1e-5). */
  layerNormEpsilon?: number;
  kernelInitializer?: Initializer;
  biasInitializer?: Initializer;
  /** Pre-norm (GPT-2 style) when true; post-norm (BERT style, the default) when false. */
  normalizeFirst?: boolean;
  /** Seed for the sub-layers' initializers. */
  seed?: number;
}

/** Call options of {@link TransformerEncoder}. */
export interface TransformerEncoderCallOptions {
  /** `[B, S]` boolean-like: non-zero for real tokens, 0 for padding. */
  paddingMask?: Tensor | null;
  /** `[B, S, S]` boolean-like custom mask (combined with the padding mask). */
  attentionMask?: Tensor | null;
  /** Causal self-attention (a quantkit extension: KerasHub's encoder has no causal option). */
  useCausalMask?: boolean;
  training?: boolean;
}

/**
 * A transformer block. Post-norm (default): `x = LN(x + MHA(x)); x = LN(x + FFN(x))`. Pre-norm
 * (`normalizeFirst`): `x = x + MHA(LN(x)); x = x + FFN(LN(x))`. FFN = `Dense(intermediateDim, activation)` then
 * `Dense(features)`. Sub-layers (KerasHub names): `self_attention_layer` (MultiHeadAttention),
 * `self_attention_layer_norm`, `self_attention_dropout`, `feedforward_layer_norm`,
 * `feedforward_intermediate_dense`, `feedforward_output_dense`, `feedforward_dropout`.
 *
 * @example
 * ```ts
 * const block = new TransformerEncoder({ intermediateDim: 128, numHeads: 4, normalizeFirst: true, name: 'block' });
 * const y = await block.apply(x, { paddingMask });          // x: [batch, seq, 64]
 * await block.quantize('int8');                               // attention projections and both FFN Dense layers
 * ```
 */
export class TransformerEncoder extends CompositeLayer {
  readonly intermediateDim: number;
  readonly numHeads: number;
  readonly dropout: number;
  readonly activation: ActivationName;
  readonly layerNormEpsilon: number;
  readonly normalizeFirst: boolean;
  private readonly kernelInitializer: Initializer;
  private readonly biasInitializer: Initializer;
  private readonly seed?: number;
  private parts: {
    attention: MultiHeadAttention;
    attentionNorm: LayerNormalization;
    attentionDropout: Dropout;
    ffnNorm: LayerNormalization;
    intermediate: Dense;
    output: Dense;
    ffnDropout: Dropout;
  } | null = null;
  private hidden = -1;

  constructor(options: TransformerEncoderOptions) {
    super(options);
    for (const k of ['intermediateDim', 'numHeads'] as const) {
      if (!options || !Number.isSafeInteger(options[k]) || options[k] <= 0) {
        throw new InvalidArgumentError(`Expected a positive integer for ${k} but received ${describe(options?.[k])}`);
      }
    }
    this.intermediateDim = options.intermediateDim;
    this.numHeads = options.numHeads;
    const rate = options.dropout ?? 0;
    if (typeof rate !== 'number' || !(rate >= 0 && rate < 1)) throw new InvalidArgumentError(`Expected a number in [0, 1) for dropout but received ${describe(rate)}`);
    this.dropout = rate;
    this.activation = checkActivation(options.activation ?? 'relu');
    const eps = options.layerNormEpsilon ?? 1e-5;
    if (typeof eps !== 'number' || !(eps >= 0)) throw new InvalidArgumentError(`Expected a non-negative number for layerNormEpsilon but received ${describe(eps)}`);
    this.layerNormEpsilon = eps;
    this.normalizeFirst = options.normalizeFirst ?? false;
    this.kernelInitializer = options.kernelInitializer ?? 'glorot_uniform';
    this.biasInitializer = options.biasInitializer ?? 'zeros';
    this.seed = options.seed;
  }

  build(inputShape: readonly (number | null)[]): void {
    if (!Array.isArray(inputShape) || inputShape.length !== 3 || inputShape.some((d) => Array.isArray(d))) {
      throw new InvalidArgumentError(`Expected one [batch, seq, features] input shape for layer '${this.name}' but received ${describe(inputShape)}`);
    }
    const hidden = inputShape[2];
    if (hidden === null || !(hidden >= 1)) throw new InvalidArgumentError(`Expected a known features dimension for layer '${this.name}' but received [${inputShape.join(', ')}]`);
    const keyDim = Math.floor(hidden / this.numHeads);
    if (keyDim === 0) {
      throw new InvalidArgumentError(
        `Expected numHeads <= features (${hidden}) for numHeads but received ${this.numHeads}: Attention \`key_dim\` computed cannot be zero. The \`hidden_dim\` value of ${hidden} has to be equal to or greater than \`num_heads\` value of ${this.numHeads}.`,
      );
    }
    this.hidden = hidden;
    const seed = (i: number) => (this.seed === undefined ? {} : { seed: this.seed + 16 * i });
    const init = { kernelInitializer: this.kernelInitializer, biasInitializer: this.biasInitializer };
    const dtype = this._policy;
    const attention = this.adopt(
      new MultiHeadAttention({ name: 'self_attention_layer', numHeads: this.numHeads, keyDim, dropout: this.dropout, dtype, ...init, ...(this.seed === undefined ? {} : { seed: this.seed }) }),
    );
    attention.build([inputShape, inputShape]);
    const attentionNorm = this.adopt(new LayerNormalization({ name: 'self_attention_layer_norm', epsilon: this.layerNormEpsilon, dtype }));
    attentionNorm.build(inputShape);
    const attentionDropout = this.adopt(new Dropout({ name: 'self_attention_dropout', rate: this.dropout, dtype }));
    attentionDropout.build(inputShape);
    const ffnNorm = this.adopt(new LayerNormalization({ name: 'feedforward_layer_norm', epsilon: this.layerNormEpsilon, dtype }));
    ffnNorm.build(inputShape);
    const intermediate = this.adopt(new Dense({ name: 'feedforward_intermediate_dense', units: this.intermediateDim, activation: this.activation, dtype, ...init, ...seed(1) }));
    intermediate.build(inputShape);
    const output = this.adopt(new Dense({ name: 'feedforward_output_dense', units: hidden, dtype, ...init, ...seed(2) }));
    output.build([inputShape[0], inputShape[1], this.intermediateDim]);
    const ffnDropout = this.adopt(new Dropout({ name: 'feedforward_dropout', rate: this.dropout, dtype }));
    ffnDropout.build(inputShape);
    this.parts = { attention, attentionNorm, attentionDropout, ffnNorm, intermediate, output, ffnDropout };
    this.built = true;
    this.markQuantizedFromChildren();
  }

  protected children(): Array<[string, Layer]> {
    const p = this.parts;
    if (!p) return [];
    return [
      ['_self_attention_layer', p.attention],
      ['_self_attention_layer_norm', p.attentionNorm],
      ['_self_attention_dropout', p.attentionDropout],
      ['_feedforward_layer_norm', p.ffnNorm],
      ['_feedforward_intermediate_dense', p.intermediate],
      ['_feedforward_output_dense', p.output],
      ['_feedforward_dropout', p.ffnDropout],
    ];
  }

  /** The self-attention sub-layer (built). */
  get attention(): MultiHeadAttention {
    if (!this.parts) throw new InvalidArgumentError(`Expected a built layer for '${this.name}' but received an unbuilt one`);
    return this.parts.attention;
  }

  async call(inputs: Tensor | Tensor[], options: TransformerEncoderCallOptions = {}): Promise<Tensor<'float32'>> {
    const p = this.parts;
    if (!p) throw new InvalidArgumentError(`Expected a built layer for '${this.name}' but received an unbuilt one`);
    const t = Array.isArray(inputs) ? (inputs.length === 1 ? inputs[0] : null) : inputs;
    if (!(t instanceof Tensor)) throw new InvalidArgumentError(`Expected one Tensor for inputs of layer '${this.name}' but received ${describe(inputs)}`);
    const x0 = CompositeLayer.f32(t);
    if (x0.rank !== 3 || x0.shape[2] !== this.hidden) {
      throw new ShapeMismatchError(`Expected a [batch, seq, ${this.hidden}] tensor for inputs of layer '${this.name}' but received shape [${x0.shape.join(', ')}]`);
    }
    const attnOptions: AttentionCallOptions = { attentionMask: this.mergeMasks(x0, options), useCausalMask: options.useCausalMask ?? false };
    const add = (a: Tensor<'float32'>, b: Tensor<'float32'>) => {
      const out = new Float32Array(a.data.length);
      for (let i = 0; i < out.length; i++) out[i] = a.data[i] + b.data[i];
      return new Tensor('float32', a.shape, out);
    };
    let x = x0;
    let residual = x;
    if (this.normalizeFirst) x = (await p.attentionNorm.apply(x)) as Tensor<'float32'>;
    x = (await p.attention.apply([x, x], attnOptions as Record<string, unknown>)) as Tensor<'float32'>;
    x = add(CompositeLayer.f32(await p.attentionDropout.apply(x)), residual);
    if (!this.normalizeFirst) x = (await p.attentionNorm.apply(x)) as Tensor<'float32'>;
    residual = x;
    if (this.normalizeFirst) x = (await p.ffnNorm.apply(x)) as Tensor<'float32'>;
    x = (await p.intermediate.apply(x)) as Tensor<'float32'>;
    x = (await p.output.apply(x)) as Tensor<'float32'>;
    x = add(CompositeLayer.f32(await p.ffnDropout.apply(x)), residual);
    if (!this.normalizeFirst) x = (await p.ffnNorm.apply(x)) as Tensor<'float32'>;
    return x;
  }

  /** KerasHub `merge_padding_and_attention_mask`: padding `[B, S]` -> `[B, 1, S]`, min with the attention mask. */
  private mergeMasks(x: Tensor, options: TransformerEncoderCallOptions): Tensor | null {
    const [B, S] = x.shape;
    const pm = options.paddingMask ?? null;
    const am = options.attentionMask ?? null;
    if (pm !== null && (!(pm instanceof Tensor) || pm.rank !== 2 || pm.shape[0] !== B || pm.shape[1] !== S)) {
      throw new ShapeMismatchError(`Expected a [${B}, ${S}] tensor for paddingMask but received ${pm instanceof Tensor ? `shape [${pm.shape.join(', ')}]` : describe(pm)}`);
    }
    if (am !== null && (!(am instanceof Tensor) || am.rank !== 3 || am.shape[0] !== B || am.shape[1] !== S || am.shape[2] !== S)) {
      throw new ShapeMismatchError(`Expected a [${B}, ${S}, ${S}] tensor for attentionMask but received ${am instanceof Tensor ? `shape [${am.shape.join(', ')}]` : describe(am)}`);
    }
    if (pm === null) return am;
    const pd = pm.toFloat32().data;
    const out = new Uint8Array(B * S * S);
    const ad = am ? am.toFloat32().data : null;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < S; t++) {
        for (let s = 0; s < S; s++) {
          const o = (b * S + t) * S + s;
          out[o] = pd[b * S + s] !== 0 && (!ad || ad[o] !== 0) ? 1 : 0;
        }
      }
    }
    return new Tensor('uint8', [B, S, S], out);
  }

  override getConfig(): Record<string, unknown> {
    return {
      ...super.getConfig(),
      intermediate_dim: this.intermediateDim,
      num_heads: this.numHeads,
      dropout: this.dropout,
      activation: this.activation,
      layer_norm_epsilon: this.layerNormEpsilon,
      kernel_initializer: serializeInitializer(this.kernelInitializer, this.seed ?? null),
      bias_initializer: serializeInitializer(this.biasInitializer),
      kernel_regularizer: null,
      bias_regularizer: null,
      activity_regularizer: null,
      normalize_first: this.normalizeFirst,
    };
  }

  /**
   * Rebuilds the layer from a KerasHub config (`intermediate_dim`, `num_heads`, `dropout`, `activation`,
   * `layer_norm_epsilon`, initializers, `normalize_first`, `dtype`).
   * @example
   * ```ts
   * TransformerEncoder.fromConfig({ name: 'block', intermediate_dim: 128, num_heads: 4, normalize_first: true });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): TransformerEncoder {
    const c = checkLayerConfig(config, 'TransformerEncoder');
    const k = deserializeInitializer(c.kernel_initializer, 'config.kernel_initializer');
    return new TransformerEncoder({
      ...layerOptionsFromConfig(c),
      intermediateDim: c.intermediate_dim as number,
      numHeads: c.num_heads as number,
      dropout: (c.dropout ?? 0) as number,
      activation: activationFromConfig(c.activation ?? 'relu'),
      layerNormEpsilon: (c.layer_norm_epsilon ?? 1e-5) as number,
      kernelInitializer: k.init,
      biasInitializer: deserializeInitializer(c.bias_initializer, 'config.bias_initializer').init,
      normalizeFirst: (c.normalize_first ?? false) as boolean,
      ...(k.seed === undefined ? {} : { seed: k.seed }),
    });
  }
}
