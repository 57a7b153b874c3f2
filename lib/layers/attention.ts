/**
 * Attention layers built like Keras's: `MultiHeadAttention` and `GroupedQueryAttention` (alias
 * `GroupQueryAttention`) own `EinsumDense` projections named `query`, `key`, `value`, `attention_output` (and
 * `gate`), with Keras's equations, kernel shapes, attribute names (for the weights file) and configs. They are
 * quantized through those projections: `await mha.quantize('int8')` quantizes every projection and records their
 * policies in a {@link DTypePolicyMap} that becomes the layer's own `dtype`, so `getConfig()` rebuilds the
 * quantized structure (Keras's MHA does not record them; KerasHub backbones do it the same way).
 *
 * Also {@link CompositeLayer}, the base of layers made of sub-layers (the transformer block uses it too).
 * @packageDocumentation
 */
import { InvalidArgumentError, ShapeMismatchError, UnsupportedError } from '../errors';
import { DTypePolicy, DTypePolicyMap, QuantizedDTypePolicy } from '../dtype-policies';
import { matmul } from '../ops/matmul';
import { QuantizationConfig, QuantizationMode } from '../quantizers';
import { Tensor, describe } from '../tensor';
import {
  broadcastIndex,
  broadcastShapes,
  checkLayerConfig,
  deserializeInitializer,
  Dropout,
  layerOptionsFromConfig,
  serializeInitializer,
  setLayerPath,
  Softmax,
} from './core-layers';
import { Dense } from './dense';
import { EinsumDense } from './einsum';
import { Embedding } from './embedding';
import type { Initializer } from './initializers';
import { Layer, LayerOptions } from './layer';

// ---------------------------------------------------------------------------------------------------------
// CompositeLayer
// ---------------------------------------------------------------------------------------------------------

/**
 * A layer made of sub-layers (Keras layers that create layers in `build`). Sub-layers live at
 * `<this path>/<sub-layer name>` and receive this layer's dtype policy (a {@link DTypePolicyMap} is passed whole,
 * so each sub-layer takes its own entry). Quantizing the composite layer quantizes its `Dense`, `EinsumDense`
 * and `Embedding` descendants and records their policies in a map that becomes this layer's policy.
 * @example
 * ```ts
 * await block.quantize('int8');
 * block.dtypePolicy;                          // DTypePolicyMap { 'block/mha/query': int8_from_float32, ... }
 * block.getConfig().dtype.class_name;         // 'DTypePolicyMap'
 * ```
 */
export abstract class CompositeLayer extends Layer {
  /** Sub-layers as `[Keras attribute name, layer]` (empty before build). */
  protected abstract children(): Array<[string, Layer]>;

