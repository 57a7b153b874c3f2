/**
 * `Layer`: the base of every quantkit layer (Keras `keras.layers.Layer` semantics for building, variables,
 * dtype policies and quantization). Subclasses implement `build`, `call` and, when they support it,
 * `quantizeLayer` / `quantizedBuild` / `quantizedCall`.
 * @packageDocumentation
 */
import {
  AlreadyQuantizedError,
  CorruptFileError,
  DisposedError,
  InvalidArgumentError,
  NotBuiltError,
  UnsupportedError,
} from '../errors';
import { DTypePolicy, DTypePolicyMap, getDTypePolicy, Int4DTypePolicy, serializeDTypePolicy } from '../dtype-policies';
import {
  Int4QuantizationConfig,
  QuantizationConfig,
  QuantizationMode,
  QUANTIZATION_MODES,
  validateAndResolveConfig,
} from '../quantizers';
import { checkCudaDevice, Device, deviceName, parseDevice } from '../cuda/resident';
import { Tensor, describe } from '../tensor';
import { Variable } from './variable';

const nameCounters = new Map<string, number>();

/**
 * Keras-style unique names: `dense`, `dense_1`, `dense_2`, … per base name, per process.
 * @example
 * ```ts
 * uniqueLayerName('Dense'); // 'dense' (then 'dense_1', …)
 * ```
 */
export function uniqueLayerName(className: string): string {
  const base = className
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .toLowerCase();
  const n = nameCounters.get(base) ?? 0;
  nameCounters.set(base, n + 1);
  return n === 0 ? base : `${base}_${n}`;
}

/** Options every layer accepts. */
export interface LayerOptions {
  /** Layer name (default: snake_case class name, uniquified). */
  name?: string;
  /** dtype policy: a name (`'float32'`, `'int8_from_float32'`, `'int4/128_from_float32'`, …), a policy, or a map. */
  dtype?: string | DTypePolicy | DTypePolicyMap | null;
  /** Whether the layer's float weights are trainable (kept for Keras compatibility). */
  trainable?: boolean;
}

/** Options of {@link Layer.quantize}. */
export interface QuantizeOptions {
  /** A config object; `quantize('int4')` is `quantize({ config: new Int4QuantizationConfig() })`. */
  config?: QuantizationConfig | null;
  /** Refuse subclasses of the built-in quantizable layers (default true, as Keras). */
  typeCheck?: boolean;
}

/**
 * Base class of all layers.
 *
 * @example
 * ```ts
 * class Scale extends Layer {
 *   factor!: Variable<'float32'>;
 *   build() { this.factor = this.addWeight('factor', new Tensor('float32', [1], new Float32Array([2]))); this.built = true; }
 *   async call(x: Tensor) { const d = (x.data as Float32Array).map((v) => v * this.factor.value.data[0]); return new Tensor('float32', x.shape, d); }
 * }
 * ```
 */
export abstract class Layer {
  /** The layer's name (unique per process unless given). */
  readonly name: string;
  /** Path used in checkpoints and policy maps (`parent/child`); equals the name for a top-level layer. */
  path: string;
  /** True once weights exist. */
  built = false;
  /** Whether float weights are trainable. */
  trainable: boolean;
  protected _policy: DTypePolicy | DTypePolicyMap;
  protected _variables: Variable[] = [];
  /** Set by every quantized build (Keras `_is_quantized`). */
  protected _isQuantized = false;
  /** The config used by the last `quantize()` (serialized as `quantization_config`). */
  quantizationConfig: QuantizationConfig | null = null;
  /** Set by {@link Layer.dispose}. */
  protected _disposed = false;
  /** CUDA device index holding this layer's weights; null = host memory. @internal */
  _deviceIndex: number | null = null;

  constructor(options: LayerOptions = {}) {
    if (options.name !== undefined && (typeof options.name !== 'string' || options.name.length === 0 || options.name.includes('/'))) {
      throw new InvalidArgumentError(`Expected a non-empty string without '/' for name but received ${describe(options.name)}`);
    }
    this.name = options.name ?? uniqueLayerName(this.constructor.name);
    this.path = this.name;
    this.trainable = options.trainable ?? true;
    this._policy = getDTypePolicy(options.dtype ?? 'float32');
  }

