/**
 * A Llama-family decoder-only language model built only from quantkit layers, so every projection quantizes
 * (`int8`, `int4`, `float8`, GPTQ): token `ReversibleEmbedding` (tied or untied head), `RMSNormalization`,
 * grouped-query attention with rotary position embeddings (llama2.c's interleaved-pair convention), a SwiGLU
 * feed-forward, a causal mask and a KV cache for generation.
 * @packageDocumentation
 */
import { AbortedError, CorruptFileError, InvalidArgumentError, ShapeMismatchError } from '../errors';
import { deviceForwardBlocks, syncCacheToHost } from './llama-device';
import { Dense } from '../layers/dense';
import { ReversibleEmbedding } from '../layers/embedding';
import type { Layer, LayerOptions } from '../layers/layer';
import { RMSNormalization } from '../layers/normalization';
import { CompositeLayer } from '../layers/attention';
import { checkLayerConfig, layerOptionsFromConfig } from '../layers/core-layers';
import { LayerClass, registerLayer } from '../layers/registry';
import type { LlamaCheckpoint } from '../io/llama-common';
import { readLlama2cFile } from '../io/llama2c';
import { readGgufLlamaFile } from '../io/gguf-llama';
import { readHfLlamaDir } from '../io/hf-llama';
import { attentionDecode, kvCacheWrite, rmsNorm, rope, siluMul } from '../ops/llama';
import { describe, Tensor } from '../tensor';
import { DTypePolicyLike, DTypePolicyMap, getDTypePolicy, serializeDTypePolicy } from '../dtype-policies';
import * as fs from 'fs';
import * as path from 'path';
import { createHash } from 'crypto';
import { writeFileAtomic } from '../io/atomic';
import { writeHdf5 } from '../io/hdf5';
import { checkLoadBudget, getMaxLoadBytes } from '../io/limits';
import { runWithAllocationBudget } from '../alloc-budget';
import { Llama2cTokenizer } from '../tokenizers/llama2c';
import { _registerModelDeserializer, serializeLayer } from './graph';
import { Model, QuantizationLayerStructure } from './model';

/** Architecture of a Llama model (the names of KerasHub's `LlamaBackbone`, camelCased). */
export interface LlamaArchitecture {
  /** Vocabulary size. */
  vocabularySize: number;
  /** Number of decoder blocks. */
  numLayers: number;
  /** Attention (query) heads. */
  numQueryHeads: number;
  /** Key/value heads (grouped-query attention); divides `numQueryHeads`. */
  numKeyValueHeads: number;
  /** Model width. */
  hiddenDim: number;
  /** Feed-forward width. */
  intermediateDim: number;
  /** Longest sequence (context length; the KV cache size). */
  maxSequenceLength: number;
  /** RMSNorm epsilon (default 1e-5, llama2.c's). */
  layerNormEpsilon?: number;
  /** RoPE base (default 10000). */
  ropeMaxWavelength?: number;
  /** Share the embedding with the output head (default true). */
  tieWordEmbeddings?: boolean;
}

/** Options of {@link LlamaCausalLM}. */
export interface LlamaCausalLMOptions extends LlamaArchitecture, LayerOptions {}

function checkPosInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new InvalidArgumentError(`Expected a positive integer for ${name} but received ${describe(v)}`);
  return v;
}

/** One layer's KV cache: `k`, `v` float32 `[batch, kvHeads, maxSeq, headDim]`. */
export interface LlamaLayerCache {
  k: Float32Array;
  v: Float32Array;
}

/** A KV cache for every layer of a model, for `batch` sequences of at most `maxSeq` tokens. */
export class LlamaKVCache {
  readonly layers: LlamaLayerCache[];
  /** Tokens already in the cache (the next write position). */
  length = 0;

  constructor(
    readonly numLayers: number,
    readonly batch: number,
    readonly kvHeads: number,
    readonly maxSeq: number,
    readonly headDim: number,
  ) {
    const n = batch * kvHeads * maxSeq * headDim;
    // A context length from an untrusted file must not size an unbounded allocation.
    checkLoadBudget(numLayers * 2 * n * 4, getMaxLoadBytes(), `a KV cache (${numLayers} layers x 2 x [${batch}, ${kvHeads}, ${maxSeq}, ${headDim}] float32)`, 'the model');
    this.layers = Array.from({ length: numLayers }, () => ({ k: new Float32Array(n), v: new Float32Array(n) }));
  }
}

/** Options of {@link LlamaDecoderBlock.call}. */
export interface LlamaBlockCallOptions {
  /**
   * Cache of this layer (generation); without it the block attends within its input (positions 0..T-1). One
   * cache holds rows `[batch, kvHeads, maxSeq, headDim]` (input row b uses row b); an array gives each input row its own
   * single-sequence cache (`[kvHeads, maxSeq, headDim]`), so independent sequences can run as one batch.
   */
  cache?: LlamaLayerCache | LlamaLayerCache[] | null;
  /** Cache geometry (with `cache`). */
  maxSeq?: number;
  /**
   * Absolute position of the first input token (with `cache`): one number for every row, or one per input row
   * (batched decoding of sequences of different lengths).
   */
  startPos?: number | ArrayLike<number>;
}

/** Options of {@link LlamaDecoderBlock}. */
export interface LlamaDecoderBlockOptions extends LayerOptions {
  numQueryHeads: number;
  numKeyValueHeads: number;
  intermediateDim: number;
  layerNormEpsilon?: number;
  ropeMaxWavelength?: number;
}

/**
 * One Llama decoder block: `x + attn(rmsnorm(x))`, then `+ ffn(rmsnorm(·))` with a SwiGLU feed-forward. Called with
 * one `[batch, seq, hidden]` tensor it attends causally within the sequence (what GPTQ calibration and
 * perplexity use); with a cache it appends to it and attends over everything cached.
 * @example
 * ```ts
 * const block = new LlamaDecoderBlock({ numQueryHeads: 8, numKeyValueHeads: 4, intermediateDim: 172 });
 * const y = await block.apply(x); // x: [batch, seq, 64]
 * ```
 */
export class LlamaDecoderBlock extends CompositeLayer {
  readonly numQueryHeads: number;
  readonly numKeyValueHeads: number;
  readonly intermediateDim: number;
  readonly layerNormEpsilon: number;
  readonly ropeMaxWavelength: number;
  private parts: {
    attnNorm: RMSNormalization;
    query: Dense;
    key: Dense;
    value: Dense;
    output: Dense;
    ffnNorm: RMSNormalization;
    gate: Dense;
    up: Dense;
    down: Dense;
  } | null = null;
  private hidden = -1;
  private headDim = -1;

  constructor(options: LlamaDecoderBlockOptions) {
    super(options);
    this.numQueryHeads = checkPosInt(options?.numQueryHeads, 'numQueryHeads');
    this.numKeyValueHeads = checkPosInt(options.numKeyValueHeads, 'numKeyValueHeads');
    if (this.numQueryHeads % this.numKeyValueHeads !== 0) {
      throw new InvalidArgumentError(`Expected numKeyValueHeads to divide numQueryHeads (${this.numQueryHeads}) but received ${this.numKeyValueHeads}`);
    }
    this.intermediateDim = checkPosInt(options.intermediateDim, 'intermediateDim');
    this.layerNormEpsilon = options.layerNormEpsilon ?? 1e-5;
    this.ropeMaxWavelength = options.ropeMaxWavelength ?? 10000;
    if (!(this.layerNormEpsilon >= 0)) throw new InvalidArgumentError(`Expected a non-negative layerNormEpsilon but received ${describe(options.layerNormEpsilon)}`);
    if (!(this.ropeMaxWavelength > 0)) throw new InvalidArgumentError(`Expected a positive ropeMaxWavelength but received ${describe(options.ropeMaxWavelength)}`);
  }

  build(inputShape: readonly (number | null)[]): void {
    const hidden = inputShape[inputShape.length - 1];
    if (inputShape.length !== 3 || hidden === null || !(hidden >= 1)) {
      throw new InvalidArgumentError(`Expected a [batch, seq, hidden] input shape for layer '${this.name}' but received ${describe(inputShape)}`);
    }
    if (hidden % this.numQueryHeads !== 0 || (hidden / this.numQueryHeads) % 2 !== 0) {
      throw new InvalidArgumentError(`Expected hidden (${hidden}) to be numQueryHeads (${this.numQueryHeads}) times an even head size for layer '${this.name}'`);
    }
    this.hidden = hidden;
    this.headDim = hidden / this.numQueryHeads;
    const kvDim = this.headDim * this.numKeyValueHeads;
    const dtype = this._policy;
    const dense = (name: string, units: number, inDim: number) => {
      // zeros: a Llama block's weights always come from a checkpoint, a preset or a file (random init is wasted work)
      const d = this.adopt(new Dense({ name, units, useBias: false, dtype, kernelInitializer: 'zeros' }));
      d.build([null, null, inDim]);
      return d;
    };
    const norm = (name: string) => {
      const n = this.adopt(new RMSNormalization({ name, epsilon: this.layerNormEpsilon, dtype }));
      n.build([null, null, hidden]);
      return n;
    };
    this.parts = {
      attnNorm: norm('self_attention_layernorm'),
      query: dense('query', hidden, hidden),
      key: dense('key', kvDim, hidden),
      value: dense('value', kvDim, hidden),
      output: dense('attention_output', hidden, hidden),
      ffnNorm: norm('feedforward_layernorm'),
      gate: dense('feedforward_gate_dense', this.intermediateDim, hidden),
      up: dense('feedforward_intermediate_dense', this.intermediateDim, hidden),
      down: dense('feedforward_output_dense', hidden, this.intermediateDim),
    };
    this.built = true;
    this.markQuantizedFromChildren();
  }