  /** The sub-layers whose weights Keras saves under this layer, by attribute name (sorted). */
  override savableChildren(): Array<[string, Layer]> {
    return this.children()
      .slice()
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  /** Creates a sub-layer's path and returns the layer (call before building it). */
  protected adopt<L extends Layer>(layer: L): L {
    setLayerPath(layer, `${this.path}/${layer.name}`);
    return layer;
  }

  /**
   * The quantizable leaves under this layer (`Dense`, `EinsumDense`, `Embedding`, recursively), in build order.
   * @example
   * ```ts
   * mha.quantizableLayers().map((l) => l.path); // ['mha/query', 'mha/key', 'mha/value', 'mha/attention_output']
   * ```
   */
  quantizableLayers(): Layer[] {
    const out: Layer[] = [];
    for (const [, child] of this.children()) {
      if (child instanceof CompositeLayer) out.push(...child.quantizableLayers());
      else if (child instanceof Dense || child instanceof EinsumDense || child instanceof Embedding) out.push(child);
    }
    return out;
  }

  /** Every sub-layer, recursively. */
  private descendants(): Layer[] {
    const out: Layer[] = [];
    for (const [, child] of this.children()) {
      out.push(child);
      if (child instanceof CompositeLayer) out.push(...child.descendants());
    }
    return out;
  }

  /** Marks the layer quantized when a sub-layer was built quantized (a policy map entry, when loading). */
  protected markQuantizedFromChildren(): void {
    if (this.quantizableLayers().some((l) => l.isQuantized)) this._isQuantized = true;
  }

  protected override async quantizeLayer(mode: QuantizationMode, config: QuantizationConfig, _typeCheck: boolean): Promise<void> {
    if (mode === 'gptq') {
      throw new InvalidArgumentError("GPTQ quantizes through Model.quantize('gptq', { config }) with calibration data; a composite layer cannot be calibrated on its own");
    }
    const targets = this.quantizableLayers().filter((l) => !l.isQuantized);
    if (mode === 'float8' && targets.some((l) => l instanceof Embedding)) {
      throw new UnsupportedError(`Invalid quantization mode. Expected one of ('int8', 'int4'). Received: quantization_mode=${mode} (layer '${this.name}' contains an Embedding)`);
    }
    for (const l of targets) await l.quantize({ config });
    await this.recordSubLayerPolicies();
  }

  /**
   * Records the policies of the quantized sub-layers in a {@link DTypePolicyMap} (keyed by their paths, default =
   * this layer's float policy) and makes it the policy of this layer and of every sub-layer, so `getConfig()`
   * rebuilds the quantized structure. Call it after quantizing sub-layers one by one (a model does); returns the map.
   * @example
   * ```ts
   * for (const l of mha.quantizableLayers()) await l.quantize('int8');
   * await mha.recordSubLayerPolicies(); // mha.dtypePolicy is now a DTypePolicyMap
   * ```
   */
  async recordSubLayerPolicies(): Promise<DTypePolicyMap> {
    const current = this._policy;
    let map: DTypePolicyMap;
    if (current instanceof DTypePolicyMap) map = current;
    else if (current.quantizationMode !== null) map = new DTypePolicyMap((current as QuantizedDTypePolicy).sourceName);
    else map = new DTypePolicyMap(current.name);
    for (const l of this.quantizableLayers()) {
      const p = l.effectivePolicy;
      if (p.quantizationMode === null) continue;
      const have = map.has(l.path) ? map.get(l.path) : null;
      if (!have || !have.equals(p)) map = map.withEntry(l.path, p);
    }
    this._policy = map;
    for (const d of this.descendants()) await d.setDTypePolicy(map);
    if (this.quantizableLayers().some((l) => l.isQuantized)) this._isQuantized = true;
    return map;
  }

  /**
   * Moves this layer and its sub-layers to `path` (sub-layers to `<path>/<name>`, variables to `<layer path>/<name>`).
   * Entries of a policy map under the old path move with it.
   * @example
   * ```ts
   * await mha.setPath('encoder/mha'); // mha.quantizableLayers()[0].path === 'encoder/mha/query'
   * ```
   */
  async setPath(path: string): Promise<void> {
    const old = this.path;
    setLayerPath(this, path);
    const p = this._policy;
    if (!(p instanceof DTypePolicyMap) || old === path) return;
    const cfg = p.getConfig();
    const entries: Record<string, DTypePolicy> = {};
    for (const [k, v] of p.entries()) entries[k.startsWith(`${old}/`) ? `${path}/${k.slice(old.length + 1)}` : k] = v;
    const map = new DTypePolicyMap(cfg.default_policy as string | Record<string, unknown> | null, entries);
    this._policy = map;
    for (const d of this.descendants()) await d.setDTypePolicy(map);
  }

  /** Sub-layers run their own quantized kernels; the composite computation itself is the same. */
  protected override quantizedCall(inputs: Tensor | Tensor[], options?: Record<string, unknown>): Promise<Tensor> {
    return this.call(inputs, options);
  }

  /** Float32 view of a tensor. */
  protected static f32(t: Tensor): Tensor<'float32'> {
    return t.dtype === 'float32' ? (t as Tensor<'float32'>) : t.toFloat32();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Attention maths
// ---------------------------------------------------------------------------------------------------------

/** Masks accepted by the attention layers' `apply` (Keras `call` arguments). */
export interface AttentionCallOptions {
  /** Boolean-like `[B, T, S]` (or broadcastable, e.g. `[T, S]`): non-zero = may attend. */
  attentionMask?: Tensor | null;
  /** `[B, T]` padding mask of the query (Keras: the query's Keras mask). */
  queryMask?: Tensor | null;
  /** `[B, S]` padding mask of the value. */
  valueMask?: Tensor | null;
  /** `[B, S]` padding mask of the key. */
  keyMask?: Tensor | null;
  /** Lower-triangular mask: query `i` attends to keys `j <= i` (top-left aligned, as Keras). */
  useCausalMask?: boolean;
  /** Ignored: quantkit runs inference (dropout is a no-op). */
  training?: boolean;
}

function maskValues(t: Tensor): ArrayLike<number> {
  return t.dtype === 'float32' || t.dtype === 'int32' || t.dtype === 'uint8' || t.dtype === 'int8' ? (t.data as ArrayLike<number>) : t.toFloat32().data;
}

/**
 * The combined boolean mask `[B, T, S]` (1 = attend) of Keras's `_compute_attention_mask`, or null when nothing
 * is masked.
 * @internal
 */
export function computeAttentionMask(B: number, T: number, S: number, options: AttentionCallOptions, slidingWindow: number | null): Uint8Array | null {
  let mask: Uint8Array | null = null;
  const and = (f: (b: number, t: number, s: number) => boolean) => {
    if (!mask) mask = new Uint8Array(B * T * S).fill(1);
    const m = mask;
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let s = 0; s < S; s++) if (!f(b, t, s)) m[(b * T + t) * S + s] = 0;
  };
  const vec = (name: string, t: Tensor | null | undefined, len: number): ArrayLike<number> | null => {
    if (t === null || t === undefined) return null;
    if (!(t instanceof Tensor) || t.rank !== 2 || t.shape[0] !== B || t.shape[1] !== len) {
      throw new ShapeMismatchError(`Expected a [${B}, ${len}] tensor for ${name} but received ${t instanceof Tensor ? `shape [${t.shape.join(', ')}]` : describe(t)}`);
    }
    return maskValues(t);
  };
  const qm = vec('queryMask', options.queryMask, T);
  const vm = vec('valueMask', options.valueMask, S);
  const km = vec('keyMask', options.keyMask, S);
  if (qm) and((b, t) => qm[b * T + t] !== 0);
  if (vm) and((b, _t, s) => vm[b * S + s] !== 0);
  if (km) and((b, _t, s) => km[b * S + s] !== 0);
  if (options.useCausalMask) and((_b, t, s) => t >= s);
  if (slidingWindow !== null) and((_b, t, s) => Math.abs(t - s) < slidingWindow);
  const am = options.attentionMask;
  if (am !== null && am !== undefined) {
    if (!(am instanceof Tensor)) throw new InvalidArgumentError(`Expected a Tensor or null for attentionMask but received ${describe(am)}`);
    const target = [B, T, S];
    const b = broadcastShapes(am.shape, target);
    if (am.rank < 2 || am.rank > 3 || !b || b.some((d, i) => d !== target[i])) {
      throw new ShapeMismatchError(`Expected an attention mask broadcastable to [${B}, ${T}, ${S}] for attentionMask but received shape [${am.shape.join(', ')}]`);
    }
    const idx = broadcastIndex(am.shape, target);
    const v = maskValues(am);
    and((bb, t, s) => {
      const o = (bb * T + t) * S + s;
      return v[idx ? idx[o] : o] !== 0;
    });
  }
  return mask;
}

/** Shapes of projected attention inputs. */
interface AttendDims {
  B: number;
  T: number;
  S: number;
  /** Query heads. */
  H: number;
  /** Key/value heads (H for MHA). */
  Hkv: number;
  dk: number;
  dv: number;
}

/**
 * Scaled dot-product attention on projected tensors q `[B, T, H, dk]`, k `[B, S, Hkv, dk]`, v `[B, S, Hkv, dv]`
 * (query head h reads key/value head `floor(h / (H / Hkv))`, Keras's `ops.repeat`). Masked logits are excluded;
 * a fully masked row gives zeros when `zeroFullyMasked` (Keras's Softmax-layer path) and the mean of the values
 * otherwise (Keras's `dot_product_attention` path). Returns `[B, T, H, dv]` and, when asked, the probabilities
 * `[B, H, T, S]`.
 * @internal
 */
export async function attend(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  dims: AttendDims,
  mask: Uint8Array | null,
  scale: number,
  zeroFullyMasked: boolean,
  wantScores: boolean,
): Promise<{ out: Float32Array; scores: Float32Array | null }> {
  const { B, T, S, H, Hkv, dk, dv } = dims;
  const rep = H / Hkv;
  const exp = Math.exp; // a local: global lookups are slow in hot loops inside vm contexts (e.g. jest)
  const out = new Float32Array(B * T * H * dv);
  const scores = wantScores ? new Float32Array(B * H * T * S) : null;
  const qh = new Float32Array(T * dk);
  const khT = new Float32Array(dk * S);
  const vh = new Float32Array(S * dv);
  const p = new Float32Array(T * S);
  const row = new Float64Array(S);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / rep);
      for (let t = 0; t < T; t++) for (let c = 0; c < dk; c++) qh[t * dk + c] = q[((b * T + t) * H + h) * dk + c];
      for (let s = 0; s < S; s++) for (let c = 0; c < dk; c++) khT[c * S + s] = k[((b * S + s) * Hkv + g) * dk + c];
      for (let s = 0; s < S; s++) for (let c = 0; c < dv; c++) vh[s * dv + c] = v[((b * S + s) * Hkv + g) * dv + c];
      const logits = (await matmul(new Tensor('float32', [T, dk], qh), new Tensor('float32', [dk, S], khT))).data;
      for (let t = 0; t < T; t++) {
        const mrow = mask ? (b * T + t) * S : -1;
        let max = -Infinity;
        for (let s = 0; s < S; s++) {
          const keep = !mask || mask[mrow + s] !== 0;
          row[s] = keep ? logits[t * S + s] * scale : -Infinity;
          if (row[s] > max) max = row[s];
        }
        if (max === -Infinity) {
          const fill = zeroFullyMasked ? 0 : 1 / S;
          for (let s = 0; s < S; s++) p[t * S + s] = fill;
          continue;
        }
        let sum = 0;
        for (let s = 0; s < S; s++) {
          row[s] = exp(row[s] - max);
          sum += row[s];
        }
        for (let s = 0; s < S; s++) p[t * S + s] = row[s] / sum;
      }
      if (scores) scores.set(p, (b * H + h) * T * S);
      const o = (await matmul(new Tensor('float32', [T, S], p), new Tensor('float32', [S, dv], vh))).data;
      for (let t = 0; t < T; t++) for (let c = 0; c < dv; c++) out[((b * T + t) * H + h) * dv + c] = o[t * dv + c];
    }
  }
  return { out, scores };
}