  /** The layer's dtype policy (a {@link DTypePolicyMap} resolves to this layer's entry via {@link Layer.effectivePolicy}). */
  get dtypePolicy(): DTypePolicy | DTypePolicyMap {
    return this._policy;
  }

  /**
   * Sets the dtype policy (Keras's `dtype_policy` setter). Setting a quantized policy on a built, float layer
   * quantizes it (`'int8_from_float32'`, `'int4/64_from_float32'`, `'float8_from_float32'`); GPTQ cannot be
   * enabled this way because it needs calibration data. Inside a policy map only this layer's entry changes.
   * If quantization fails, the previous policy and weights stay.
   * @example
   * ```ts
   * await dense.setDTypePolicy('int8_from_float32');
   * dense.variables.length; // 3
   * ```
   */
  async setDTypePolicy(policy: string | DTypePolicy | DTypePolicyMap): Promise<void> {
    const next = getDTypePolicy(policy);
    const previous = this._policy;
    if (next instanceof DTypePolicyMap) {
      this._policy = next;
      return;
    }
    const mode = next.quantizationMode;
    if (mode !== null && this.built && !this._isQuantized) {
      if (mode === 'gptq') {
        throw new InvalidArgumentError(
          `Implicitly enabling GPTQ quantization by setting \`dtype_policy\` to '${next.name}' is not supported. GPTQ requires a calibration dataset and a \`GPTQConfig\` object; use model.quantize('gptq', { config }) instead.`,
        );
      }
      const config =
        mode === 'int4' ? new Int4QuantizationConfig({ blockSize: next instanceof Int4DTypePolicy ? next.blockSize : 128 }) : null;
      this._policy = previous instanceof DTypePolicyMap ? previous.withEntry(this.path, next) : next;
      try {
        this._isQuantized = false;
        const resolved = validateAndResolveConfig(mode, config);
        await this.quantizeLayer(resolved.mode, resolved, true);
        this._isQuantized = true;
      } catch (err) {
        this._policy = previous;
        throw err;
      }
      return;
    }
    this._policy = previous instanceof DTypePolicyMap ? previous.withEntry(this.path, next) : next;
  }

  /** The policy that applies to this layer (the map entry for `path` when the policy is a map). */
  get effectivePolicy(): DTypePolicy {
    const p = this._policy;
    return p instanceof DTypePolicyMap ? p.get(this.path) : p;
  }

  /** `'int8'`, `'int4'`, `'float8'`, `'gptq'` or null for a float layer. */
  get quantizationMode(): QuantizationMode | null {
    return this.effectivePolicy.quantizationMode;
  }

  /** Compute dtype of the policy (`float32`, `bfloat16`, …). quantkit computes in float32 on CPU. */
  get computeDtype(): string {
    return this.effectivePolicy.computeDtype;
  }

  /** True after `quantize()` or a quantized build. */
  get isQuantized(): boolean {
    return this._isQuantized;
  }

  /** All tracked variables in creation order. */
  get variables(): Variable[] {
    return [...this._variables];
  }

  /** Trainable variables (Keras: float weights of a trainable layer). */
  get trainableVariables(): Variable[] {
    return this.trainable ? this._variables.filter((v) => v.trainable) : [];
  }

  /** Non-trainable variables. */
  get nonTrainableVariables(): Variable[] {
    return this.trainable ? this._variables.filter((v) => !v.trainable) : [...this._variables];
  }

  /**
   * Creates and tracks a variable.
   * @example
   * ```ts
   * this.kernel = this.addWeight('kernel', initialize('glorot_uniform', [8, 4]));
   * ```
   */
  protected addWeight<D extends Tensor['dtype']>(name: string, value: Tensor<D>, options: { trainable?: boolean } = {}): Variable<D> {
    const v = new Variable(name, value, { trainable: options.trainable, path: `${this.path}/${name}` });
    this._variables.push(v as Variable);
    return v;
  }

  /** Replaces the tracked variable list (used by quantization to swap weights atomically). */
  protected setVariables(vars: Variable[]): void {
    for (const v of vars) v.path = `${this.path}/${v.name}`;
    this._variables = vars;
  }