  protected children(): Array<[string, Layer]> {
    const p = this.parts;
    if (!p) return [];
    return [
      ['_self_attention_layernorm', p.attnNorm],
      ['_query_dense', p.query],
      ['_key_dense', p.key],
      ['_value_dense', p.value],
      ['_output_dense', p.output],
      ['_feedforward_layernorm', p.ffnNorm],
      ['_feedforward_gate_dense', p.gate],
      ['_feedforward_intermediate_dense', p.up],
      ['_feedforward_output_dense', p.down],
    ];
  }

  /** The built sub-layers (for weight loading). @internal */
  get sublayers(): NonNullable<LlamaDecoderBlock['parts']> {
    if (!this.parts) throw new InvalidArgumentError(`Expected a built layer for '${this.name}' but received an unbuilt one`);
    return this.parts;
  }

  async call(inputs: Tensor | Tensor[], options: LlamaBlockCallOptions = {}): Promise<Tensor<'float32'>> {
    const p = this.sublayers;
    const t = Array.isArray(inputs) ? (inputs.length === 1 ? inputs[0] : null) : inputs;
    if (!(t instanceof Tensor)) throw new InvalidArgumentError(`Expected one Tensor for inputs of layer '${this.name}' but received ${describe(inputs)}`);
    const x = CompositeLayer.f32(t);
    if (x.rank !== 3 || x.shape[2] !== this.hidden) {
      throw new ShapeMismatchError(`Expected a [batch, seq, ${this.hidden}] tensor for inputs of layer '${this.name}' but received shape [${x.shape.join(', ')}]`);
    }
    const [B, T] = x.shape;
    const H = this.numQueryHeads;
    const KV = this.numKeyValueHeads;
    const hd = this.headDim;
    const cache = options.cache ?? null;
    const maxSeq = cache ? (options.maxSeq ?? 0) : T;
    const seqCache = KV * maxSeq * hd;
    // per input row: its first absolute position (and its cache: row b of a batched cache, or caches[b])
    const starts = new Int32Array(B);
    const sp = cache ? (options.startPos ?? 0) : 0;
    const caches = Array.isArray(cache) ? cache : null;
    if (caches && (caches.length !== B || caches.some((c) => !c || c.k.length !== seqCache || c.v.length !== seqCache))) {
      throw new InvalidArgumentError(`Expected ${B} single-sequence caches of ${seqCache} values (one per input row) for cache of layer '${this.name}' but received ${describe(cache)}`);
    }
    const cacheBatch = caches ? B : cache ? Math.floor((cache as LlamaLayerCache).k.length / Math.max(1, seqCache)) : B;
    if (typeof sp !== 'number' && (sp === null || typeof sp !== 'object' || sp.length !== B)) {
      throw new InvalidArgumentError(`Expected a number or ${B} numbers (one per row) for startPos of layer '${this.name}' but received ${describe(sp)}`);
    }
    if (cacheBatch < B) {
      throw new InvalidArgumentError(`Expected a KV cache with room for ${B} sequences for cache of layer '${this.name}' but it holds ${cacheBatch}`);
    }
    for (let b = 0; b < B; b++) {
      const s0 = typeof sp === 'number' ? sp : sp[b];
      if (!Number.isSafeInteger(s0) || s0 < 0 || s0 + T > maxSeq) {
        throw new InvalidArgumentError(`Expected ${T} new tokens to fit the KV cache (${s0} cached, capacity ${maxSeq}) for layer '${this.name}'`);
      }
      starts[b] = s0;
    }
    const D = this.hidden;
    const eps = this.layerNormEpsilon;
    const gain = (n: RMSNormalization) => (n.scale as NonNullable<RMSNormalization['scale']>).value.data;
    const h = new Tensor('float32', [B, T, D], await rmsNorm(x.data, gain(p.attnNorm), eps));
    const q = ((await p.query.apply(h)) as Tensor<'float32'>).data;
    const k = ((await p.key.apply(h)) as Tensor<'float32'>).data;
    const v = ((await p.value.apply(h)) as Tensor<'float32'>).data;
    const positions = new Int32Array(B * T);
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) positions[b * T + t] = starts[b] + t;
    await rope(q, positions, { headDim: hd, theta: this.ropeMaxWavelength });
    await rope(k, positions, { headDim: hd, theta: this.ropeMaxWavelength });
    // per sequence: write K/V into its [KV, maxSeq, hd] cache view, then causal attention over it
    const kc = caches ? null : cache ? (cache as LlamaLayerCache).k : new Float32Array(B * seqCache);
    const vc = caches ? null : cache ? (cache as LlamaLayerCache).v : new Float32Array(B * seqCache);
    const att = new Float32Array(B * T * H * hd);
    for (let b = 0; b < B; b++) {
      const rowK = caches ? caches[b].k : (kc as Float32Array).subarray(b * seqCache, (b + 1) * seqCache);
      const rowV = caches ? caches[b].v : (vc as Float32Array).subarray(b * seqCache, (b + 1) * seqCache);
      const view = { k: rowK, v: rowV, kvHeads: KV, maxSeq, headDim: hd };
      await kvCacheWrite(view, k.subarray(b * T * KV * hd, (b + 1) * T * KV * hd), v.subarray(b * T * KV * hd, (b + 1) * T * KV * hd), starts[b]);
      await attentionDecode(q.subarray(b * T * H * hd, (b + 1) * T * H * hd), view, { heads: H, startPos: starts[b], out: att.subarray(b * T * H * hd, (b + 1) * T * H * hd) });
    }
    const o = ((await p.output.apply(new Tensor('float32', [B, T, D], att))) as Tensor<'float32'>).data;
    const x1 = new Float32Array(x.data.length);
    for (let i = 0; i < x1.length; i++) x1[i] = x.data[i] + o[i];
    const x1t = new Tensor('float32', [B, T, D], x1);
    const h2 = new Tensor('float32', [B, T, D], await rmsNorm(x1, gain(p.ffnNorm), eps));
    const g = ((await p.gate.apply(h2)) as Tensor<'float32'>).data;
    const u = ((await p.up.apply(h2)) as Tensor<'float32'>).data;
    const a = await siluMul(g, u, { out: g });
    const d = ((await p.down.apply(new Tensor('float32', [B, T, this.intermediateDim], a))) as Tensor<'float32'>).data;
    for (let i = 0; i < x1.length; i++) x1[i] += d[i];
    return x1t;
  }

  override getConfig(): Record<string, unknown> {
    return {
      ...super.getConfig(),
      num_query_heads: this.numQueryHeads,
      num_key_value_heads: this.numKeyValueHeads,
      intermediate_dim: this.intermediateDim,
      layer_norm_epsilon: this.layerNormEpsilon,
      rope_max_wavelength: this.ropeMaxWavelength,
    };
  }

  /**
   * Rebuilds the block from {@link LlamaDecoderBlock.getConfig} output.
   * @example
   * ```ts
   * LlamaDecoderBlock.fromConfig({ name: 'b', num_query_heads: 8, num_key_value_heads: 4, intermediate_dim: 172 });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): LlamaDecoderBlock {
    const c = checkLayerConfig(config, 'LlamaDecoderBlock');
    return new LlamaDecoderBlock({
      ...layerOptionsFromConfig(c),
      numQueryHeads: c.num_query_heads as number,
      numKeyValueHeads: c.num_key_value_heads as number,
      intermediateDim: c.intermediate_dim as number,
      layerNormEpsilon: (c.layer_norm_epsilon ?? 1e-5) as number,
      ropeMaxWavelength: (c.rope_max_wavelength ?? 10000) as number,
    });
  }
}

/** lib/io/keras imports the models, so it is required lazily. */
async function loadKerasIo(): Promise<typeof import('../io/keras')> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('../io/keras') as typeof import('../io/keras');
}

function packageVersion(): string {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('../../package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** `[rows, cols]` -> `[cols, rows]`, blocked for cache reuse. */
function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const B = 32;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * rows + r] = src[r * cols + c];
    }
  }
  return out;
}

/**
 * A Llama-family causal LM (llama2.c / Llama 2 / TinyLlama shapes) whose projections are quantkit layers, so
 * `model.quantize('int8' | 'int4' | 'float8' | 'gptq', …)` works out of the box; GPTQ needs no structure argument
 * (`getQuantizationLayerStructure('gptq')` returns the embedding and the decoder blocks).
 *
 * @example
 * ```ts
 * const model = new LlamaCausalLM({ vocabularySize: 512, numLayers: 5, numQueryHeads: 8, numKeyValueHeads: 4,
 *   hiddenDim: 64, intermediateDim: 172, maxSequenceLength: 512 });
 * await model.build([1, 1]);
 * const logits = await model.predict(tokenIds); // [batch, seq, 512]
 * ```
 */
export class LlamaCausalLM extends Model {
  readonly arch: Required<LlamaArchitecture>;
  tokenEmbedding: ReversibleEmbedding;
  decoderBlocks: LlamaDecoderBlock[];
  finalNorm: RMSNormalization;

