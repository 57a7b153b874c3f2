/**
 * `Embedding` and `ReversibleEmbedding` (token embedding with an optional tied or untied output projection),
 * float, int8 and int4 (per-channel or grouped), in the Keras storage layouts (spec §2.7).
 * @packageDocumentation
 */
import { InvalidArgumentError, ShapeMismatchError, UnsupportedError } from '../errors';
import { ResidentProjection } from '../cuda/resident';
import { denseForward } from '../ops/dense';
import { packInt4, unpackInt4 } from '../ops/pack';
import { Int4DTypePolicy } from '../dtype-policies';
import {
  AbsMaxQuantizer,
  absMaxQuantizeGroupedWithZeroPoint,
  Int4QuantizationConfig,
  QuantizationConfig,
  QuantizationMode,
  Quantizer,
} from '../quantizers';
import { Tensor, describe } from '../tensor';
import { blockSizeFor, emptyQuantState, projectQuantized, QuantState, quantizeKernel2D } from './dense-core';
import {
  checkLayerConfig,
  deserializeInitializer,
  layerOptionsFromConfig,
  quantizationConfigFromConfig,
  serializeInitializer,
  serializeQuantizationConfig,
} from './core-layers';
import { residentSourceOf, ResidentSlot } from './device-core';
import { initialize, Initializer } from './initializers';
import { Layer, LayerOptions } from './layer';
import { Variable } from './variable';

/** Options of {@link Embedding}. */
export interface EmbeddingOptions extends LayerOptions {
  /** Vocabulary size. */
  inputDim: number;
  /** Embedding size. */
  outputDim: number;
  /** default 'uniform' (Keras). */
  embeddingsInitializer?: Initializer;
  seed?: number;
}

/** Quantized embedding table (rows = vocabulary). */
type TableState =
  | { mode: 'int8'; table: Tensor<'int8'>; scale: Tensor<'float32'> }
  | { mode: 'int4'; blockSize: null; table: Tensor<'int8'>; scale: Tensor<'float32'> }
  | { mode: 'int4'; blockSize: number; table: Tensor<'int8'>; scale: Tensor<'float32'>; zero: Tensor<'int8'>; gIdx: Tensor<'float32'> };