  /**
   * Creates the weights for inputs of `inputShape` (the batch dimension may be null). Layers called on several
   * tensors receive the list of their shapes.
   */
  abstract build(inputShape: readonly (number | null)[] | readonly (readonly (number | null)[])[]): void;

  /** Runs the float computation on one tensor or (multi-input layers) a list of tensors. */
  abstract call(inputs: Tensor | Tensor[], options?: Record<string, unknown>): Promise<Tensor>;

  /**
   * Builds on first use, then runs `call` (or `quantizedCall` for a quantized layer), like calling a Keras layer.
   * @example
   * ```ts
   * const y = await new Dense({ units: 4 }).apply(x);
   * ```
   */
  async apply(inputs: Tensor | Tensor[], options: Record<string, unknown> = {}): Promise<Tensor> {
    const list = Array.isArray(inputs) ? inputs : [inputs];
    if (list.length === 0 || !list.every((t) => t instanceof Tensor)) {
      throw new InvalidArgumentError(`Expected a Tensor or an array of Tensors for inputs of layer '${this.name}' but received ${describe(inputs)}`);
    }
    if (this._disposed) throw this.disposedError('apply()');
    if (!this.built) this.build(Array.isArray(inputs) ? inputs.map((t) => t.shape) : inputs.shape);
    return this.quantizationMode !== null ? this.quantizedCall(inputs, options) : this.call(inputs, options);
  }

  /** Runs the quantized computation; the base refuses. */
  protected quantizedCall(_inputs: Tensor | Tensor[], _options?: Record<string, unknown>): Promise<Tensor> {
    return Promise.reject(
      new UnsupportedError(`Invalid quantization mode. Expected one of (${QUANTIZATION_MODES.map((m) => `'${m}'`).join(', ')}). Received: quantization_mode=${this.quantizationMode}`),
    );
  }

  /**
   * Quantizes the layer's weights in place. `mode` is `'int8'`, `'int4'`, `'float8'` or `'gptq'` (GPTQ needs a
   * `GPTQConfig` and model-level calibration). On any error the layer keeps its previous weights and mode.
   *
   * @example
   * ```ts
   * await dense.quantize('int8');
   * await other.quantize('int4', { config: new Int4QuantizationConfig({ blockSize: 64 }) });
   * await third.quantize({ config: new Float8QuantizationConfig() });
   * ```
   */
  async quantize(mode?: string | null | QuantizeOptions, options: QuantizeOptions = {}): Promise<void> {
    if (mode !== null && typeof mode === 'object') {
      options = mode;
      mode = undefined;
    }
    if (this._disposed) throw this.disposedError('quantize()');
    const config = validateAndResolveConfig(mode ?? null, options.config ?? null);
    this.checkQuantizeArgs(config.mode);
    await this.quantizeLayer(config.mode, config, options.typeCheck ?? true);
    this._isQuantized = true;
  }

  /** Keras `_check_quantize_args`: the errors, in Keras's order. */
  protected checkQuantizeArgs(mode: QuantizationMode): void {
    if (!this.built) {
      throw new NotBuiltError(`Cannot quantize a layer that isn't yet built. Layer '${this.name}' (of type '${this.constructor.name}') is not built yet.`);
    }
    if (this._isQuantized) {
      throw new AlreadyQuantizedError(`Layer '${this.name}' is already quantized with dtype_policy='${this.effectivePolicy.name}'. Received: mode=${mode}`);
    }
    if (mode === 'int8' && this.computeDtype === 'float16') {
      throw new InvalidArgumentError(
        `Quantization mode='int8' doesn't work well with compute_dtype='float16'. Consider loading model/layer with another dtype policy such as 'mixed_bfloat16' or 'mixed_float16' before calling \`quantize()\`.`,
      );
    }
  }

  /** Layer-specific quantization; the base refuses (Keras `NotImplementedError`). */
  protected quantizeLayer(_mode: QuantizationMode, _config: QuantizationConfig, _typeCheck: boolean): Promise<void> {
    return Promise.reject(this.noQuantizeSupport());
  }

  /** The error for layers (or subclasses) without quantize support. */
  protected noQuantizeSupport(): UnsupportedError {
    return new UnsupportedError(`Layer ${this.constructor.name} does not have a \`quantize\` method implemented.`);
  }