  constructor(options: LlamaCausalLMOptions) {
    super({ name: options?.name ?? 'llama_causal_lm', ...(options?.dtype !== undefined ? { dtype: options.dtype } : {}) });
    const o = options;
    this.arch = {
      vocabularySize: checkPosInt(o.vocabularySize, 'vocabularySize'),
      numLayers: checkPosInt(o.numLayers, 'numLayers'),
      numQueryHeads: checkPosInt(o.numQueryHeads, 'numQueryHeads'),
      numKeyValueHeads: checkPosInt(o.numKeyValueHeads, 'numKeyValueHeads'),
      hiddenDim: checkPosInt(o.hiddenDim, 'hiddenDim'),
      intermediateDim: checkPosInt(o.intermediateDim, 'intermediateDim'),
      maxSequenceLength: checkPosInt(o.maxSequenceLength, 'maxSequenceLength'),
      layerNormEpsilon: o.layerNormEpsilon ?? 1e-5,
      ropeMaxWavelength: o.ropeMaxWavelength ?? 10000,
      tieWordEmbeddings: o.tieWordEmbeddings ?? true,
    };
    const a = this.arch;
    const dtype = options.dtype;
    const dt = dtype === undefined ? {} : { dtype };
    this.tokenEmbedding = new ReversibleEmbedding({
      name: 'token_embedding',
      inputDim: a.vocabularySize,
      outputDim: a.hiddenDim,
      tieWeights: a.tieWordEmbeddings,
      embeddingsInitializer: 'zeros',
      ...dt,
    });
    this.decoderBlocks = Array.from(
      { length: a.numLayers },
      (_, i) =>
        new LlamaDecoderBlock({
          name: `transformer_layer_${i}`,
          numQueryHeads: a.numQueryHeads,
          numKeyValueHeads: a.numKeyValueHeads,
          intermediateDim: a.intermediateDim,
          layerNormEpsilon: a.layerNormEpsilon,
          ropeMaxWavelength: a.ropeMaxWavelength,
          ...dt,
        }),
    );
    this.finalNorm = new RMSNormalization({ name: 'sequence_output_layernorm', epsilon: a.layerNormEpsilon, ...dt });
  }

  /** Builds every layer (no forward pass needed). */
  override async build(): Promise<void> {
    if (this.built) return;
    const a = this.arch;
    this.refreshPaths();
    this.tokenEmbedding.build([null, null]);
    for (const b of this.decoderBlocks) b.build([null, null, a.hiddenDim]);
    this.finalNorm.build([null, null, a.hiddenDim]);
    this.built = true;
    this.refreshPaths();
  }

  /** The final RMSNorm on the native kernel (the layer holds the gain). */
  private async applyFinalNorm(x: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const scale = (this.finalNorm.scale as NonNullable<RMSNormalization['scale']>).value.data;
    return new Tensor('float32', x.shape, await rmsNorm(x.data, scale, this.arch.layerNormEpsilon));
  }

  /** GPTQ: the embedding runs first, then the decoder blocks are calibrated one after the other. */
  override getQuantizationLayerStructure(mode: string): QuantizationLayerStructure | null {
    return mode === 'gptq' ? { preBlockLayers: [this.tokenEmbedding], sequentialBlocks: this.decoderBlocks } : null;
  }

  /**
   * Logits `[batch, seq, vocab]` for token ids `[batch, seq]` (int32), attending causally within each row.
   * @example
   * ```ts
   * const logits = await model.apply(new Tensor('int32', [1, 3], Int32Array.from([1, 403, 407])));
   * ```
   */
  override async call(inputs: Tensor | Tensor[]): Promise<Tensor<'float32'>> {
    const ids = Array.isArray(inputs) ? inputs[0] : inputs;
    this.checkIds(ids);
    if (!this.built) await this.build();
    let x = (await this.tokenEmbedding.apply(ids)) as Tensor<'float32'>;
    const onDevice = this._deviceIndex !== null ? await this.deviceRows(x) : null;
    if (onDevice) x = onDevice;
    else for (const b of this.decoderBlocks) x = (await b.apply(x)) as Tensor<'float32'>;
    x = await this.applyFinalNorm(x);
    return (await this.tokenEmbedding.apply(x, { reverse: true })) as Tensor<'float32'>;
  }

  /**
   * The decoder blocks on the model's CUDA device for `x` [B, T, D] without a cache (causal within each row): every
   * row runs on the device with activations there and a fresh KV cache of T positions. Null when the blocks cannot
   * run on the device queue (the caller then runs them layer by layer).
   */
  private async deviceRows(x: Tensor<'float32'>): Promise<Tensor<'float32'> | null> {
    const [B, T, D] = x.shape;
    const out = new Float32Array(B * T * D);
    for (let b = 0; b < B; b++) {
      const y = await deviceForwardBlocks(this.decoderBlocks, this._deviceIndex as number, x.data.subarray(b * T * D, (b + 1) * T * D), T, this.newCache(1, T));
      if (!y) return null;
      out.set(y, b * T * D);
    }
    return new Tensor('float32', [B, T, D], out);
  }

  private checkIds(ids: unknown): asserts ids is Tensor {
    if (!(ids instanceof Tensor) || ids.rank !== 2 || (ids.dtype !== 'int32' && ids.dtype !== 'float32')) {
      throw new InvalidArgumentError(`Expected token ids as an int32 Tensor [batch, seq] but received ${ids instanceof Tensor ? `a ${ids.dtype} tensor of shape [${ids.shape.join(', ')}]` : describe(ids)}`);
    }
    const d = ids.data as Int32Array;
    for (let i = 0; i < d.length; i++) {
      if (!(d[i] >= 0 && d[i] < this.arch.vocabularySize) || !Number.isInteger(d[i])) {
        throw new InvalidArgumentError(`Expected token ids in [0, ${this.arch.vocabularySize - 1}] but found ${d[i]} at index ${i}`);
      }
    }
    if (ids.shape[1] > this.arch.maxSequenceLength) {
      throw new InvalidArgumentError(`Expected at most maxSequenceLength (${this.arch.maxSequenceLength}) tokens per row but received ${ids.shape[1]}`);
    }
  }

  /**
   * Runs `ids` ([batch, T] new tokens) through the model with a KV cache and returns the logits of the LAST new
   * token of each row, `[batch, vocab]`. The cache advances by T.
   * @internal
   */
  async forwardWithCache(ids: Tensor, cache: LlamaKVCache): Promise<Float32Array> {
    if (!this.gate.holds()) return this.gate.read('forwardWithCache()', () => this.forwardWithCache(ids, cache));
    this.checkIds(ids);
    const [B, T] = ids.shape;
    if (cache.length + T > cache.maxSeq) {
      throw new InvalidArgumentError(`Expected the sequence to fit the context (${cache.maxSeq} tokens) but it would reach ${cache.length + T}`);
    }
    if (!this.built) await this.build();
    let x = (await this.tokenEmbedding.apply(ids)) as Tensor<'float32'>;
    // on a CUDA device, one sequence runs its blocks with activations and KV cache on the device
    const onDevice = this._deviceIndex !== null && B === 1 ? await deviceForwardBlocks(this.decoderBlocks, this._deviceIndex, x.data, T, cache) : null;
    if (onDevice) {
      x = new Tensor('float32', [B, T, this.arch.hiddenDim], onDevice);
    } else {
      await syncCacheToHost(cache);
      for (let l = 0; l < this.decoderBlocks.length; l++) {
        x = (await this.decoderBlocks[l].apply(x, { cache: cache.layers[l], maxSeq: cache.maxSeq, startPos: cache.length })) as Tensor<'float32'>;
      }
    }
    cache.length += T;
    const D = this.arch.hiddenDim;
    const last = new Float32Array(B * D);
    for (let b = 0; b < B; b++) last.set(x.data.subarray((b * T + T - 1) * D, (b * T + T) * D), b * D);
    const h = await this.applyFinalNorm(new Tensor('float32', [B, 1, D], last));
    return ((await this.tokenEmbedding.apply(h, { reverse: true })) as Tensor<'float32'>).data as Float32Array;
  }

  /** A fresh KV cache for `batch` sequences. */
  newCache(batch = 1, maxSeq = this.arch.maxSequenceLength): LlamaKVCache {
    const a = this.arch;
    return new LlamaKVCache(a.numLayers, batch, a.numKeyValueHeads, maxSeq, a.hiddenDim / a.numQueryHeads);
  }

  /**
   * One decoding step for several independent sequences, each with its own single-sequence cache (`newCache(1)`)
   * at its own position: `tokens[i]` is appended to `caches[i]`, which advances by one, and the logits of every
   * row come back as `[rows, vocab]`. The projections run as one batch (what makes serving many streams faster
   * than stepping them one by one); RoPE and attention run per row at the row's position.
   * {@link LlamaDecodeBatcher} groups the steps of concurrent `stream()` / `generate()` calls into such batches.
   * @example
   * ```ts
   * const a = model.newCache(1), b = model.newCache(1);
   * await model.forwardWithCache(new Tensor('int32', [1, 3], Int32Array.from([1, 403, 407])), a);
   * await model.forwardWithCache(new Tensor('int32', [1, 1], Int32Array.from([1])), b);
   * const logits = await model.decodeStep([500, 403], [a, b]); // [2, vocab]; a.length 4, b.length 2
   * ```
   */
  async decodeStep(tokens: ArrayLike<number>, caches: LlamaKVCache[]): Promise<Float32Array> {
    // No lease of its own: the calls whose steps it runs (generate(), stream(), through a LlamaDecodeBatcher) hold
    // the model's lease while their step is pending, so the weights cannot change under it; waiting here for a
    // quantize() that waits for those calls would deadlock. Direct callers must not run it during quantize().
    if (this.gate.disposed && !this.gate.holds()) throw this.gate.disposedError('decodeStep()');
    if (!Array.isArray(caches) || caches.length === 0 || !caches.every((c) => c instanceof LlamaKVCache && c.batch === 1)) {
      throw new InvalidArgumentError(`Expected a non-empty array of single-sequence LlamaKVCache (newCache(1)) for caches but received ${describe(caches)}`);
    }
    if (!tokens || tokens.length !== caches.length) {
      throw new InvalidArgumentError(`Expected one token per cache (${caches.length}) for tokens but received ${describe(tokens)}`);
    }
    if (new Set(caches).size !== caches.length) throw new InvalidArgumentError('Expected distinct caches for caches but the same cache appears twice');
    const B = caches.length;
    const maxSeq = caches[0].maxSeq;
    caches.forEach((c, i) => {
      if (c.maxSeq !== maxSeq || c.numLayers !== this.decoderBlocks.length) {
        throw new InvalidArgumentError(`Expected caches of this model with the same capacity (${maxSeq}) but caches[${i}] differs`);
      }
      if (c.length + 1 > c.maxSeq) throw new InvalidArgumentError(`Expected caches[${i}] to have room for one more token but it is full (${c.maxSeq})`);
    });
    const ids = new Tensor('int32', [B, 1], Int32Array.from(tokens));
    this.checkIds(ids);
    if (!this.built) await this.build();
    let x = (await this.tokenEmbedding.apply(ids)) as Tensor<'float32'>;
    for (const c of caches) await syncCacheToHost(c);
    const starts = caches.map((c) => c.length);
    for (let l = 0; l < this.decoderBlocks.length; l++) {
      x = (await this.decoderBlocks[l].apply(x, { cache: caches.map((c) => c.layers[l]), maxSeq, startPos: starts })) as Tensor<'float32'>;
    }
    for (const c of caches) c.length += 1;
    const h = await this.applyFinalNorm(x);
    return ((await this.tokenEmbedding.apply(h, { reverse: true })) as Tensor<'float32'>).data as Float32Array;
  }