/** Keras `_build_proj_equation`: free input letters, contracted letters, then new output letters. */
function projEquation(freeDims: number, boundDims: number, outputDims: number): { equation: string; biasAxes: string } {
  const letter = (i: number) => String.fromCharCode(97 + i);
  let input = '';
  let kernel = '';
  let output = '';
  let bias = '';
  for (let i = 0; i < freeDims; i++) {
    input += letter(i);
    output += letter(i);
  }
  for (let i = 0; i < boundDims; i++) {
    input += letter(freeDims + i);
    kernel += letter(freeDims + i);
  }
  for (let i = 0; i < outputDims; i++) {
    const c = letter(freeDims + boundDims + i);
    kernel += c;
    output += c;
    bias += c;
  }
  return { equation: `${input},${kernel}->${output}`, biasAxes: bias };
}

type Shape = readonly (number | null)[];

/** The three input shapes of an attention layer's build (`[query, value, key?]`). */
function attentionShapes(layer: Layer, inputShape: Shape | readonly Shape[]): { query: Shape; value: Shape; key: Shape } {
  const list = inputShape as readonly Shape[];
  if (!Array.isArray(list) || list.length < 2 || list.length > 3 || !list.every((s) => Array.isArray(s))) {
    throw new InvalidArgumentError(`Expected [query, value] or [query, value, key] input shapes for layer '${layer.name}' but received ${describe(inputShape)}`);
  }
  const [query, value, key = value] = list;
  for (const [n, s] of [['query', query], ['value', value], ['key', key]] as const) {
    if (s.length !== 3) {
      throw new UnsupportedError(`Expected a rank-3 ${n} ([batch, seq, features]; attention over axis 1) for layer '${layer.name}' but received shape [${s.join(', ')}]`);
    }
    if (s[2] === null || !(s[2] >= 1)) throw new InvalidArgumentError(`Expected a known last dimension for the ${n} of layer '${layer.name}' but received shape [${s.join(', ')}]`);
  }
  if (value.slice(1, -1).some((d, i) => d !== key[1 + i])) {
    throw new ShapeMismatchError(
      `All dimensions of \`value\` and \`key\`, except the last one, must be equal. Received: value_shape=[${value.join(', ')}] and key_shape=[${key.join(', ')}]`,
    );
  }
  return { query, value, key };
}