  /**
   * After quantizing: the policy becomes `<suffix>_from_<current policy name>` unless it is already quantized
   * (Keras rule); inside a policy map only this layer's entry changes.
   */
  protected setQuantizedPolicy(suffix: string): void {
    const current = this.effectivePolicy;
    if (current.quantizationMode !== null) return;
    const next = getDTypePolicy(`${suffix}_from_${current.name}`) as DTypePolicy;
    if (this._policy instanceof DTypePolicyMap) {
      this._policy = this._policy.withEntry(this.path, next);
    } else {
      this._policy = next;
    }
  }

  /**
   * The Keras config of the layer, JSON-ready with Keras's snake_case keys (`name`, `trainable`, `dtype` as a
   * serialized policy, plus subclass fields). `Layer.fromConfig` of the same class rebuilds the layer.
   * @example
   * ```ts
   * new Dense({ units: 4, name: 'd' }).getConfig(); // { name: 'd', trainable: true, dtype: {...}, units: 4, ... }
   * ```
   */
  getConfig(): Record<string, unknown> {
    return { name: this.name, trainable: this.trainable, dtype: serializeDTypePolicy(this._policy) };
  }

  /**
   * Sub-layers whose weights are saved under this layer, as `[attribute name, layer]` pairs (Keras saves them
   * under `<this layer's path>/<attribute name>/vars`). Leaf layers have none.
   */
  savableChildren(): Array<[string, Layer]> {
    return [];
  }

  /**
   * This layer's own weights in the positional order Keras saves them (`vars/0`, `vars/1`, …; spec §5.1).
   * @example
   * ```ts
   * dense.saveOwnVariables().map((t) => t.shape); // [[in, units], [units]]
   * ```
   */
  saveOwnVariables(): Tensor[] {
    return this._variables.map((v) => v.value);
  }

  /**
   * The tensors a weights file must hold for this layer (shapes and dtypes as {@link Layer.saveOwnVariables}
   * writes them); used by loaders to check a file before changing anything. Unlike `saveOwnVariables` it never
   * refuses (an uncalibrated GPTQ layer cannot be saved but can be loaded into).
   * @internal
   */
  loadSpec(): Tensor[] {
    return this.saveOwnVariables();
  }

  /**
   * Loads weights saved by {@link Layer.saveOwnVariables} (or by Keras). The count, shapes and dtypes must match
   * exactly; nothing is changed unless everything matches.
   * @throws CorruptFileError naming the layer, what was expected and what was received.
   */
  loadOwnVariables(tensors: Tensor[]): void {
    const vars = this._variables;
    if (tensors.length !== vars.length) {
      throw new CorruptFileError(
        `Layer '${this.name}' expected ${vars.length} variables, but received ${tensors.length} variables during loading. Expected: [${vars.map((v) => `'${v.name}'`).join(', ')}]`,
      );
    }
    tensors.forEach((t, i) => {
      const v = vars[i];
      if (!(t instanceof Tensor) || t.dtype !== v.dtype || t.shape.length !== v.shape.length || t.shape.some((d, j) => d !== v.shape[j])) {
        throw new CorruptFileError(
          `Expected a ${v.dtype} tensor of shape [${v.shape.join(', ')}] for variable '${v.name}' (vars/${i}) of layer '${this.name}' but received ${t instanceof Tensor ? `a ${t.dtype} tensor of shape [${t.shape.join(', ')}]` : describe(t)}`,
        );
      }
    });
    tensors.forEach((t, i) => (vars[i] as Variable).assign(t as never));
    this.afterLoad();
  }

  /** Hook run after weights were loaded (e.g. to refresh derived, cached state). */
  protected afterLoad(): void {}

  /** True after {@link Layer.dispose}. */
  get disposed(): boolean {
    return this._disposed;
  }

  /** The error for a call on a disposed layer. */
  protected disposedError(what: string): DisposedError {
    return new DisposedError(`Expected a live layer for ${what} of layer '${this.name}' but it was disposed (dispose() was called)`);
  }