  /** The tokenizer used by text prompts and perplexity (set by the importers and presets). */
  tokenizer: LlamaTokenizerLike | null = null;

  protected override releaseModelState(): void {
    super.releaseModelState();
    this.tokenizer = null;
  }

  private needTokenizer(): LlamaTokenizerLike {
    if (!this.tokenizer) {
      throw new InvalidArgumentError(
        `Model '${this.name}' has no tokenizer: pass token ids, or set model.tokenizer (the importers and fromPreset set it)`,
      );
    }
    return this.tokenizer;
  }

  private promptIds(prompt: string | ArrayLike<number>, addBos: boolean): number[] {
    if (typeof prompt === 'string') return Array.from(this.needTokenizer().encode(prompt, { bos: addBos, eos: false }));
    if (prompt === null || typeof prompt !== 'object' || typeof (prompt as ArrayLike<number>).length !== 'number') {
      throw new InvalidArgumentError(`Expected a string or an array of token ids for prompt but received ${describe(prompt)}`);
    }
    const ids = Array.from(prompt as ArrayLike<number>);
    if (ids.length === 0) throw new InvalidArgumentError('Expected at least one prompt token (for an empty text prompt, keep addBos: true)');
    return ids;
  }

  /** The stop rules of one generate/stream call. */
  private stopRules(o: ReturnType<typeof checkGenerateOptions>): { ids: Set<number>; strings: string[] } {
    const ids = new Set<number>(o.stop.filter((s): s is number => typeof s === 'number'));
    const strings = o.stop.filter((s): s is string => typeof s === 'string');
    const tok = this.tokenizer;
    if (!o.ignoreEos && tok) {
      ids.add(tok.eosId);
      ids.add(tok.bosId);
    }
    return { ids, strings };
  }

  /**
   * Samples the next token of one sequence from its logits and applies the stop rules. Returns the chunk to emit,
   * or null when the sequence has ended (`st.stopReason` says why). `cacheLength` = tokens in its cache.
   */
  private nextToken(st: DecodeRow, logits: Float32Array, o: ReturnType<typeof checkGenerateOptions>, rules: { ids: Set<number>; strings: string[] }, t0: number): GenerateChunk | null {
    const tok = this.tokenizer;
    const next = sampleToken(logits, o.temperature, o.topK, o.topP, st.rng);
    if (st.tokens.length === 0) {
      st.tFirst = performance.now();
      st.firstTokenMs = st.tFirst - t0;
    }
    if (rules.ids.has(next)) {
      st.stopReason = tok && (next === tok.eosId || next === tok.bosId) && !o.stop.includes(next) ? 'eos' : 'stop';
      return null;
    }
    st.tokens.push(next);
    // decode with the prompt so that tokenizer rules at the boundary (the space after BOS) apply as in llama2.c
    const full = tok ? tok.decode([...st.promptTokens, ...st.tokens]).slice(st.promptText.length) : '';
    const piece = full.startsWith(st.text) ? full.slice(st.text.length) : full;
    st.text = full;
    if (rules.strings.some((s) => full.includes(s))) st.stopReason = 'stop';
    return { token: next, text: piece };
  }

  private static result(st: DecodeRow): GenerateResult {
    const decodeMs = performance.now() - st.tFirst;
    return {
      text: st.text,
      tokens: st.tokens,
      promptTokens: st.promptTokens,
      stopReason: st.stopReason,
      firstTokenMs: st.firstTokenMs,
      tokensPerSecond: st.tokens.length > 1 && decodeMs > 0 ? ((st.tokens.length - 1) * 1000) / decodeMs : 0,
    };
  }

  private newRow(promptTokens: number[], seed: number): DecodeRow {
    const tok = this.tokenizer;
    return { promptTokens, promptText: tok ? tok.decode(promptTokens) : '', rng: new XorShiftRng(seed), tokens: [], text: '', stopReason: 'length', firstTokenMs: 0, tFirst: 0 };
  }

  /**
   * Streams generated tokens as they are produced.
   * @example
   * ```ts
   * for await (const { text } of model.stream('Once upon a time', { maxNewTokens: 50 })) process.stdout.write(text);
   * ```
   */
  async *stream(prompt: string | ArrayLike<number>, options: GenerateOptions = {}): AsyncGenerator<GenerateChunk, GenerateResult, void> {
    if (this.gate.disposed) throw this.gate.disposedError('stream()');
    // generate() holds the model's lease for the whole generation; a bare stream() takes it per forward step (so
    // that an abandoned stream cannot block quantize()/dispose()) and refuses to continue across a change.
    const version = this.gate.version;
    const guarded = (fn: () => Promise<Float32Array>): Promise<Float32Array> => {
      if (this.gate.holds()) return fn(); // inside generate(): nothing can change
      if (this.gate.disposed) throw this.gate.disposedError('stream()');
      if (this.gate.version !== version) {
        throw new AbortedError(
          `Expected the weights of model '${this.name}' to stay the same during stream() but quantize(), loadWeights() or dispose() changed them between two tokens; finish or break out of a stream before changing the model (generate() waits instead)`,
        );
      }
      // the lease is held while this step (possibly a batched step of a LlamaDecodeBatcher) runs
      return this.gate.read('stream()', fn);
    };
    const forward = (ids: Tensor, c: LlamaKVCache) => guarded(() => this.forwardWithCache(ids, c));
    const o = checkGenerateOptions(options);
    const st = this.newRow(this.promptIds(prompt, o.addBos), o.seed);
    if (!this.built) await this.build();
    const rules = this.stopRules(o);
    const cache = this.newCache(1);
    const t0 = performance.now();
    const n = st.promptTokens.length;
    if (n >= cache.maxSeq) st.stopReason = 'context';
    let logits = st.stopReason === 'context' ? null : await forward(new Tensor('int32', [1, n], Int32Array.from(st.promptTokens)), cache);
    while (logits && st.tokens.length < o.maxNewTokens) {
      if (o.signal?.aborted) throw new AbortedError('Generation was aborted', { cause: o.signal.reason });
      const chunk = this.nextToken(st, logits, o, rules, t0);
      if (!chunk) break;
      o.onToken?.(chunk, 0);
      yield chunk;
      if (st.stopReason !== 'length') break;
      if (cache.length >= cache.maxSeq) {
        st.stopReason = 'context';
        break;
      }
      // tiny models run their ops inline (already settled promises): give the event loop a turn per token
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (st.tokens.length < o.maxNewTokens) {
        const next = st.tokens[st.tokens.length - 1];
        logits = await guarded(() =>
          o.batcher ? o.batcher.step(this, next, cache) : this.forwardWithCache(new Tensor('int32', [1, 1], Int32Array.from([next])), cache),
        );
      }
    }
    return LlamaCausalLM.result(st);
  }