function checkPositiveInt(v: unknown, name: string, keras?: string): number {
  if (!Number.isSafeInteger(v) || (v as number) <= 0) {
    throw new InvalidArgumentError(`Expected a positive integer for ${name} but received ${describe(v)}${keras ? `: ${keras}` : ''}`);
  }
  return v as number;
}

function checkRate(v: unknown): number {
  if (typeof v !== 'number' || !(v >= 0 && v < 1)) throw new InvalidArgumentError(`Expected a number in [0, 1) for dropout but received ${describe(v)}`);
  return v;
}

function checkWindow(v: unknown): number | null {
  if (v === null || v === undefined) return null;
  return checkPositiveInt(v, 'slidingWindow', `\`sliding_window\` must be \`None\` or a positive integer. Received: sliding_window=${String(v)}`);
}

/** Options shared by the attention layers. */
export interface AttentionBaseOptions extends LayerOptions {
  /** Attention-probability dropout rate (a no-op at inference; kept for the config). Default 0. */
  dropout?: number;
  /** Biases in the projections (default true). */
  useBias?: boolean;
  /** Gated attention: a `gate` projection with sigmoid multiplies the attention output (default false). */
  useGate?: boolean;
  /** Each query attends to keys within `slidingWindow - 1` positions on either side. */
  slidingWindow?: number | null;
  kernelInitializer?: Initializer;
  biasInitializer?: Initializer;
  /** Seed: Keras's dropout seed; quantkit also derives the projections' initializer seeds from it. */
  seed?: number | null;
}

/** Result of `applyWithScores`. */
export interface AttentionWithScores {
  /** `[B, T, features]` (or the configured output shape). */
  output: Tensor<'float32'>;
  /** Attention probabilities `[B, heads, T, S]`. */
  scores: Tensor<'float32'>;
}

/** What the subclasses build. */
interface Projections {
  query: EinsumDense;
  key: EinsumDense;
  value: EinsumDense;
  output: EinsumDense;
  gate: EinsumDense | null;
  softmax: Softmax;
  dropout: Dropout;
}

/** Shared logic of {@link MultiHeadAttention} and {@link GroupedQueryAttention}. */
abstract class AttentionLayer extends CompositeLayer {
  /** Shapes seen at build (for Keras's `build_config`). */
  protected builtShapes: { query: readonly (number | null)[]; value: readonly (number | null)[]; key: readonly (number | null)[] } | null = null;

  /**
   * Keras's `build_config` for attention layers: `{ shapes_dict: { query_shape, value_shape, key_shape? } }`.
   * @example
   * ```ts
   * mha.getBuildConfig(); // { shapes_dict: { query_shape: [null, 8, 32], value_shape: [null, 8, 32] } }
   * ```
   */
  getBuildConfig(): Record<string, unknown> | null {
    if (!this.builtShapes) return null;
    const { query, value, key } = this.builtShapes;
    const same = key.length === value.length && key.every((d, i) => d === value[i]);
    const shapes: Record<string, unknown> = { query_shape: [...query], value_shape: [...value] };
    if (!same) shapes.key_shape = [...key];
    return { shapes_dict: shapes };
  }

  /** Sub-layers under the attribute names Keras saves them with (`prefix` is '' or '_' for the projections). */
  protected projectionChildren(prefix: '' | '_'): Array<[string, Layer]> {
    const p = this.proj;
    if (!p) return [];
    const out: Array<[string, Layer]> = [
      [`${prefix}query_dense`, p.query],
      [`${prefix}key_dense`, p.key],
      [`${prefix}value_dense`, p.value],
      [`${prefix}output_dense`, p.output],
      ['_softmax', p.softmax],
      ['_dropout_layer', p.dropout],
    ];
    if (p.gate) out.push(['_gate_dense', p.gate]);
    return out;
  }

  readonly dropout: number;
  readonly useBias: boolean;
  readonly useGate: boolean;
  readonly slidingWindow: number | null;
  protected readonly kernelInitializer: Initializer;
  protected readonly biasInitializer: Initializer;
  readonly seed: number | null;
  protected proj: Projections | null = null;
  /** Feature size of the query, known after build. */
  protected queryDim = -1;
  protected valueIn = -1;
  protected keyIn = -1;