  /**
   * Frees the layer's weights (its variables and any derived quantized or runtime state) and those of its
   * sub-layers. Later `apply()`, `quantize()` or reads of its variables throw `QK_DISPOSED`; calls already running
   * finish with the data they hold (the memory is released when they settle). Idempotent. A layer shared with
   * another model is disposed there too. Models have an async `dispose()` that first waits for calls in flight.
   * @example
   * ```ts
   * dense.dispose();
   * await dense.apply(x); // rejects with QK_DISPOSED
   * ```
   */
  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    for (const v of this._variables) v.dispose();
    this.releaseState();
    for (const [, child] of this.savableChildren()) child.dispose();
  }

  /**
   * Where this layer's weights live: 'cpu', or 'cuda:<index>' after {@link Layer.to}. Layers without a device
   * implementation (everything but Dense, EinsumDense and ReversibleEmbedding's logits projection today) report 'cpu' and keep computing on the host.
   * @example
   * ```ts
   * await dense.to('cuda');
   * dense.device; // 'cuda:0'
   * ```
   */
  get device(): string {
    return deviceName(this._deviceIndex);
  }

  /**
   * Moves the weights of this layer and its sub-layers to `device` ('cpu', 'cuda' = 'cuda:0', 'cuda:<index>').
   * On a CUDA device each Dense and EinsumDense layer keeps its weights in device memory in their storage format (float32, int8,
   * int4, float8, GPTQ) and runs its projection there; activations stay in host memory (each call uploads its
   * input and downloads its output). `to('cpu')` frees the device memory. Quantizing, loading or assigning
   * weights while on a device re-uploads them at the next call. On failure nothing moves.
   * @throws InvalidArgumentError for a bad device string; UnsupportedError (`QK_UNSUPPORTED`) when the device is
   *   not usable (built without CUDA, no driver, no device), saying how to fix it; OutOfMemoryError
   * @example
   * ```ts
   * await dense.to('cuda');
   * const y = await dense.apply(x); // the GEMM runs on the GPU
   * await dense.to('cpu');
   * ```
   */
  async to(device: Device): Promise<this> {
    if (this._disposed) throw this.disposedError('to()');
    const index = parseDevice(device);
    if (index !== null) checkCudaDevice(index);
    await placeLayers(collectLayers(this), index);
    return this;
  }

  /**
   * Moves this layer's own weights (not its sub-layers') to device `index` (null = host); returns whether the layer
   * has a device implementation (false: it stays on the host). The base class has none.
   * @internal
   */
  async _placeOwnWeights(index: number | null): Promise<boolean> {
    void index;
    return false;
  }

  /** Hook of {@link Layer.dispose}: drop state held outside the tracked variables (quantized/runtime forms). */
  protected releaseState(): void {}

  /** A short description. */
  toString(): string {
    return `<${this.constructor.name} name=${this.name}, built=${this.built}>`;
  }
}

/**
 * A layer and its sub-layers (depth first, each once).
 * @internal
 * @example
 * ```ts
 * collectLayers(block).length; // the block and its norms and projections
 * ```
 */
export function collectLayers(root: Layer): Layer[] {
  const out: Layer[] = [];
  const seen = new Set<Layer>();
  const visit = (l: Layer): void => {
    if (seen.has(l)) return;
    seen.add(l);
    out.push(l);
    for (const [, c] of l.savableChildren()) visit(c);
  };
  visit(root);
  return out;
}

/**
 * Moves every layer of `layers` to device `index`; if one fails, the ones already moved go back where they were.
 * @internal
 * @example
 * ```ts
 * await placeLayers(collectLayers(block), 0); // all of them on cuda:0, or none
 * ```
 */
export async function placeLayers(layers: readonly Layer[], index: number | null): Promise<void> {
  const moved: Array<[Layer, number | null]> = [];
  try {
    for (const l of layers) {
      const prev = l._deviceIndex;
      const has = await l._placeOwnWeights(index);
      moved.push([l, prev]);
      l._deviceIndex = has ? index : null;
    }
  } catch (err) {
    for (const [l, prev] of moved.reverse()) {
      try {
        await l._placeOwnWeights(prev);
      } catch {
        /* best effort; the original error is what the caller needs */
      }
      l._deviceIndex = prev;
    }
    throw err;
  }
}