  /**
   * Generates continuations of several prompts together: each prompt is processed on its own, then every decoding
   * step runs the still-active sequences as one batch (M = active rows in every projection, so each weight is read
   * once per step for all of them). Each row samples with its own RNG seeded with `seed`, exactly like separate
   * `generate` calls. Rows finish independently.
   */
  private async generateBatch(prompts: Array<string | ArrayLike<number>>, o: ReturnType<typeof checkGenerateOptions>): Promise<GenerateResult[]> {
    const rowsState = prompts.map((p) => this.newRow(this.promptIds(p, o.addBos), o.seed));
    if (!this.built) await this.build();
    const rules = this.stopRules(o);
    const B = rowsState.length;
    const caches = rowsState.map(() => this.newCache(1));
    const V = this.arch.vocabularySize;
    const t0 = performance.now();
    const logits: Array<Float32Array | null> = new Array(B).fill(null);
    for (let b = 0; b < B; b++) {
      if (o.signal?.aborted) throw new AbortedError('Generation was aborted', { cause: o.signal.reason });
      const st = rowsState[b];
      const n = st.promptTokens.length;
      if (n >= caches[b].maxSeq) {
        st.stopReason = 'context';
        continue;
      }
      logits[b] = await this.forwardWithCache(new Tensor('int32', [1, n], Int32Array.from(st.promptTokens)), caches[b]);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    for (;;) {
      if (o.signal?.aborted) throw new AbortedError('Generation was aborted', { cause: o.signal.reason });
      const active: number[] = [];
      for (let b = 0; b < B; b++) {
        const st = rowsState[b];
        const lg = logits[b];
        if (!lg || st.stopReason !== 'length' || st.tokens.length >= o.maxNewTokens) continue;
        const chunk = this.nextToken(st, lg, o, rules, t0);
        logits[b] = null;
        if (!chunk) continue;
        o.onToken?.(chunk, b);
        if (st.stopReason !== 'length' || st.tokens.length >= o.maxNewTokens) continue;
        if (caches[b].length >= caches[b].maxSeq) {
          st.stopReason = 'context';
          continue;
        }
        active.push(b);
      }
      if (active.length === 0) break;
      await new Promise<void>((resolve) => setImmediate(resolve));
      const out = await this.decodeStep(
        active.map((b) => rowsState[b].tokens[rowsState[b].tokens.length - 1]),
        active.map((b) => caches[b]),
      );
      active.forEach((b, i) => {
        logits[b] = out.subarray(i * V, (i + 1) * V);
      });
    }
    return rowsState.map((st) => LlamaCausalLM.result(st));
  }

  /**
   * Generates a continuation (greedy by default; sampling with `temperature`, `topK`, `topP`, `seed` — llama2.c's
   * RNG, so seeded llama2.c runs reproduce). An array of prompts gives an array of results; they are decoded
   * together as a batch (one weight pass per step for all of them), each exactly as its own call would sample.
   * `onToken(chunk, index)` sees every token as it is produced (index = the prompt's position in the array).
   * @example
   * ```ts
   * const { text } = await model.generate('Once upon a time', { maxNewTokens: 32 });
   * const [a, b] = await model.generate(['One day', 'The cat'], { temperature: 0.8, topP: 0.9, seed: 1 });
   * ```
   */
  async generate(prompt: string | ArrayLike<number>, options?: GenerateOptions): Promise<GenerateResult>;
  async generate(prompt: Array<string | ArrayLike<number>>, options?: GenerateOptions): Promise<GenerateResult[]>;
  async generate(prompt: string | ArrayLike<number> | Array<string | ArrayLike<number>>, options: GenerateOptions = {}): Promise<GenerateResult | GenerateResult[]> {
    if (!this.gate.holds()) return this.gate.read('generate()', () => this.generate(prompt as never, options) as Promise<GenerateResult | GenerateResult[]>);
    if (Array.isArray(prompt) && prompt.some((p) => typeof p === 'string' || (typeof p === 'object' && p !== null))) {
      const o = checkGenerateOptions(options);
      if (prompt.length === 0) return [];
      return this.generateBatch(prompt as Array<string | ArrayLike<number>>, o);
    }
    const it = this.stream(prompt as string | ArrayLike<number>, options);
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value;
    }
  }