  constructor(options: AttentionBaseOptions) {
    super(options);
    this.dropout = checkRate(options.dropout ?? 0);
    this.useBias = options.useBias ?? true;
    this.useGate = options.useGate ?? false;
    this.slidingWindow = checkWindow(options.slidingWindow);
    this.kernelInitializer = options.kernelInitializer ?? 'glorot_uniform';
    this.biasInitializer = options.biasInitializer ?? 'zeros';
    this.seed = options.seed ?? null;
  }

  /** Query heads, key/value heads, key and value head sizes. */
  protected abstract heads(): { H: number; Hkv: number; dk: number; dv: number };

  /** Options common to the projections. */
  protected projOptions(i: number): { dtype: DTypePolicy | DTypePolicyMap; kernelInitializer: Initializer; biasInitializer: Initializer; seed?: number } {
    return {
      dtype: this._policy,
      kernelInitializer: this.kernelInitializer,
      biasInitializer: this.biasInitializer,
      ...(this.seed === null ? {} : { seed: this.seed + 2 * i }),
    };
  }

  /** The query projection (`query`), built. */
  get queryDense(): EinsumDense {
    return this.built_().query;
  }

  /** The key projection (`key`), built. */
  get keyDense(): EinsumDense {
    return this.built_().key;
  }

  /** The value projection (`value`), built. */
  get valueDense(): EinsumDense {
    return this.built_().value;
  }

  /** The output projection (`attention_output`), built. */
  get outputDense(): EinsumDense {
    return this.built_().output;
  }

  /** The gate projection (`gate`) when `useGate`, built. */
  get gateDense(): EinsumDense | null {
    return this.built_().gate;
  }

  private built_(): Projections {
    if (!this.proj) throw new InvalidArgumentError(`Expected a built layer for '${this.name}' but received an unbuilt one; call apply() or build() first`);
    return this.proj;
  }

  /**
   * Runs the layer on `[query, value]` or `[query, value, key]` (a single tensor means self-attention).
   * @example
   * ```ts
   * const y = await mha.apply([x, x], { useCausalMask: true });
   * ```
   */
  override apply(inputs: Tensor | Tensor[], options: AttentionCallOptions & Record<string, unknown> = {}): Promise<Tensor> {
    return super.apply(inputs instanceof Tensor ? [inputs, inputs] : inputs, options);
  }

  /**
   * Like {@link AttentionLayer.apply}, also returning the attention probabilities `[B, heads, T, S]` (Keras
   * `return_attention_scores=True`; fully masked rows are zeros, as Keras's Softmax layer gives).
   * @example
   * ```ts
   * const { output, scores } = await mha.applyWithScores([q, v]);
   * ```
   */
  async applyWithScores(inputs: Tensor | Tensor[], options: AttentionCallOptions = {}): Promise<AttentionWithScores> {
    const list = inputs instanceof Tensor ? [inputs, inputs] : inputs;
    if (!Array.isArray(list) || list.length === 0 || !list.every((t) => t instanceof Tensor)) {
      throw new InvalidArgumentError(`Expected a Tensor or an array of Tensors for inputs of layer '${this.name}' but received ${describe(inputs)}`);
    }
    if (!this.built) this.build(list.map((t) => t.shape));
    const r = await this.run(list, options, true);
    return { output: r.output, scores: r.scores as Tensor<'float32'> };
  }

  async call(inputs: Tensor | Tensor[], options: AttentionCallOptions = {}): Promise<Tensor<'float32'>> {
    return (await this.run(inputs, options, false)).output;
  }

  private async run(inputs: Tensor | Tensor[], options: AttentionCallOptions, withScores: boolean): Promise<{ output: Tensor<'float32'>; scores: Tensor<'float32'> | null }> {
    const p = this.built_();
    const list = inputs instanceof Tensor ? [inputs, inputs] : inputs;
    if (!Array.isArray(list) || list.length < 2 || list.length > 3) {
      throw new InvalidArgumentError(`Expected [query, value] or [query, value, key] for inputs of layer '${this.name}' but received ${describe(inputs)}`);
    }
    const query = CompositeLayer.f32(list[0]);
    const value = CompositeLayer.f32(list[1]);
    const key = list[2] ? CompositeLayer.f32(list[2]) : value;
    const check = (n: string, t: Tensor, dim: number) => {
      if (t.rank !== 3 || t.shape[2] !== dim) {
        throw new ShapeMismatchError(`Expected a [batch, seq, ${dim}] tensor for the ${n} of layer '${this.name}' but received shape [${t.shape.join(', ')}]`);
      }
    };
    check('query', query, this.queryDim);
    check('value', value, this.valueIn);
    check('key', key, this.keyIn);
    const [B, T] = query.shape;
    const S = value.shape[1];
    if (value.shape[0] !== B || key.shape[0] !== B || key.shape[1] !== S) {
      throw new ShapeMismatchError(
        `Expected the same batch size and equal key/value lengths for layer '${this.name}' but received query [${query.shape.join(', ')}], value [${value.shape.join(', ')}], key [${key.shape.join(', ')}]`,
      );
    }
    const mask = computeAttentionMask(B, T, S, options, this.slidingWindow);
    const { H, Hkv, dk, dv } = this.heads();
    const gate = p.gate ? ((await p.gate.apply(query)) as Tensor<'float32'>) : null;
    const q = (await p.query.apply(query)) as Tensor<'float32'>;
    const k = (await p.key.apply(key)) as Tensor<'float32'>;
    const v = (await p.value.apply(value)) as Tensor<'float32'>;
    const zeroFullyMasked = withScores || this.dropout > 0;
    const r = await attend(q.data, k.data, v.data, { B, T, S, H, Hkv, dk, dv }, mask, 1 / Math.sqrt(dk), zeroFullyMasked, withScores);
    if (gate) for (let i = 0; i < r.out.length; i++) r.out[i] *= gate.data[i];
    const output = (await p.output.apply(new Tensor('float32', [B, T, H, dv], r.out))) as Tensor<'float32'>;
    return { output, scores: r.scores ? new Tensor('float32', [B, H, T, S], r.scores) : null };
  }