function transpose2D<T extends Float32Array | Int8Array>(data: T, rows: number, cols: number): T {
  const out = new (data.constructor as new (n: number) => T)(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  return out;
}

/**
 * Maps integer ids to vectors.
 * @example
 * ```ts
 * const emb = new Embedding({ inputDim: 1000, outputDim: 64 });
 * const v = await emb.apply(tensor(new Int32Array([1, 5, 9]), [1, 3], 'int32'));   // [1, 3, 64]
 * await emb.quantize('int8');                                                          // one scale per vocabulary row
 * ```
 */
export class Embedding extends Layer {
  readonly inputDim: number;
  readonly outputDim: number;
  protected readonly embeddingsInitializer: Initializer;
  protected readonly seed?: number;
  /** The float table `[vocab, dim]` (float mode). */
  embeddings: Variable<'float32'> | null = null;
  protected tstate: TableState | null = null;

  constructor(options: EmbeddingOptions) {
    super(options);
    for (const k of ['inputDim', 'outputDim'] as const) {
      if (!options || !Number.isSafeInteger(options[k]) || options[k] <= 0) {
        throw new InvalidArgumentError(`Expected a positive integer for ${k} but received ${describe(options?.[k])}`);
      }
    }
    this.inputDim = options.inputDim;
    this.outputDim = options.outputDim;
    this.embeddingsInitializer = options.embeddingsInitializer ?? 'uniform';
    this.seed = options.seed;
  }

  build(_inputShape?: unknown): void {
    const mode = this.quantizationMode;
    if (mode !== null) {
      this.quantizedBuild(mode);
    } else {
      this.embeddings = this.addWeight('embeddings', initialize(this.embeddingsInitializer, [this.inputDim, this.outputDim], this.seed));
      this.buildExtra();
    }
    this.built = true;
  }

  /** Hook for subclasses (untied reverse weights). */
  protected buildExtra(): void {}

  protected quantizedBuild(mode: QuantizationMode): void {
    if (mode !== 'int8' && mode !== 'int4') throw this.embeddingModeError(mode);
    const policy = this.effectivePolicy;
    const block = mode === 'int4' ? blockSizeFor(this.quantizationConfig, policy instanceof Int4DTypePolicy ? policy.blockSize : null) : null;
    const [V, D] = [this.inputDim, this.outputDim];
    let st: TableState;
    if (mode === 'int8') st = { mode, table: new Tensor('int8', [V, D]), scale: new Tensor('float32', [V], new Float32Array(V).fill(1)) };
    else if (block === null) st = { mode, blockSize: null, table: new Tensor('int8', [V, Math.ceil(D / 2)]), scale: new Tensor('float32', [V], new Float32Array(V).fill(1)) };
    else {
      const G = Math.ceil(D / block);
      const g = new Float32Array(D);
      for (let i = 0; i < D; i++) g[i] = Math.floor(i / block);
      st = { mode, blockSize: block, table: new Tensor('int8', [V, Math.ceil(D / 2)]), scale: new Tensor('float32', [V, G], new Float32Array(V * G).fill(1)), zero: new Tensor('int8', [V, G]), gIdx: new Tensor('float32', [D], g) };
    }
    this.installTable(st);
    this.quantizedBuildExtra(mode, block);
    this._isQuantized = true;
  }

  /** Hook for subclasses. */
  protected quantizedBuildExtra(_mode: 'int8' | 'int4', _block: number | null): void {}

  protected embeddingModeError(mode: string): UnsupportedError {
    return new UnsupportedError(`Invalid quantization mode. Expected one of ('int8', 'int4'). Received: quantization_mode=${mode}`);
  }

  /** After loading: rebuild the quantized table from the (replaced) variables. */
  protected override releaseState(): void {
    this.tstate = null;
  }

  protected override afterLoad(): void {
    const st = this.tstate;
    if (!st) return;
    const get = (name: string) => (this._variables.find((v) => v.name === name) as Variable).value;
    if (st.mode === 'int8') this.tstate = { mode: 'int8', table: get('embeddings') as Tensor<'int8'>, scale: get('embeddings_scale') as Tensor<'float32'> };
    else if (st.blockSize === null) this.tstate = { mode: 'int4', blockSize: null, table: get('embeddings') as Tensor<'int8'>, scale: get('embeddings_scale') as Tensor<'float32'> };
    else {
      this.tstate = {
        mode: 'int4',
        blockSize: st.blockSize,
        table: get('embeddings') as Tensor<'int8'>,
        scale: get('embeddings_scale') as Tensor<'float32'>,
        zero: get('embeddings_zero') as Tensor<'int8'>,
        gIdx: get('g_idx') as Tensor<'float32'>,
      };
    }
  }

  protected installTable(st: TableState, extra: Variable[] = []): void {
    const nt = { trainable: false };
    const vars: Variable[] = [new Variable('embeddings', st.table, nt), new Variable('embeddings_scale', st.scale, nt)];
    if (st.mode === 'int4' && st.blockSize !== null) vars.push(new Variable('embeddings_zero', st.zero, nt), new Variable('g_idx', st.gIdx, nt));
    this.setVariables([...vars, ...extra]);
    this.tstate = st;
    this.embeddings = null;
  }

  /** Quantizes the table (shared by ReversibleEmbedding). */
  protected async quantizeTable(mode: 'int8' | 'int4', block: number | null): Promise<TableState> {
    const E = (this.embeddings as Variable<'float32'>).value;
    const [V, D] = [this.inputDim, this.outputDim];
    if (mode === 'int8' || block === null) {
      const q = new AbsMaxQuantizer({ axis: -1, valueRange: mode === 'int8' ? [-127, 127] : [-8, 7] });
      const { quantized, scale } = await q.quantize(E);
      const s = new Tensor('float32', [V], Float32Array.from(scale.data as Float32Array));
      if (mode === 'int8') return { mode, table: quantized, scale: s };
      const { packed } = await packInt4(quantized, 1);
      return { mode, blockSize: null, table: packed as Tensor<'int8'>, scale: s };
    }
    // grouped: quantize E^T (dim x vocab) so groups run along the embedding dim, then transpose back
    const et = new Tensor('float32', [D, V], transpose2D(E.data, V, D));
    const g = absMaxQuantizeGroupedWithZeroPoint(et, block);
    const G = g.scale.shape[0];
    const levels = new Tensor('int8', [V, D], transpose2D(g.quantized.data as Int8Array, D, V));
    const { packed } = await packInt4(levels, 1);
    return {
      mode,
      blockSize: block,
      table: packed as Tensor<'int8'>,
      scale: new Tensor('float32', [V, G], transpose2D(g.scale.data, G, V)),
      zero: new Tensor('int8', [V, G], transpose2D(g.zero.data as Int8Array, G, V)),
      gIdx: new Tensor('float32', [D], g.gIdx),
    };
  }

  protected override async quantizeLayer(mode: QuantizationMode, config: QuantizationConfig, typeCheck: boolean): Promise<void> {
    if (typeCheck && this.constructor !== Embedding) throw this.noQuantizeSupport();
    if (mode !== 'int8' && mode !== 'int4') throw this.embeddingModeError(mode);
    const block = mode === 'int4' ? blockSizeFor(config, undefined) : null;
    const st = await this.quantizeTable(mode, block);
    this.installTable(st);
    this.quantizationConfig = config;
    this.setQuantizedPolicy(mode === 'int4' ? `int4/${block ?? -1}` : mode);
  }

  /** Validates ids and returns them as integers. */
  protected ids(inputs: Tensor): Int32Array {
    const d = inputs.dtype === 'int32' || inputs.dtype === 'int8' || inputs.dtype === 'uint8' ? (inputs.data as ArrayLike<number>) : inputs.toFloat32().data;
    const out = new Int32Array(d.length);
    for (let i = 0; i < d.length; i++) {
      const v = d[i];
      if (!Number.isInteger(v) || v < 0 || v >= this.inputDim) {
        throw new InvalidArgumentError(`Expected integer ids in [0, ${this.inputDim}) for inputs of layer '${this.name}' but received ${v} at index ${i}`);
      }
      out[i] = v;
    }
    return out;
  }

  async call(inputs: Tensor): Promise<Tensor<'float32'>> {
    const ids = this.ids(inputs);
    const D = this.outputDim;
    const E = (this.embeddings as Variable<'float32'>).value.data;
    const out = new Float32Array(ids.length * D);
    for (let t = 0; t < ids.length; t++) out.set(E.subarray(ids[t] * D, ids[t] * D + D), t * D);
    return new Tensor('float32', [...inputs.shape, D], out);
  }

  protected override async quantizedCall(inputs: Tensor, options: Record<string, unknown> = {}): Promise<Tensor<'float32'>> {
    void options;
    return this.lookupQuantized(inputs);
  }

  protected lookupQuantized(inputs: Tensor): Tensor<'float32'> {
    const st = this.tstate as TableState;
    const ids = this.ids(inputs);
    const D = this.outputDim;
    const out = new Float32Array(ids.length * D);
    if (st.mode === 'int8') {
      const q = st.table.data;
      const s = st.scale.data;
      for (let t = 0; t < ids.length; t++) {
        const r = ids[t];
        for (let j = 0; j < D; j++) out[t * D + j] = Math.fround(q[r * D + j] / s[r]);
      }
    } else {
      const bytes = st.table.data;
      const rowBytes = Math.ceil(D / 2);
      const s = st.scale.data;
      const grouped = st.blockSize !== null;
      const G = grouped ? st.scale.shape[1] : 1;
      const z = grouped ? (st as { zero: Tensor<'int8'> }).zero.data : null;
      for (let t = 0; t < ids.length; t++) {
        const r = ids[t];
        for (let j = 0; j < D; j++) {
          const b = bytes[r * rowBytes + (j >> 1)] & 0xff;
          const level = (((j & 1) === 0 ? b & 0xf : b >> 4) ^ 8) - 8;
          if (grouped) {
            const g = Math.floor(j / (st.blockSize as number));
            out[t * D + j] = Math.fround((level - (z as Int8Array)[r * G + g]) * s[r * G + g]);
          } else {
            out[t * D + j] = Math.fround(level / s[r]);
          }
        }
      }
    }
    return new Tensor('float32', [...inputs.shape, D], out);
  }

  /** The quantized table state (null for float). */
  get quantizedTable(): Readonly<TableState> | null {
    return this.tstate;
  }

  /**
   * The Keras config: `input_dim`, `output_dim`, `embeddings_initializer` (serialized, with the seed),
   * regularizers and constraints (always null), `mask_zero` (always false) and `quantization_config`
   * (serialized, or null), plus `name`, `trainable` and `dtype`.
   * @example
   * ```ts
   * new Embedding({ inputDim: 100, outputDim: 16 }).getConfig().embeddings_initializer.class_name; // 'RandomUniform'
   * ```
   */
  override getConfig(): Record<string, unknown> {
    return {
      ...super.getConfig(),
      input_dim: this.inputDim,
      output_dim: this.outputDim,
      embeddings_initializer: serializeInitializer(this.embeddingsInitializer, this.seed ?? null),
      embeddings_regularizer: null,
      activity_regularizer: null,
      embeddings_constraint: null,
      mask_zero: false,
      quantization_config: serializeQuantizationConfig(this.quantizationConfig),
    };
  }

  /**
   * Rebuilds an Embedding from a Keras config (`config.json` or {@link Embedding.getConfig}); a quantized `dtype`
   * plus `quantization_config` build the quantized table directly.
   * @throws UnsupportedError for `mask_zero: true` (Keras masks are not propagated by quantkit).
   * @example
   * ```ts
   * Embedding.fromConfig({ name: 'tok', input_dim: 100, output_dim: 32, mask_zero: false });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): Embedding {
    const c = checkLayerConfig(config, 'Embedding');
    return Embedding.withQuantizationConfig(new Embedding(Embedding.optionsFromConfig(c)), c);
  }

  /** Embedding options of a Keras config (shared with ReversibleEmbedding). */
  protected static optionsFromConfig(c: Record<string, unknown>): EmbeddingOptions {
    if (c.mask_zero === true) {
      throw new UnsupportedError('Expected mask_zero to be false for config.mask_zero but received true: Keras masks are not propagated by quantkit');
    }
    const e = deserializeInitializer(c.embeddings_initializer, 'config.embeddings_initializer');
    return {
      ...layerOptionsFromConfig(c),
      inputDim: c.input_dim as number,
      outputDim: c.output_dim as number,
      embeddingsInitializer: e.init,
      ...(e.seed === undefined ? {} : { seed: e.seed }),
    };
  }

  /** Sets `quantizationConfig` from a Keras config and returns the layer. */
  protected static withQuantizationConfig<L extends Embedding>(layer: L, c: Record<string, unknown>): L {
    layer.quantizationConfig = quantizationConfigFromConfig(c);
    return layer;
  }
}

/** Options of {@link ReversibleEmbedding}. */
export interface ReversibleEmbeddingOptions extends EmbeddingOptions {
  /** Share the table with the output projection (default true). */
  tieWeights?: boolean;
  /** `tanh(logits / c) * c` on reverse calls. */
  logitSoftCap?: number | null;
}

/**
 * An embedding whose `reverse` call projects hidden states back to vocabulary logits (tied or untied).
 * @example
 * ```ts
 * const emb = new ReversibleEmbedding({ inputDim: 512, outputDim: 64 });
 * const h = await emb.apply(ids);                               // [batch, seq, 64]
 * const logits = await emb.apply(h, { reverse: true });         // [batch, seq, 512]
 * ```
 */
export class ReversibleEmbedding extends Embedding {
  readonly tieWeights: boolean;
  readonly logitSoftCap: number | null;
  /** Untied output projection `[dim, vocab]` (float mode). */
  reverseEmbeddings: Variable<'float32'> | null = null;
  /** Device copy of the reverse projection (after `to('cuda')`). */
  private readonly _reverseResident = new ResidentSlot();
  private reverseState: QuantState | null = null;
  private reverseQuantizer: Quantizer | null = null;
  private tiedCache: { source: unknown; kernel: Float32Array | QuantState } | null = null;

  constructor(options: ReversibleEmbeddingOptions) {
    super(options);
    this.tieWeights = options.tieWeights ?? true;
    const cap = options.logitSoftCap ?? null;
    if (cap !== null && !(typeof cap === 'number' && cap > 0 && Number.isFinite(cap))) {
      throw new InvalidArgumentError(`Expected a positive number or null for logitSoftCap but received ${describe(cap)}`);
    }
    this.logitSoftCap = cap;
  }

  protected override buildExtra(): void {
    if (!this.tieWeights) {
      this.reverseEmbeddings = this.addWeight('reverse_embeddings', initialize(this.embeddingsInitializer, [this.outputDim, this.inputDim], this.seed === undefined ? undefined : this.seed + 1));
    }
  }

  protected override quantizedBuildExtra(mode: 'int8' | 'int4', block: number | null): void {
    this.reverseQuantizer = QuantizationConfig.activationQuantizerOrDefault(this.quantizationConfig, mode === 'int8' ? new AbsMaxQuantizer() : null);
    if (this.tieWeights) return;
    // the untied projection is a [dim, vocab] kernel quantized like a Dense kernel
    this.installReverse(emptyQuantState(this.outputDim, this.inputDim, mode, block));
  }

  protected override releaseState(): void {
    super.releaseState();
    this._reverseResident.drop();
    this.tiedCache = null;
    this.reverseState = null;
  }

  /** @internal The reverse projection (logits) moves to device `index` (null: frees it); lookups stay on the host. */
  override async _placeOwnWeights(index: number | null): Promise<boolean> {
    if (index === null) this._reverseResident.drop();
    else if (this.built) await this.reverseProjection(index);
    return true;
  }

  /** The device copy of the reverse projection `[dim, vocab]` (tied: the transposed table), re-uploaded on change. */
  private reverseProjection(index: number): Promise<ResidentProjection[]> {
    const key = [index, this.embeddings?.value, this.reverseEmbeddings?.value, this.tstate, this.reverseState, this.reverseQuantizer, this.quantizationMode];
    return this._reverseResident.get(key, async () => {
      const quantized = this.quantizationMode !== null;
      const src = await residentSourceOf({
        floatKernel: quantized ? null : this.tieWeights ? this.tiedFloatKernel() : (this.reverseEmbeddings as Variable<'float32'>).value.data,
        qstate: quantized ? (this.tieWeights ? await this.tiedQuantState() : this.reverseState) : null,
        gptq: null,
        inputsQuantizer: this.reverseQuantizer,
        float8InputScale: null,
        layerName: this.name,
      });
      return [await ResidentProjection.upload(src, this.outputDim, this.inputDim, null, index)];
    });
  }

  protected override afterLoad(): void {
    super.afterLoad();
    this.tiedCache = null;
    const rs = this.reverseState;
    if (!rs || rs.mode === 'float8') return;
    const get = (name: string) => (this._variables.find((v) => v.name === name) as Variable).value;
    const kernel = get('reverse_embeddings') as Tensor<'int8'>;
    const scale = get('reverse_embeddings_scale') as Tensor<'float32'>;
    if (rs.mode === 'int8') this.reverseState = { mode: 'int8', kernel, scale };
    else if (rs.blockSize === null) this.reverseState = { mode: 'int4', blockSize: null, kernel, scale };
    else {
      const zf = get('reverse_embeddings_zero').data as Float32Array;
      this.reverseState = { ...rs, kernel, scale, zero: new Tensor('int8', rs.zero.shape, Int8Array.from(zf)) };
    }
  }

  private installReverse(st: QuantState): void {
    this.reverseState = st;
    const nt = { trainable: false };
    const extra: Variable[] = [new Variable('reverse_embeddings', (st as { kernel: Tensor }).kernel, nt)];
    if (st.mode !== 'float8') extra.push(new Variable('reverse_embeddings_scale', st.scale, nt));
    if (st.mode === 'int4' && st.blockSize !== null) {
      // Keras stores this zero point as float (a quirk kept for file compatibility)
      extra.push(new Variable('reverse_embeddings_zero', new Tensor('float32', st.zero.shape, Float32Array.from(st.zero.data)), nt));
    }
    this.setVariables([...this._variables.filter((v) => !v.name.startsWith('reverse_embeddings')), ...extra]);
    this.reverseEmbeddings = null;
  }

  protected override async quantizeLayer(mode: QuantizationMode, config: QuantizationConfig, typeCheck: boolean): Promise<void> {
    if (typeCheck && this.constructor !== ReversibleEmbedding) throw this.noQuantizeSupport();
    if (mode !== 'int8' && mode !== 'int4') throw this.embeddingModeError(mode);
    // Keras quirk kept: the block size comes only from an Int4QuantizationConfig
    const block = mode === 'int4' && config instanceof Int4QuantizationConfig ? config.blockSize : null;
    const st = await this.quantizeTable(mode, block);
    let rev: QuantState | null = null;
    if (!this.tieWeights) rev = await quantizeKernel2D((this.reverseEmbeddings as Variable<'float32'>).value, mode, null, block);
    const quantizer = QuantizationConfig.activationQuantizerOrDefault(config, mode === 'int8' ? new AbsMaxQuantizer() : null);
    this.installTable(st);
    if (rev) this.installReverse(rev);
    this.reverseQuantizer = quantizer;
    this.tiedCache = null;
    this.quantizationConfig = config;
    this.setQuantizedPolicy(mode === 'int4' ? `int4/${block ?? -1}` : mode);
  }

  /**
   * Forward lookup (ids -> vectors), or with `{ reverse: true }` the projection of `[..., dim]` states to logits.
   * @example
   * ```ts
   * const logits = await emb.apply(hidden, { reverse: true });
   * ```
   */
  override async apply(inputs: Tensor | Tensor[], options: { reverse?: boolean } & Record<string, unknown> = {}): Promise<Tensor> {
    if (!options.reverse || Array.isArray(inputs)) return super.apply(inputs, options);
    if (!this.built) throw new InvalidArgumentError(`Layer '${this.name}' must be built (called on ids) before a reverse call`);
    const x = inputs.dtype === 'float32' ? (inputs as Tensor<'float32'>) : inputs.toFloat32();
    const D = this.outputDim;
    const V = this.inputDim;
    if (x.rank < 1 || x.shape[x.rank - 1] !== D) {
      throw new ShapeMismatchError(`Expected inputs with last dimension ${D} for the reverse call of '${this.name}' but received shape [${x.shape.join(', ')}]`);
    }
    const lead = x.shape.slice(0, -1);
    const x2d = x.reshape([lead.reduce((a, b) => a * b, 1), D]) as Tensor<'float32'>;
    let y: Tensor<'float32'>;
    if (this._deviceIndex !== null) {
      const [p] = await this.reverseProjection(this._deviceIndex);
      y = new Tensor('float32', [x2d.shape[0], V], await p.forward(x2d.data, x2d.shape[0]));
    } else if (this.quantizationMode === null) {
      const kernel = this.tieWeights ? this.tiedFloatKernel() : (this.reverseEmbeddings as Variable<'float32'>).value.data;
      y = await denseForward(x2d, { format: 'float32', kernel }, V, null);
    } else {
      const state = this.tieWeights ? await this.tiedQuantState() : (this.reverseState as QuantState);
      y = await projectQuantized(x2d, state, V, null, this.reverseQuantizer);
    }
    if (this.logitSoftCap !== null) {
      const c = this.logitSoftCap;
      const d = y.data;
      for (let i = 0; i < d.length; i++) d[i] = Math.tanh(d[i] / c) * c;
    }
    return y.reshape([...lead, V]);
  }

  private tiedFloatKernel(): Float32Array {
    const E = (this.embeddings as Variable<'float32'>).value;
    if (this.tiedCache?.source !== E) this.tiedCache = { source: E, kernel: transpose2D(E.data, this.inputDim, this.outputDim) };
    return this.tiedCache.kernel as Float32Array;
  }

  /** The tied table transposed to a `[dim, vocab]` projection state (built once per quantized table). */
  private async tiedQuantState(): Promise<QuantState> {
    const st = this.tstate as TableState;
    if (this.tiedCache?.source === st) return this.tiedCache.kernel as QuantState;
    const [V, D] = [this.inputDim, this.outputDim];
    let out: QuantState;
    if (st.mode === 'int8') {
      out = { mode: 'int8', kernel: new Tensor('int8', [D, V], transpose2D(st.table.data, V, D)), scale: st.scale };
    } else {
      const levels = (await unpackInt4(st.table, D, 1, 'int8')).data as Int8Array;
      const { packed } = await packInt4(new Tensor('int8', [D, V], transpose2D(levels, V, D)), 1);
      if (st.blockSize === null) out = { mode: 'int4', blockSize: null, kernel: packed as Tensor<'int8'>, scale: st.scale };
      else {
        const G = st.scale.shape[1];
        out = {
          mode: 'int4',
          blockSize: st.blockSize,
          kernel: packed as Tensor<'int8'>,
          scale: new Tensor('float32', [G, V], transpose2D(st.scale.data, V, G)),
          zero: new Tensor('int8', [G, V], transpose2D(st.zero.data, V, G)),
          gIdx: st.gIdx,
        };
      }
    }
    this.tiedCache = { source: st, kernel: out };
    return out;
  }

  /**
   * The Keras config: Embedding's keys plus `tie_weights`, `reverse_dtype` (always null) and `logit_soft_cap`.
   * @example
   * ```ts
   * new ReversibleEmbedding({ inputDim: 100, outputDim: 16, tieWeights: false }).getConfig().tie_weights; // false
   * ```
   */
  override getConfig(): Record<string, unknown> {
    return { ...super.getConfig(), tie_weights: this.tieWeights, reverse_dtype: null, logit_soft_cap: this.logitSoftCap };
  }

  /**
   * Rebuilds a ReversibleEmbedding from a Keras config (`reverse_dtype` is ignored: quantkit computes in float32).
   * @example
   * ```ts
   * ReversibleEmbedding.fromConfig({ name: 'emb', input_dim: 100, output_dim: 32, tie_weights: true, logit_soft_cap: null });
   * ```
   */
  static override fromConfig(config: Record<string, unknown>): ReversibleEmbedding {
    const c = checkLayerConfig(config, 'ReversibleEmbedding');
    const layer = new ReversibleEmbedding({
      ...Embedding.optionsFromConfig(c),
      tieWeights: (c.tie_weights ?? true) as boolean,
      logitSoftCap: (c.logit_soft_cap ?? null) as number | null,
    });
    return Embedding.withQuantizationConfig(layer, c);
  }
}