  /**
   * Perplexity of `text` (or of each text of an array, pooled) under the model: `exp(mean NLL)` of every token
   * predicted from the tokens before it, in windows of at most `window` tokens (default: the context length)
   * that advance by `stride` (default `window`; a smaller stride gives every scored token more context, and only
   * the tokens a window adds are scored).
   * @example
   * ```ts
   * const { perplexity, nll, tokens } = await model.perplexity(text, { window: 512 });
   * ```
   */
  async perplexity(
    text: string | ArrayLike<number> | Array<string | ArrayLike<number>>,
    options: { window?: number; stride?: number; addBos?: boolean; signal?: AbortSignal | null } = {},
  ): Promise<{ perplexity: number; nll: number; tokens: number }> {
    if (!this.gate.holds()) return this.gate.read('perplexity()', () => this.perplexity(text, options));
    const window = options.window ?? this.arch.maxSequenceLength;
    const stride = options.stride ?? window;
    if (!Number.isSafeInteger(window) || window < 2 || window > this.arch.maxSequenceLength) {
      throw new InvalidArgumentError(`Expected an integer in [2, ${this.arch.maxSequenceLength}] (the context length) for window but received ${describe(options.window)}`);
    }
    if (!Number.isSafeInteger(stride) || stride < 1 || stride > window) {
      throw new InvalidArgumentError(`Expected an integer in [1, window] for stride but received ${describe(options.stride)}`);
    }
    const texts = Array.isArray(text) && text.some((t) => typeof t === 'string' || typeof t === 'object') ? (text as Array<string | ArrayLike<number>>) : [text as string | ArrayLike<number>];
    let nll = 0;
    let count = 0;
    const V = this.arch.vocabularySize;
    const { exp, log } = Math; // locals: global lookups are slow in hot loops inside vm contexts
    for (const t of texts) {
      const ids = this.promptIds(t, options.addBos ?? true);
      let scoredUpTo = 0; // tokens [0, scoredUpTo) have been predicted (token 0 never is)
      for (let start = 0; start < ids.length - 1; start += stride) {
        if (options.signal?.aborted) throw new AbortedError('Perplexity was aborted', { cause: options.signal.reason });
        const end = Math.min(start + window, ids.length);
        const logits = ((await this.predict(new Tensor('int32', [1, end - start], Int32Array.from(ids.slice(start, end))))) as Tensor).data as Float32Array;
        for (let p = Math.max(start + 1, scoredUpTo); p < end; p++) {
          nll += tokenNll(logits.subarray((p - 1 - start) * V, (p - start) * V), ids[p], exp, log);
          count++;
        }
        scoredUpTo = end;
        if (end === ids.length) break;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    if (count === 0) throw new InvalidArgumentError('Expected a text of at least two tokens for perplexity');
    return { perplexity: Math.exp(nll / count), nll: nll / count, tokens: count };
  }

  /**
   * Perplexity of each text separately, all texts in ONE forward pass (a batch padded at the end, which cannot
   * change the real tokens' logits because attention is causal), so a batch gives the same numbers as separate
   * `perplexity(text)` calls on texts that fit the context. Each text must have 2 to `maxSequenceLength` tokens
   * (longer texts: {@link perplexity} with windows).
   * @example
   * ```ts
   * const [a, b] = await model.perplexityBatch(['Lily went to the park.', 'The dog ran home.']);
   * console.log(a.perplexity, b.perplexity);
   * ```
   * @throws InvalidArgumentError for an empty list or a text of fewer than 2 or more than maxSequenceLength tokens.
   */
  async perplexityBatch(
    texts: Array<string | ArrayLike<number>>,
    options: { addBos?: boolean } = {},
  ): Promise<Array<{ perplexity: number; nll: number; tokens: number }>> {
    if (!Array.isArray(texts) || texts.length === 0) {
      throw new InvalidArgumentError(`Expected a non-empty array of texts for texts but received ${describe(texts)}`);
    }
    const seqs = texts.map((t) => this.promptIds(t, options.addBos ?? true));
    seqs.forEach((s, i) => {
      if (s.length < 2 || s.length > this.arch.maxSequenceLength) {
        throw new InvalidArgumentError(`Expected 2 to ${this.arch.maxSequenceLength} tokens (the context) for texts[${i}] but received ${s.length}`);
      }
    });
    const B = seqs.length;
    const T = Math.max(...seqs.map((s) => s.length));
    const ids = new Int32Array(B * T); // padding id 0 after each text: causal attention keeps it out
    seqs.forEach((s, b) => ids.set(s, b * T));
    const logits = ((await this.predict(new Tensor('int32', [B, T], ids), { batchSize: B })) as Tensor).data as Float32Array;
    const V = this.arch.vocabularySize;
    const { exp, log } = Math;
    return seqs.map((s, b) => {
      let nll = 0;
      for (let p = 1; p < s.length; p++) nll += tokenNll(logits.subarray((b * T + p - 1) * V, (b * T + p) * V), s[p], exp, log);
      nll /= s.length - 1;
      return { perplexity: Math.exp(nll), nll, tokens: s.length - 1 };
    });
  }

  /**
   * Sentence embeddings: the final hidden state (after the last RMSNorm, before the output head) pooled over the
   * tokens of each text — `'mean'` (default) over every token, or `'last'` (the last token, which has seen the
   * whole text). Returns `[texts, hiddenDim]`, one row per text (a single text gives one row). Several texts run
   * as ONE forward pass: shorter rows are padded at the end, which cannot change the real tokens' states because
   * attention is causal (so a batch equals separate calls); `normalize: true` scales each row to unit L2 norm.
   * @example
   * ```ts
   * const e = await model.embed(['Lily liked the park.', 'The dog ran home.'], { normalize: true }); // [2, 64]
   * const cosine = e.data.slice(0, 64).reduce((s, v, i) => s + v * e.data[64 + i], 0);
   * ```
   * @throws InvalidArgumentError for an empty list, a text longer than the context, or a bad option.
   */
  async embed(
    text: string | ArrayLike<number> | Array<string | ArrayLike<number>>,
    options: { pooling?: 'mean' | 'last'; normalize?: boolean; addBos?: boolean } = {},
  ): Promise<Tensor<'float32'>> {
    if (!this.gate.holds()) return this.gate.read('embed()', () => this.embed(text, options));
    const pooling = options.pooling ?? 'mean';
    if (pooling !== 'mean' && pooling !== 'last') {
      throw new InvalidArgumentError(`Expected 'mean' or 'last' for pooling but received ${describe(options.pooling)}`);
    }
    if (Array.isArray(text) && text.length === 0) throw new InvalidArgumentError('Expected at least one text (or token) for text but received an empty array');
    const many = Array.isArray(text) && text.some((t) => typeof t === 'string' || typeof t === 'object');
    const texts = many ? (text as Array<string | ArrayLike<number>>) : [text as string | ArrayLike<number>];
    const seqs = texts.map((t) => this.promptIds(t, options.addBos ?? true));
    const T = Math.max(...seqs.map((s) => s.length));
    if (T > this.arch.maxSequenceLength) {
      const i = seqs.findIndex((s) => s.length === T);
      throw new InvalidArgumentError(`Expected at most maxSequenceLength (${this.arch.maxSequenceLength}) tokens for text ${i} but received ${T}`);
    }
    if (!this.built) await this.build();
    const B = seqs.length;
    const ids = new Int32Array(B * T); // padding id 0: causal attention keeps it out of the real tokens
    seqs.forEach((s, b) => ids.set(s, b * T));
    let x = (await this.tokenEmbedding.apply(new Tensor('int32', [B, T], ids))) as Tensor<'float32'>;
    for (const blk of this.decoderBlocks) x = (await blk.apply(x)) as Tensor<'float32'>;
    const h = (await this.applyFinalNorm(x)).data as Float32Array;
    const D = this.arch.hiddenDim;
    const out = new Float32Array(B * D);
    for (let b = 0; b < B; b++) {
      const n = seqs[b].length;
      const row = out.subarray(b * D, (b + 1) * D);
      const from = pooling === 'last' ? n - 1 : 0;
      for (let t = from; t < n; t++) {
        const src = h.subarray((b * T + t) * D, (b * T + t + 1) * D);
        for (let j = 0; j < D; j++) row[j] += src[j];
      }
      const div = n - from;
      let norm = 0;
      for (let j = 0; j < D; j++) {
        row[j] /= div;
        norm += row[j] * row[j];
      }
      if (options.normalize && norm > 0) {
        const s = 1 / Math.sqrt(norm);
        for (let j = 0; j < D; j++) row[j] *= s;
      }
    }
    return new Tensor('float32', [B, D], out);
  }

  /**
   * Builds a float32 model from a checkpoint in the canonical layout (`lib/io/llama-common.ts`; what
   * `readLlama2cFile`, `readGgufLlamaFile` and the Hugging Face reader return). Matrices `[out, in]` become Dense
   * kernels `[in, out]`.
   * @example
   * ```ts
   * const model = LlamaCausalLM.fromCheckpoint(await readLlama2cFile('stories260K.bin'), tokenizer);
   * ```
   */
  static async fromCheckpoint(checkpoint: LlamaCheckpoint, tokenizer: LlamaTokenizerLike | null = null, options: LayerOptions = {}): Promise<LlamaCausalLM> {
    if (!checkpoint || typeof checkpoint !== 'object' || !(checkpoint.tensors instanceof Map) || !checkpoint.config) {
      throw new InvalidArgumentError(`Expected a Llama checkpoint { config, tensors } for checkpoint but received ${describe(checkpoint)}`);
    }
    const c = checkpoint.config;
    const m = new LlamaCausalLM({
      ...options,
      vocabularySize: c.vocabSize,
      numLayers: c.nLayers,
      numQueryHeads: c.nHeads,
      numKeyValueHeads: c.nKvHeads,
      hiddenDim: c.dim,
      intermediateDim: c.hiddenDim,
      maxSequenceLength: c.seqLen,
      layerNormEpsilon: c.normEps,
      ropeMaxWavelength: c.ropeTheta,
      tieWordEmbeddings: c.tiedEmbeddings,
    });
    await m.build();
    const get = (name: string, shape: number[]): Float32Array => {
      const t = checkpoint.tensors.get(name);
      if (!t || t.dtype !== 'float32' || t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new ShapeMismatchError(
          `Expected tensor '${name}' of shape [${shape.join(', ')}] (float32) in the checkpoint but received ${t ? `a ${t.dtype} tensor of shape [${t.shape.join(', ')}]` : 'none'}`,
        );
      }
      return t.data as Float32Array;
    };
    const setVar = (layer: Layer, varName: string, shape: number[], data: Float32Array) => {
      const v = layer.variables.find((x) => x.name === varName);
      if (!v) throw new InvalidArgumentError(`Layer '${layer.path}' has no variable '${varName}'`);
      v.assign(new Tensor('float32', shape, data) as never);
    };
    const dense = (layer: Dense, name: string, out: number, inn: number) => setVar(layer, 'kernel', [inn, out], transpose(get(name, [out, inn]), out, inn));
    const D = c.dim;
    const hd = D / c.nHeads;
    const kv = c.nKvHeads * hd;
    setVar(m.tokenEmbedding, 'embeddings', [c.vocabSize, D], get('tok_embeddings.weight', [c.vocabSize, D]).slice());
    if (!c.tiedEmbeddings) setVar(m.tokenEmbedding, 'reverse_embeddings', [D, c.vocabSize], transpose(get('output.weight', [c.vocabSize, D]), c.vocabSize, D));
    setVar(m.finalNorm, 'scale', [D], get('norm.weight', [D]).slice());
    m.decoderBlocks.forEach((b, i) => {
      const p = b.sublayers;
      setVar(p.attnNorm, 'scale', [D], get(`layers.${i}.attention_norm.weight`, [D]).slice());
      setVar(p.ffnNorm, 'scale', [D], get(`layers.${i}.ffn_norm.weight`, [D]).slice());
      dense(p.query, `layers.${i}.attention.wq.weight`, D, D);
      dense(p.key, `layers.${i}.attention.wk.weight`, kv, D);
      dense(p.value, `layers.${i}.attention.wv.weight`, kv, D);
      dense(p.output, `layers.${i}.attention.wo.weight`, D, D);
      dense(p.gate, `layers.${i}.feed_forward.w1.weight`, c.hiddenDim, D);
      dense(p.down, `layers.${i}.feed_forward.w2.weight`, D, c.hiddenDim);
      dense(p.up, `layers.${i}.feed_forward.w3.weight`, c.hiddenDim, D);
    });
    m.tokenizer = tokenizer;
    return m;
  }

  /**
   * Loads a Llama model from any supported source, detected from the path: a preset folder (`saveToPreset`), a
   * Hugging Face folder (`config.json` + `model.safetensors` + `tokenizer.json`), a GGUF file (F32/F16 tensors, its
   * embedded tokenizer), a llama2.c checkpoint (`.bin`; the tokenizer from `options.tokenizer`, else a
   * `tokenizer.bin` / `tok<N>.bin` next to it), or a `.keras` file saved by quantkit (tokenizer from
   * `options.tokenizer`).
   * @example
   * ```ts
   * const model = await LlamaCausalLM.fromFile('models/stories260K/stories260K.bin'); // finds tok512.bin
   * ```
   * @throws CorruptFileError / InvalidArgumentError naming the file and what is wrong.
   */
  static async fromFile(file: string, options: { tokenizer?: string | LlamaTokenizerLike | null } = {}): Promise<LlamaCausalLM> {
    if (typeof file !== 'string' || file.length === 0) throw new InvalidArgumentError(`Expected a file or folder path for file but received ${describe(file)}`);
    let stat: fs.Stats;
    try {
      stat = await fs.promises.stat(file);
    } catch {
      throw new InvalidArgumentError(`Expected an existing model file or folder but '${file}' does not exist`);
    }
    const tokArg = options.tokenizer ?? null;
    const explicitTok = async (): Promise<LlamaTokenizerLike | null> =>
      typeof tokArg === 'string' ? Llama2cTokenizer.fromFile(tokArg) : (tokArg as LlamaTokenizerLike | null);
    let model: LlamaCausalLM;
    if (stat.isDirectory()) {
      const cfgPath = path.join(file, 'config.json');
      let cfg: Record<string, unknown> | null = null;
      try {
        cfg = JSON.parse(await fs.promises.readFile(cfgPath, 'utf8')) as Record<string, unknown>;
      } catch (err) {
        throw new CorruptFileError(`Expected a preset or Hugging Face folder with a readable config.json at '${file}': ${(err as Error).message}`);
      }
      if (cfg && cfg.class_name === 'LlamaCausalLM') {
        model = await LlamaCausalLM.fromPreset(file);
      } else {
        const ckpt = await readHfLlamaDir(file);
        model = await LlamaCausalLM.fromCheckpoint(ckpt, (await explicitTok()) ?? ckpt.tokenizer ?? null);
      }
    } else if (file.endsWith('.gguf')) {
      const ckpt = await readGgufLlamaFile(file);
      model = await LlamaCausalLM.fromCheckpoint(ckpt, (await explicitTok()) ?? ckpt.tokenizer ?? null);
    } else if (file.endsWith('.keras')) {
      const { loadModel } = await loadKerasIo();
      const m = await loadModel(file);
      if (!(m instanceof LlamaCausalLM)) throw new InvalidArgumentError(`Expected a LlamaCausalLM in '${file}' but it holds a ${m.constructor.name}`);
      model = m;
      model.tokenizer = await explicitTok();
    } else {
      const ckpt = await readLlama2cFile(file);
      let tok = await explicitTok();
      if (!tok) {
        const dir = path.dirname(file);
        const names = (await fs.promises.readdir(dir)).filter((n) => n === 'tokenizer.bin' || /^tok\d+\.bin$/.test(n)).sort();
        const want = names.find((n) => n === `tok${ckpt.config.vocabSize}.bin`) ?? names.find((n) => n === 'tokenizer.bin');
        if (want) tok = await Llama2cTokenizer.fromFile(path.join(dir, want));
      }
      model = await LlamaCausalLM.fromCheckpoint(ckpt, tok);
    }
    return model;
  }

  /**
   * Saves the model as a preset folder (KerasHub's `save_to_preset` layout): `config.json` (the model config, with
   * the quantized layers' policies), `model.weights.h5` (Keras weights layout), `tokenizer.json` plus the tokenizer
   * file under `assets/tokenizer/`, and `metadata.json`. An int8 preset's weights file is ~4× smaller than float32.
   * @example
   * ```ts
   * await model.quantize('int8');
   * await model.saveToPreset('stories-int8');
   * const again = await LlamaCausalLM.fromPreset('stories-int8');
   * ```
   */
  async saveToPreset(dir: string): Promise<void> {
    if (!this.gate.holds()) return this.gate.read('saveToPreset()', () => this.saveToPreset(dir));
    if (typeof dir !== 'string' || dir.length === 0) throw new InvalidArgumentError(`Expected a directory path for dir but received ${describe(dir)}`);
    await fs.promises.mkdir(path.join(dir, 'assets', 'tokenizer'), { recursive: true });
    const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v, null, 2));
    const { weightsTree } = await loadKerasIo();
    // Each file is replaced atomically; metadata.json, written last, records their SHA-256 so that fromPreset()
    // detects a folder torn by a crash between two files (or modified later).
    const files: Array<[string, Uint8Array]> = [
      ['config.json', json(serializeLayer(this))],
      ['model.weights.h5', await writeHdf5(weightsTree(this))],
    ];
    const tok = this.tokenizer as (LlamaTokenizerLike & { toBytes?: () => Uint8Array }) | null;
    if (tok && typeof tok.toBytes === 'function') {
      files.push(['assets/tokenizer/tokenizer.bin', tok.toBytes()]);
      files.push(['tokenizer.json', json({ class_name: 'Llama2cTokenizer', config: { file: 'assets/tokenizer/tokenizer.bin' } })]);
    }
    const sha256: Record<string, string> = {};
    for (const [name, bytes] of files) {
      await writeFileAtomic(path.join(dir, ...name.split('/')), bytes);
      sha256[name] = createHash('sha256').update(bytes).digest('hex');
    }
    await writeFileAtomic(
      path.join(dir, 'metadata.json'),
      json({ quantkit_version: packageVersion(), parameter_count: this.countParams(), date_saved: new Date().toISOString(), format: 'quantkit-preset-1', quantkit: { sha256 } }),
    );
  }