  /** Creates softmax and dropout sub-layers (Keras `_softmax`, `_dropout_layer`). */
  protected makeSoftmaxAndDropout(axis: number | number[]): { softmax: Softmax; dropout: Dropout } {
    const softmax = this.adopt(new Softmax({ axis, dtype: this._policy }));
    const dropout = this.adopt(new Dropout({ rate: this.dropout, seed: this.seed, dtype: this._policy }));
    softmax.build([]);
    dropout.build([]);
    return { softmax, dropout };
  }

  /** Config keys shared by both layers. */
  protected sharedConfig(): Record<string, unknown> {
    return {
      kernel_initializer: serializeInitializer(this.kernelInitializer),
      bias_initializer: serializeInitializer(this.biasInitializer),
      kernel_regularizer: null,
      bias_regularizer: null,
      activity_regularizer: null,
      kernel_constraint: null,
      bias_constraint: null,
      seed: this.seed,
    };
  }
}

/** Reads the options common to both attention configs. */
function attentionOptionsFromConfig(c: Record<string, unknown>): AttentionBaseOptions {
  return {
    ...layerOptionsFromConfig(c),
    dropout: (c.dropout ?? 0) as number,
    useBias: (c.use_bias ?? true) as boolean,
    useGate: (c.use_gate ?? false) as boolean,
    slidingWindow: (c.sliding_window ?? null) as number | null,
    kernelInitializer: deserializeInitializer(c.kernel_initializer, 'config.kernel_initializer').init,
    biasInitializer: deserializeInitializer(c.bias_initializer, 'config.bias_initializer').init,
    seed: (c.seed ?? null) as number | null,
  };
}

// ---------------------------------------------------------------------------------------------------------
// MultiHeadAttention
// ---------------------------------------------------------------------------------------------------------

/** Options of {@link MultiHeadAttention}. */
export interface MultiHeadAttentionOptions extends AttentionBaseOptions {
  numHeads: number;
  /** Size of each query/key head. */
  keyDim: number;
  /** Size of each value head (default keyDim). */
  valueDim?: number | null;
  /** Output feature shape (default: the query's last dimension). */
  outputShape?: number | readonly number[] | null;
  /** Attention axes; only attention over axis 1 of rank-3 inputs is supported (null, 1, [1] or [-2]). */
  attentionAxes?: number | readonly number[] | null;
}

/**
 * Multi-head attention exactly as Keras builds it for `[batch, seq, features]` inputs: projections `query`,
 * `key`, `value` (`EinsumDense('abc,cde->abde')`, kernels `[features, heads, dim]`, biases `[heads, dim]`),
 * scaled dot-product attention over axis 1 with masks, and `attention_output` (`'abcd,cde->abe'`, kernel
 * `[heads, valueDim, out]`). Weights are saved under the attributes `query_dense`, `key_dense`, `value_dense`,
 * `output_dense`, `_softmax`, `_dropout_layer` (and `_gate_dense`).
 *
 * @example
 * ```ts
 * const mha = new MultiHeadAttention({ numHeads: 2, keyDim: 16, name: 'mha' });
 * const y = await mha.apply([x, x], { useCausalMask: true });        // x: [batch, seq, 32] -> [batch, seq, 32]
 * const { scores } = await mha.applyWithScores([x, x]);              // [batch, 2, seq, seq]
 * await mha.quantize('int8');                                         // query/key/value/attention_output -> int8
 * mha.getConfig().dtype;                                              // a serialized DTypePolicyMap
 * ```
 */
export class MultiHeadAttention extends AttentionLayer {
  readonly numHeads: number;
  readonly keyDim: number;
  readonly valueDim: number;
  readonly outputShape: readonly number[] | null;
  /** `[1]` once built (Keras normalizes it in build). */
  attentionAxes: readonly number[] | null;