  /**
   * Loads a preset folder written by {@link LlamaCausalLM.saveToPreset} (quantized layers come back quantized).
   * Loading never executes code from the folder.
   * @example
   * ```ts
   * const model = await LlamaCausalLM.fromPreset('stories-int8');
   * console.log((await model.generate('Once upon a time')).text);
   * ```
   * @throws CorruptFileError for a missing or malformed file, InvalidArgumentError for a preset of another class.
   */
  static async fromPreset(dir: string): Promise<LlamaCausalLM> {
    const read = async (f: string) => {
      try {
        return await fs.promises.readFile(path.join(dir, f));
      } catch (err) {
        throw new CorruptFileError(`Expected a preset folder with '${f}' at '${dir}' but it could not be read: ${(err as Error).message}`);
      }
    };
    await verifyPresetChecksums(dir, read);
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse((await read('config.json')).toString('utf8')) as Record<string, unknown>;
    } catch (err) {
      if (err instanceof CorruptFileError) throw err;
      throw new CorruptFileError(`${dir}/config.json is not valid JSON: ${(err as Error).message}`);
    }
    if (!entry || typeof entry !== 'object' || entry.class_name !== 'LlamaCausalLM' || typeof entry.config !== 'object') {
      throw new InvalidArgumentError(`Expected a LlamaCausalLM preset at '${dir}' but config.json describes ${describe(entry?.class_name)}`);
    }
    const model = await runWithAllocationBudget(getMaxLoadBytes(), `${dir}/config.json`, () => LlamaCausalLM.fromConfig(entry.config as Record<string, unknown>));
    await model.loadWeights(new Uint8Array(await read('model.weights.h5')));
    if (fs.existsSync(path.join(dir, 'tokenizer.json'))) {
      const t = JSON.parse((await read('tokenizer.json')).toString('utf8')) as { class_name?: unknown; config?: { file?: unknown } };
      if (t.class_name !== 'Llama2cTokenizer' || typeof t.config?.file !== 'string' || t.config.file.includes('..') || path.isAbsolute(t.config.file)) {
        throw new CorruptFileError(`${dir}/tokenizer.json: expected { class_name: 'Llama2cTokenizer', config: { file: <path inside the preset> } }`);
      }
      model.tokenizer = Llama2cTokenizer.fromBytes(new Uint8Array(await read(t.config.file)), { source: `${dir}/${t.config.file}` });
    }
    return model;
  }

  /**
   * The Keras-style config. Quantized sub-layers are recorded as a `DTypePolicyMap` (path → policy) in `dtype`,
   * so that {@link LlamaCausalLM.fromConfig} rebuilds them quantized, ready for their weights.
   */
  override getConfig(): Record<string, unknown> {
    const a = this.arch;
    const entries: Record<string, DTypePolicyLike> = {};
    for (const l of this.flattenLayers({ includeSelf: false })) {
      if (l.isQuantized && l.savableChildren().length === 0) entries[l.path] = l.effectivePolicy;
    }
    const dtype = Object.keys(entries).length > 0 ? serializeDTypePolicy(new DTypePolicyMap('float32', entries)) : serializeDTypePolicy(this.dtypePolicy);
    return {
      name: this.name,
      trainable: this.trainable,
      dtype,
      vocabulary_size: a.vocabularySize,
      num_layers: a.numLayers,
      num_query_heads: a.numQueryHeads,
      num_key_value_heads: a.numKeyValueHeads,
      hidden_dim: a.hiddenDim,
      intermediate_dim: a.intermediateDim,
      max_sequence_length: a.maxSequenceLength,
      layer_norm_epsilon: a.layerNormEpsilon,
      rope_max_wavelength: a.ropeMaxWavelength,
      tie_word_embeddings: a.tieWordEmbeddings,
    };
  }

  /**
   * Rebuilds the model from {@link LlamaCausalLM.getConfig} output (weights are loaded separately).
   * @example
   * ```ts
   * const m = LlamaCausalLM.fromConfig(model.getConfig());
   * ```
   */
  static override async fromConfig(config: Record<string, unknown>): Promise<LlamaCausalLM> {
    const c = checkLayerConfig(config, 'LlamaCausalLM');
    const dtype = c.dtype === undefined || c.dtype === null ? undefined : getDTypePolicy(c.dtype as DTypePolicyLike);
    const m = new LlamaCausalLM({
      name: typeof c.name === 'string' ? c.name : undefined,
      ...(dtype ? { dtype } : {}),
      vocabularySize: c.vocabulary_size as number,
      numLayers: c.num_layers as number,
      numQueryHeads: c.num_query_heads as number,
      numKeyValueHeads: c.num_key_value_heads as number,
      hiddenDim: c.hidden_dim as number,
      intermediateDim: c.intermediate_dim as number,
      maxSequenceLength: c.max_sequence_length as number,
      layerNormEpsilon: (c.layer_norm_epsilon ?? 1e-5) as number,
      ropeMaxWavelength: (c.rope_max_wavelength ?? 10000) as number,
      tieWordEmbeddings: (c.tie_word_embeddings ?? true) as boolean,
    });
    await m.build();
    return m;
  }
}

/** Checks the SHA-256 digests a preset's metadata.json records (presets without them pass). */
async function verifyPresetChecksums(dir: string, read: (f: string) => Promise<Buffer>): Promise<void> {
  if (!fs.existsSync(path.join(dir, 'metadata.json'))) return;
  let meta: { quantkit?: { sha256?: unknown } };
  try {
    meta = JSON.parse((await read('metadata.json')).toString('utf8')) as typeof meta;
  } catch (err) {
    throw new CorruptFileError(`Expected valid JSON in ${dir}/metadata.json but received an error: ${(err as Error).message}`);
  }
  const sums = meta?.quantkit?.sha256;
  if (sums === undefined) return;
  if (sums === null || typeof sums !== 'object' || Array.isArray(sums)) {
    throw new CorruptFileError(`Expected an object of file -> SHA-256 for quantkit.sha256 in ${dir}/metadata.json but received ${describe(sums)}`);
  }
  for (const [name, want] of Object.entries(sums as Record<string, unknown>)) {
    if (name.split('/').some((seg) => seg === '..' || seg === '') || path.isAbsolute(name) || typeof want !== 'string') {
      throw new CorruptFileError(`Expected a relative file name and a hex digest in quantkit.sha256 of ${dir}/metadata.json but received ${JSON.stringify(name)}: ${describe(want)}`);
    }
    const got = createHash('sha256').update(await read(name)).digest('hex');
    if (got !== want) {
      throw new CorruptFileError(`Expected SHA-256 ${want} for ${dir}/${name} (recorded in metadata.json) but received ${got}: the file was modified, corrupted, or the save that wrote it was interrupted`);
    }
  }
}

_registerModelDeserializer('LlamaCausalLM', (c) => LlamaCausalLM.fromConfig(c));
registerLayer(LlamaDecoderBlock as unknown as LayerClass, 'LlamaDecoderBlock');

// ---------------------------------------------------------------------------------------------------------------
// Tokenizer, sampling, generation, perplexity

function checkGenerateOptions(
  o: GenerateOptions,
): Required<Omit<GenerateOptions, 'signal' | 'onToken' | 'batcher'>> & { signal: AbortSignal | null; onToken: ((chunk: GenerateChunk, index: number) => void) | null; batcher: LlamaDecodeBatcher | null } {
  if (o === null || typeof o !== 'object') throw new InvalidArgumentError(`Expected an options object for options but received ${describe(o)}`);
  const maxNewTokens = o.maxNewTokens ?? 64;
  if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 0) throw new InvalidArgumentError(`Expected a non-negative integer for maxNewTokens but received ${describe(o.maxNewTokens)}`);
  const temperature = o.temperature ?? 0;
  if (typeof temperature !== 'number' || !(temperature >= 0) || !Number.isFinite(temperature)) throw new InvalidArgumentError(`Expected a finite number >= 0 for temperature but received ${describe(o.temperature)}`);
  const topK = o.topK ?? 0;
  if (!Number.isSafeInteger(topK) || topK < 0) throw new InvalidArgumentError(`Expected a non-negative integer for topK but received ${describe(o.topK)}`);
  const topP = o.topP ?? 1;
  if (typeof topP !== 'number' || !(topP >= 0 && topP <= 1)) throw new InvalidArgumentError(`Expected a number in [0, 1] for topP but received ${describe(o.topP)}`);
  const seed = o.seed ?? 42;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new InvalidArgumentError(`Expected a non-negative integer for seed but received ${describe(o.seed)}`);
  const stop = o.stop ?? [];
  if (!Array.isArray(stop) || !stop.every((s) => (typeof s === 'string' && s.length > 0) || Number.isSafeInteger(s))) {
    throw new InvalidArgumentError(`Expected an array of non-empty strings or token ids for stop but received ${describe(o.stop)}`);
  }
  const onToken = o.onToken ?? null;
  if (onToken !== null && typeof onToken !== 'function') throw new InvalidArgumentError(`Expected a function for onToken but received ${describe(o.onToken)}`);
  const batcher = o.batcher ?? null;
  if (batcher !== null && !(batcher instanceof LlamaDecodeBatcher)) throw new InvalidArgumentError(`Expected a LlamaDecodeBatcher for batcher but received ${describe(o.batcher)}`);
  return { maxNewTokens, temperature, topK, topP, seed, stop, ignoreEos: o.ignoreEos ?? false, addBos: o.addBos ?? true, signal: o.signal ?? null, onToken, batcher };
}

/** What generation and perplexity need from a tokenizer (quantkit's llama2.c, GGUF and Hugging Face tokenizers). */
export interface LlamaTokenizerLike {
  encode(text: string, options?: { bos?: boolean; eos?: boolean }): ArrayLike<number>;
  decode(ids: ArrayLike<number>): string;
  readonly bosId: number;
  readonly eosId: number;
}

/**
 * llama2.c's random number generator (run.c: 64-bit xorshift*, `random_f32 = (u32 >> 8) / 2^24`), so that seeded
 * sampling reproduces llama2.c's outputs.
 * @example
 * ```ts
 * const rng = new XorShiftRng(42);
 * rng.nextFloat(); // in [0, 1)
 * ```
 */
export class XorShiftRng {
  private state: bigint;
  constructor(seed: number | bigint) {
    this.state = BigInt.asUintN(64, BigInt(seed));
  }
  /** run.c `random_u32`. */
  nextU32(): number {
    let s = this.state;
    s ^= s >> 12n;
    s = BigInt.asUintN(64, s ^ (s << 25n));
    s ^= s >> 27n;
    this.state = s;
    return Number(BigInt.asUintN(64, s * 0x2545f4914f6cdd1dn) >> 32n);
  }
  /** run.c `random_f32`: a float32 in [0, 1). */
  nextFloat(): number {
    return Math.fround((this.nextU32() >>> 8) / 16777216);
  }
}

/** Options of {@link LlamaCausalLM.generate} and {@link LlamaCausalLM.stream}. */
export interface GenerateOptions {
  /** New tokens at most (default 64). */
  maxNewTokens?: number;
  /** 0 = greedy (default); otherwise logits are divided by it before sampling. */
  temperature?: number;
  /** Keep only the k most likely tokens when sampling (0 = all, default). */
  topK?: number;
  /** Nucleus sampling: the smallest set whose probability exceeds topP (1 = off, default; llama2.c's rule). */
  topP?: number;
  /** Seed of the sampler (default 42). */
  seed?: number;
  /** Stop sequences (strings, or token ids); generation also stops at BOS/EOS unless `ignoreEos`. */
  stop?: Array<string | number>;
  /** Do not stop at BOS/EOS tokens (default false). */
  ignoreEos?: boolean;
  /** Prepend BOS to a text prompt (default true). */
  addBos?: boolean;
  /** Abort generation (the promise rejects / the iterator throws AbortedError). */
  signal?: AbortSignal | null;
  /**
   * Called with every generated token as it is produced, and the index of its prompt (0 for a single prompt;
   * the prompt's position for an array of prompts decoded as a batch).
   */
  onToken?: ((chunk: GenerateChunk, index: number) => void) | null;
  /**
   * Run the decoding steps of a single-prompt call through a {@link LlamaDecodeBatcher}, which batches them with
   * the steps of the other calls sharing it (a server's concurrent requests arriving at different times; an array
   * of prompts given at once is batched without it). The tokens are those of an unbatched call up to float
   * rounding (the batched projections may sum in another order).
   */
  batcher?: LlamaDecodeBatcher | null;
}

/**
 * Batches the decoding steps of concurrent `generate()` / `stream()` calls on one model: each call's next step
 * is queued and, once the event loop has let the other calls queue theirs, all of them run as one
 * {@link LlamaCausalLM.decodeStep} (at most `maxBatch` rows). Streams join and leave at any step (continuous
 * batching); each keeps its own KV cache, position, sampler and stop rules.
 * @example
 * ```ts
 * const batcher = new LlamaDecodeBatcher({ maxBatch: 32 });
 * const results = await Promise.all(prompts.map((p) => model.generate(p, { maxNewTokens: 32, batcher })));
 * console.log(batcher.steps, batcher.rows); // forward passes run, rows decoded
 * ```
 */
export class LlamaDecodeBatcher {
  readonly maxBatch: number;
  /** Batched forward passes run so far. */
  steps = 0;
  /** Rows (tokens) decoded so far. */
  rows = 0;
  private queue: Array<{ model: LlamaCausalLM; token: number; cache: LlamaKVCache; resolve: (l: Float32Array) => void; reject: (e: unknown) => void }> = [];
  private scheduled = false;

  constructor(options: { maxBatch?: number } = {}) {
    const m = options?.maxBatch ?? 32;
    if (!Number.isSafeInteger(m) || m < 1) throw new InvalidArgumentError(`Expected a positive integer for maxBatch but received ${describe(options?.maxBatch)}`);
    this.maxBatch = m;
  }

  /** Queues one step (`token` appended to `cache`); resolves with that row's logits. */
  step(model: LlamaCausalLM, token: number, cache: LlamaKVCache): Promise<Float32Array> {
    return new Promise((resolve, reject) => {
      this.queue.push({ model, token, cache, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    while (this.queue.length) {
      // one model per batch (a batcher shared by several models runs each model's rows separately)
      const model = this.queue[0].model;
      const group: typeof this.queue = [];
      const rest: typeof this.queue = [];
      for (const j of this.queue) (j.model === model && group.length < this.maxBatch ? group : rest).push(j);
      this.queue = rest;
      try {
        const logits = await model.decodeStep(group.map((j) => j.token), group.map((j) => j.cache));
        const V = model.arch.vocabularySize;
        this.steps++;
        this.rows += group.length;
        group.forEach((j, i) => j.resolve(logits.slice(i * V, (i + 1) * V)));
      } catch (err) {
        for (const j of group) j.reject(err);
      }
    }
    this.scheduled = false;
  }
}


/** The decoding state of one sequence. */
interface DecodeRow {
  promptTokens: number[];
  promptText: string;
  rng: XorShiftRng;
  tokens: number[];
  text: string;
  stopReason: GenerateResult['stopReason'];
  firstTokenMs: number;
  tFirst: number;
}

/** One generated sequence. */
export interface GenerateResult {
  /** The generated text (without the prompt). */
  text: string;
  /** The generated token ids. */
  tokens: number[];
  /** The prompt's token ids (with BOS). */
  promptTokens: number[];
  /** Why generation stopped. */
  stopReason: 'length' | 'eos' | 'stop' | 'context';
  /** Milliseconds to the first generated token (prompt processing included). */
  firstTokenMs: number;
  /** Decode speed after the first token (tokens per second). */
  tokensPerSecond: number;
}

/** One streamed step. */
export interface GenerateChunk {
  token: number;
  /** The text this token adds (may be empty while a multi-byte character is incomplete). */
  text: string;
}

/** -log softmax(row)[target], computed stably (the max is subtracted). */
function tokenNll(row: Float32Array, target: number, exp: (x: number) => number, log: (x: number) => number): number {
  const V = row.length;
  let mx = -Infinity;
  for (let j = 0; j < V; j++) if (row[j] > mx) mx = row[j];
  let sum = 0;
  for (let j = 0; j < V; j++) sum += exp(row[j] - mx);
  return log(sum) + mx - row[target];
}

function f32Softmax(logits: Float32Array): Float32Array {
  const p = new Float32Array(logits.length);
  let mx = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > mx) mx = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    p[i] = Math.exp(logits[i] - mx);
    sum = Math.fround(sum + p[i]);
  }
  for (let i = 0; i < p.length; i++) p[i] = p[i] / sum;
  return p;
}

/** Picks the next token like run.c's `sample` (plus an optional top-k). @internal */
export function sampleToken(logits: Float32Array, temperature: number, topK: number, topP: number, rng: XorShiftRng): number {
  if (temperature === 0) {
    let a = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[a]) a = i;
    return a;
  }
  const l = new Float32Array(logits.length);
  for (let i = 0; i < l.length; i++) l[i] = logits[i] / temperature;
  if (topK > 0 && topK < l.length) {
    const sorted = Float32Array.from(l).sort();
    const kth = sorted[sorted.length - topK];
    for (let i = 0; i < l.length; i++) if (l[i] < kth) l[i] = -Infinity;
  }
  const probs = f32Softmax(l);
  const coin = rng.nextFloat();
  if (topP <= 0 || topP >= 1) {
    let cdf = 0;
    for (let i = 0; i < probs.length; i++) {
      cdf = Math.fround(cdf + probs[i]);
      if (coin < cdf) return i;
    }
    return probs.length - 1;
  }
  const cutoff = Math.fround((1 - topP) / (probs.length - 1));
  const idx: number[] = [];
  for (let i = 0; i < probs.length; i++) if (probs[i] >= cutoff) idx.push(i);
  idx.sort((a, b) => probs[b] - probs[a]);
  let cum = 0;
  let last = idx.length - 1;
  for (let i = 0; i < idx.length; i++) {
    cum = Math.fround(cum + probs[idx[i]]);
    if (cum > topP) {
      last = i;
      break;
    }
  }
  const r = Math.fround(coin * cum);
  let cdf = 0;
  for (let i = 0; i <= last; i++) {
    cdf = Math.fround(cdf + probs[idx[i]]);
    if (r < cdf) return idx[i];
  }
  return idx[last];
}