  constructor(options: MultiHeadAttentionOptions) {
    super(options);
    this.numHeads = checkPositiveInt(options.numHeads, 'numHeads', `Received an invalid value for argument \`num_heads\`, expected a positive integer. Received: num_heads=${String(options.numHeads)}`);
    this.keyDim = checkPositiveInt(options.keyDim, 'keyDim', `Received an invalid value for argument \`key_dim\`, expected a positive integer. Received: key_dim=${String(options.keyDim)}`);
    const vd = options.valueDim ?? null;
    this.valueDim = vd === null || vd === 0 ? this.keyDim : checkPositiveInt(vd, 'valueDim');
    const os = options.outputShape ?? null;
    if (os === null || (Array.isArray(os) && os.length === 0)) this.outputShape = null;
    else {
      const list = typeof os === 'number' ? [os] : os;
      if (!Array.isArray(list) || !list.every((d) => Number.isSafeInteger(d) && d > 0)) {
        throw new InvalidArgumentError(`Expected a positive integer or a list of positive integers for outputShape but received ${describe(os)}`);
      }
      this.outputShape = [...list];
    }
    const axes = options.attentionAxes ?? null;
    if (axes === null) this.attentionAxes = null;
    else {
      const list = typeof axes === 'number' ? [axes] : axes;
      if (!Array.isArray(list) || list.length !== 1 || (list[0] !== 1 && list[0] !== -2)) {
        throw new UnsupportedError(`Expected attention over axis 1 (attentionAxes null, 1, [1] or [-2]) for attentionAxes but received ${describe(axes)}`);
      }
      this.attentionAxes = [...list];
    }
  }

  protected heads(): { H: number; Hkv: number; dk: number; dv: number } {
    return { H: this.numHeads, Hkv: this.numHeads, dk: this.keyDim, dv: this.valueDim };
  }

  build(inputShape: Shape | readonly Shape[]): void {
    const { query, value, key } = attentionShapes(this, inputShape);
    this.builtShapes = { query, value, key };
    this.queryDim = query[2] as number;
    this.valueIn = value[2] as number;
    this.keyIn = key[2] as number;
    const H = this.numHeads;
    const pe = projEquation(2, 1, 2);
    const mk = (name: string, i: number, heads: number, dim: number, shape: Shape, activation?: 'sigmoid') => {
      const l = this.adopt(
        new EinsumDense({ name, equation: pe.equation, outputShape: [null, heads, dim], biasAxes: this.useBias ? pe.biasAxes : null, activation, ...this.projOptions(i) }),
      );
      l.build(shape);
      return l;
    };
    const q = mk('query', 0, H, this.keyDim, query);
    const k = mk('key', 1, H, this.keyDim, key);
    const gate = this.useGate ? mk('gate', 4, H, this.valueDim, query, 'sigmoid') : null;
    const v = mk('value', 2, H, this.valueDim, value);
    this.attentionAxes = [1];
    const { softmax, dropout } = this.makeSoftmaxAndDropout([3]);
    const outShape = this.outputShape ?? [this.queryDim];
    const oe = projEquation(2, 2, outShape.length);
    const out = this.adopt(
      new EinsumDense({ name: 'attention_output', equation: oe.equation, outputShape: [null, ...outShape], biasAxes: this.useBias ? oe.biasAxes : null, ...this.projOptions(3) }),
    );
    out.build([query[0], query[1], H, this.valueDim]);
    this.proj = { query: q, key: k, value: v, output: out, gate, softmax, dropout };
    this.built = true;
    this.markQuantizedFromChildren();
  }

  protected children(): Array<[string, Layer]> {
    return this.projectionChildren(''); // Keras's MHA exposes public query_dense/... attributes
  }

  override getConfig(): Record<string, unknown> {
    return {
      ...super.getConfig(),
      num_heads: this.numHeads,
      key_dim: this.keyDim,
      value_dim: this.valueDim,
      dropout: this.dropout,
      use_bias: this.useBias,
      use_gate: this.useGate,
      output_shape: this.outputShape ? [...this.outputShape] : null,
      attention_axes: this.attentionAxes ? [...this.attentionAxes] : null,
      sliding_window: this.slidingWindow,
      ...this.sharedConfig(),
    };
  }

  /**
   * Rebuilds the layer from a Keras config (`num_heads`, `key_dim`, `value_dim`, `dropout`, `use_bias`,
   * `use_gate`, `output_shape`, `attention_axes`, `sliding_window`, initializers, `seed`, and `dtype`, which may
   * be a `DTypePolicyMap` describing quantized projections).
   * @example
   * ```ts
   * const mha = MultiHeadAttention.fromConfig(JSON.parse(configJson).config.layers[1].config);
   * ```
   */
  static fromConfig(config: Record<string, unknown>): MultiHeadAttention {
    const c = checkLayerConfig(config, 'MultiHeadAttention');
    if (c.flash_attention) throw new UnsupportedError('Expected flash_attention to be false or null for config.flash_attention but received true');
    return new MultiHeadAttention({
      ...attentionOptionsFromConfig(c),
      numHeads: c.num_heads as number,
      keyDim: c.key_dim as number,
      valueDim: (c.value_dim ?? null) as number | null,
      outputShape: (c.output_shape ?? null) as number[] | null,
      attentionAxes: (c.attention_axes ?? null) as number[] | null,
    });
  }
}

// ---------------------------------------------------------------------------------------------------------
// GroupedQueryAttention
// ---------------------------------------------------------------------------------------------------------

/** Options of {@link GroupedQueryAttention}. */
export interface GroupedQueryAttentionOptions extends AttentionBaseOptions {
  /** Size of every head. */
  headDim: number;
  numQueryHeads: number;
  /** Must divide numQueryHeads. */
  numKeyValueHeads: number;
}

/**
 * Grouped-query attention as Keras builds it (`keras.layers.GroupQueryAttention`, class
 * `GroupedQueryAttention`): `query` `'bqm,muh->bquh'`, `key`/`value` `'bkm,mvh->bkvh'`, each key/value head
 * shared by `numQueryHeads / numKeyValueHeads` query heads, `attention_output` `'bquh,uhm->bqm'`. Weights are
 * saved under `_query_dense`, `_key_dense`, `_value_dense`, `_output_dense`, `_softmax`, `_dropout_layer`.
 * @example
 * ```ts
 * const gqa = new GroupedQueryAttention({ headDim: 16, numQueryHeads: 4, numKeyValueHeads: 2 });
 * const y = await gqa.apply([x, x], { useCausalMask: true });
 * await gqa.quantize('int4');
 * ```
 */
export class GroupedQueryAttention extends AttentionLayer {
  readonly headDim: number;
  readonly numQueryHeads: number;
  readonly numKeyValueHeads: number;

  constructor(options: GroupedQueryAttentionOptions) {
    super(options);
    this.headDim = checkPositiveInt(options.headDim, 'headDim');
    this.numQueryHeads = checkPositiveInt(options.numQueryHeads, 'numQueryHeads');
    this.numKeyValueHeads = checkPositiveInt(options.numKeyValueHeads, 'numKeyValueHeads');
    if (this.numQueryHeads % this.numKeyValueHeads !== 0) {
      throw new InvalidArgumentError(
        `Expected a divisor of numQueryHeads (${this.numQueryHeads}) for numKeyValueHeads but received ${this.numKeyValueHeads}: \`num_query_heads\` must be divisible by \`num_key_value_heads\`.`,
      );
    }
  }

  protected heads(): { H: number; Hkv: number; dk: number; dv: number } {
    return { H: this.numQueryHeads, Hkv: this.numKeyValueHeads, dk: this.headDim, dv: this.headDim };
  }

  build(inputShape: Shape | readonly Shape[]): void {
    const { query, value, key } = attentionShapes(this, inputShape);
    this.builtShapes = { query, value, key };
    this.queryDim = query[2] as number;
    this.valueIn = value[2] as number;
    this.keyIn = key[2] as number;
    const bias = (axes: string) => (this.useBias ? axes : null);
    const mk = (name: string, i: number, equation: string, heads: number, biasAxes: string, shape: Shape, activation?: 'sigmoid') => {
      const l = this.adopt(new EinsumDense({ name, equation, outputShape: [null, heads, this.headDim], biasAxes: bias(biasAxes), activation, ...this.projOptions(i) }));
      l.build(shape);
      return l;
    };
    const q = mk('query', 0, 'bqm,muh->bquh', this.numQueryHeads, 'uh', query);
    const k = mk('key', 1, 'bkm,mvh->bkvh', this.numKeyValueHeads, 'vh', key);
    const gate = this.useGate ? mk('gate', 4, 'bqm,muh->bquh', this.numQueryHeads, 'uh', query, 'sigmoid') : null;
    const v = mk('value', 2, 'bkm,mvh->bkvh', this.numKeyValueHeads, 'vh', value);
    const { softmax, dropout } = this.makeSoftmaxAndDropout(-1);
    const out = this.adopt(
      new EinsumDense({ name: 'attention_output', equation: 'bquh,uhm->bqm', outputShape: [null, this.queryDim], biasAxes: bias('m'), ...this.projOptions(3) }),
    );
    out.build([null, null, this.numQueryHeads, this.headDim]);
    this.proj = { query: q, key: k, value: v, output: out, gate, softmax, dropout };
    this.built = true;
    this.markQuantizedFromChildren();
  }

  protected children(): Array<[string, Layer]> {
    return this.projectionChildren('_'); // Keras's GQA keeps them private (_query_dense/...)
  }

  override getConfig(): Record<string, unknown> {
    return {
      ...super.getConfig(),
      head_dim: this.headDim,
      num_query_heads: this.numQueryHeads,
      num_key_value_heads: this.numKeyValueHeads,
      use_bias: this.useBias,
      use_gate: this.useGate,
      sliding_window: this.slidingWindow,
      dropout: this.dropout,
      ...this.sharedConfig(),
    };
  }

  /**
   * Rebuilds the layer from a Keras config (`head_dim`, `num_query_heads`, `num_key_value_heads`, `use_bias`,
   * `use_gate`, `sliding_window`, `dropout`, initializers, `seed`, `dtype`).
   * @example
   * ```ts
   * GroupedQueryAttention.fromConfig({ head_dim: 16, num_query_heads: 4, num_key_value_heads: 2 });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): GroupedQueryAttention {
    const c = checkLayerConfig(config, 'GroupedQueryAttention');
    if (c.flash_attention) throw new UnsupportedError('Expected flash_attention to be false or null for config.flash_attention but received true');
    return new GroupedQueryAttention({
      ...attentionOptionsFromConfig(c),
      headDim: c.head_dim as number,
      numQueryHeads: c.num_query_heads as number,
      numKeyValueHeads: c.num_key_value_heads as number,
    });
  }
}

/**
 * Keras's public name for {@link GroupedQueryAttention} (`keras.layers.GroupQueryAttention`).
 * @example
 * ```ts
 * const gqa = new GroupQueryAttention({ headDim: 8, numQueryHeads: 4, numKeyValueHeads: 1 });
 * ```
 */
export const GroupQueryAttention = GroupedQueryAttention;
/** Keras's public name for {@link GroupedQueryAttention}. */
export type GroupQueryAttention = GroupedQueryAttention;
