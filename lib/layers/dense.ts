/**
 * `Dense`: `y = activation(x @ kernel + bias)`, float or quantized (int8 W8A8, int8 weight-only, int4
 * per-channel W4A16/W4A8, int4 grouped, float8), with Keras variable names, policies and errors.
 * @packageDocumentation
 */
import { InvalidArgumentError, ShapeMismatchError } from '../errors';
import { ResidentProjection } from '../cuda/resident';
import { residentSourceOf, ResidentSlot } from './device-core';
import { denseForward } from '../ops/dense';
import { Int4DTypePolicy } from '../dtype-policies';
import { AbsMaxQuantizer, GPTQConfig, QuantizationConfig, QuantizationMode, Quantizer } from '../quantizers';
import { Tensor, describe } from '../tensor';
import { ActivationName, applyActivation, checkActivation } from './activations';
import {
  blockSizeFor,
  dequantizeState,
  loadFloat8Aware,
  saveFloat8Aware,
  stateFromVariables,
  storedInputScale,
  emptyQuantState,
  FLOAT8_HISTORY,
  projectQuantized,
  QuantState,
  quantizeKernel2D,
} from './dense-core';
import {
  activationFromConfig,
  checkLayerConfig,
  deserializeInitializer,
  layerOptionsFromConfig,
  quantizationConfigFromConfig,
  serializeInitializer,
  serializeQuantizationConfig,
} from './core-layers';
import {
  dequantizeGptq,
  emptyGptqState,
  GptqState,
  gptqParams,
  gptqStateWithValues,
  gIdxAsFloat32,
  projectGptq,
} from './gptq-core';
import { initialize, Initializer } from './initializers';
import { Layer, LayerOptions } from './layer';
import { Variable } from './variable';

/** Options of {@link Dense}. */
export interface DenseOptions extends LayerOptions {
  /** Output features. */
  units: number;
  /** Activation applied after the bias (default linear). */
  activation?: ActivationName | null;
  /** Add a bias (default true). */
  useBias?: boolean;
  /** Kernel initializer (default glorot_uniform). */
  kernelInitializer?: Initializer;
  /** Bias initializer (default zeros). */
  biasInitializer?: Initializer;
  /** Seed for the initializers (default: a process-wide sequence). */
  seed?: number;
}

/**
 * A densely connected layer. Quantize it with `await layer.quantize('int8' | 'int4' | 'float8')`; quantized
 * calls run on fused native kernels (no float copy of the kernel is made per call).
 *
 * @example
 * ```ts
 * import { Dense, tensor } from 'quantkit';
 * const dense = new Dense({ units: 16, activation: 'relu' });
 * const x = tensor(new Float32Array(8 * 32).fill(0.5), [8, 32]);
 * const yFloat = await dense.apply(x);
 * await dense.quantize('int8');
 * const yInt8 = await dense.apply(x);        // W8A8: int8 GEMM with per-token activation scales
 * dense.dtypePolicy.name;                     // 'int8_from_float32'
 * ```
 */
export class Dense extends Layer {
  readonly units: number;
  readonly activation: ActivationName;
  readonly useBias: boolean;
  private readonly kernelInitializer: Initializer;
  private readonly biasInitializer: Initializer;
  private readonly seed?: number;
  /** The float kernel `[in, units]` (float mode only). */
  kernel: Variable<'float32'> | null = null;
  /** The bias `[units]`, or null. */
  bias: Variable<'float32'> | null = null;
  /** Quantized weights (quantized modes only). */
  protected qstate: QuantState | null = null;
  /** Activation quantizer of int8 / per-channel int4 (null = weight-only). */
  inputsQuantizer: Quantizer | null = null;
  /** Input features, known after build. */
  inputDim = -1;
  /**
   * float8 only: null = dynamic per-tensor activation scale (quantkit's default), or a fixed scale (Keras's stored
   * `inputs_scale`, used for layers loaded from Keras files so their outputs match Keras).
   */
  float8InputScale: number | null = null;
  /** GPTQ weights (GPTQ mode only). */
  protected gptq: GptqState | null = null;
  /**
   * GPTQ calibration hook (set by the calibration driver): receives the `[rows, in]` float32 inputs of every
   * float forward, i.e. exactly what the projection multiplies.
   * @internal
   */
  _gptqCapture: ((x2d: Tensor<'float32'>) => Promise<void>) | null = null;
  /** Device-resident weights (after `to('cuda')`), with the state they were uploaded from. */
  private readonly _resident = new ResidentSlot();

  constructor(options: DenseOptions) {
    super(options);
    if (!options || !Number.isSafeInteger(options.units) || options.units <= 0) {
      throw new InvalidArgumentError(`Expected a positive integer for units but received ${describe(options?.units)}`);
    }
    this.units = options.units;
    this.activation = checkActivation(options.activation);
    this.useBias = options.useBias ?? true;
    this.kernelInitializer = options.kernelInitializer ?? 'glorot_uniform';
    this.biasInitializer = options.biasInitializer ?? 'zeros';
    this.seed = options.seed;
  }

  build(inputShape: readonly (number | null)[]): void {
    const inDim = inputShape[inputShape.length - 1];
    if (inputShape.length < 1 || inDim === null || inDim === undefined || !(inDim >= 1)) {
      throw new InvalidArgumentError(`Expected an input shape with a known last dimension for layer '${this.name}' but received [${inputShape.join(', ')}]`);
    }
    this.inputDim = inDim;
    const mode = this.quantizationMode;
    if (mode !== null) {
      this.quantizedBuild(mode);
    } else {
      this.kernel = this.addWeight('kernel', initialize(this.kernelInitializer, [inDim, this.units], this.seed));
      if (this.useBias) this.bias = this.addWeight('bias', initialize(this.biasInitializer, [this.units], this.seed === undefined ? undefined : this.seed + 1));
    }
    this.built = true;
  }

  /** Builds quantized variables directly (a layer created from a quantized policy, e.g. when loading). */
  protected quantizedBuild(mode: QuantizationMode): void {
    const policy = this.effectivePolicy;
    if (mode === 'gptq') {
      const { bits, groupSize } = gptqParams(this.quantizationConfig, policy, this.name);
      if (this.useBias) this.bias = new Variable('bias', new Tensor('float32', [this.units]));
      this.installGptq(emptyGptqState(this.inputDim, this.units, bits, groupSize));
      this._isQuantized = true;
      return;
    }
    const block = blockSizeFor(this.quantizationConfig, policy instanceof Int4DTypePolicy ? policy.blockSize : null);
    const state = emptyQuantState(this.inputDim, this.units, mode, mode === 'int4' ? block : null);
    if (this.useBias) this.bias = new Variable('bias', new Tensor('float32', [this.units]));
    this.installState(state, this.bias);
    this.inputsQuantizer = QuantizationConfig.activationQuantizerOrDefault(this.quantizationConfig, mode === 'int8' ? new AbsMaxQuantizer() : null);
    this._isQuantized = true;
  }

  /** Tracks the variables of a quantized state in the Keras order (spec §5.1). */
  private installState(state: QuantState, bias: Variable<'float32'> | null): void {
    const vars: Variable[] = [];
    const nt = { trainable: false };
    if (state.mode === 'float8') {
      vars.push(new Variable('kernel', state.kernel));
      if (bias) vars.push(bias);
      const scalar = (v: number) => new Tensor('float32', [], new Float32Array([v]));
      vars.push(
        new Variable('inputs_scale', scalar(1)),
        new Variable('inputs_amax_history', new Tensor('float32', [FLOAT8_HISTORY])),
        new Variable('kernel_scale', scalar(state.kernelScale)),
        new Variable('kernel_amax_history', new Tensor('float32', [FLOAT8_HISTORY])),
        new Variable('outputs_grad_scale', scalar(1)),
        new Variable('outputs_grad_amax_history', new Tensor('float32', [FLOAT8_HISTORY])),
      );
    } else {
      vars.push(new Variable('kernel', state.kernel, nt));
      if (bias) vars.push(bias);
      vars.push(new Variable('kernel_scale', state.scale, nt));
      if (state.mode === 'int4' && state.blockSize !== null) {
        vars.push(new Variable('kernel_zero', state.zero, nt), new Variable('g_idx', state.gIdx, nt));
      }
    }
    this.setVariables(vars);
    this.qstate = state;
    this.kernel = null;
  }

  /** Tracks the GPTQ variables in Keras's order (bias, quantized_kernel, kernel_scale, kernel_zero, g_idx). */
  private installGptq(state: GptqState): void {
    const nt = { trainable: false };
    const vars: Variable[] = [];
    if (this.bias) vars.push(this.bias);
    vars.push(
      new Variable('kernel', state.kernel, nt),
      new Variable('kernel_scale', state.scale, nt),
      new Variable('kernel_zero', state.zero, nt),
      new Variable('g_idx', state.gIdx, nt),
    );
    this.setVariables(vars);
    this.gptq = state;
    this.qstate = null;
    this.kernel = null;
  }

  /**
   * Installs calibrated GPTQ weights (used by the calibration driver and {@link gptqQuantizeLayer}): the float
   * kernel is released, the policy becomes `gptq/<bits>/<group>_from_<source>`.
   * @internal
   */
  _installGptq(state: GptqState, config: GPTQConfig | null): void {
    if (state.rows !== this.inputDim || state.cols !== this.units) {
      throw new InvalidArgumentError(`Expected GPTQ weights of shape [${this.inputDim}, ${this.units}] for layer '${this.name}' but received [${state.rows}, ${state.cols}]`);
    }
    this.installGptq(state);
    this.quantizationConfig = config;
    this.inputsQuantizer = null;
    this.setQuantizedPolicy(`gptq/${state.bits}/${state.groupSize}`);
    this._isQuantized = true;
  }

  /** After loading: rebuild the quantized state from the (replaced) variable values. */
  protected override releaseState(): void {
    this._resident.drop();
    this.qstate = null;
    this.gptq = null;
    this._gptqCapture = null;
  }

  protected override afterLoad(): void {
    if (this.gptq) {
      const get = (n: string) => (this._variables.find((v) => v.name === n) as Variable).value;
      this.gptq = gptqStateWithValues(this.gptq, get('kernel') as Tensor<'uint8'>, get('kernel_scale') as Tensor<'float32'>, get('kernel_zero') as Tensor<'uint8'>, get('g_idx') as Tensor<'float32'>);
      return;
    }
    if (!this.qstate) return;
    this.qstate = stateFromVariables(this.qstate, this._variables);
  }

  /** float8 layers save the float32 kernel, as Keras keeps it (the fp8 codes times the kernel scale). */
  override saveOwnVariables(): Tensor[] {
    if (this.gptq && !this.gptq.calibrated) {
      throw new InvalidArgumentError(`Cannot save an uncalibrated GPTQ layer '${this.name}': run model.quantize('gptq', { config }) with calibration data first`);
    }
    return saveFloat8Aware(this.qstate, this._variables);
  }

  /** What a file must hold for this layer (also for an uncalibrated GPTQ layer). @internal */
  override loadSpec(): Tensor[] {
    return saveFloat8Aware(this.qstate, this._variables);
  }

  /** float8 layers load Keras's float32 kernel and quantize it with the stored kernel scale. */
  override loadOwnVariables(tensors: Tensor[]): void {
    if (this.gptq) {
      // g_idx is float32 in Keras files; accept int32 too (Keras casts on load).
      const i = this._variables.findIndex((v) => v.name === 'g_idx');
      if (i >= 0 && i < tensors.length) tensors = tensors.map((t, j) => (j === i ? gIdxAsFloat32(t) : t));
    }
    super.loadOwnVariables(loadFloat8Aware(this.qstate, this._variables, tensors, this.name));
    if (this.qstate?.mode === 'float8') this.float8InputScale = storedInputScale(this._variables);
  }

  protected override async quantizeLayer(mode: QuantizationMode, config: QuantizationConfig, typeCheck: boolean): Promise<void> {
    if (typeCheck && this.constructor !== Dense) throw this.noQuantizeSupport();
    if (mode === 'gptq') {
      throw new InvalidArgumentError("GPTQ quantizes through Model.quantize('gptq', { config }) with calibration data; a single Dense layer cannot be calibrated on its own");
    }
    if (!this.kernel) throw new InvalidArgumentError(`Layer '${this.name}' has no float kernel to quantize`);
    const block = mode === 'int4' ? blockSizeFor(config, undefined) : null;
    // Compute everything first; only then swap, so a failure leaves the layer as it was.
    const state = await quantizeKernel2D(this.kernel.value, mode, config, block);
    const inputsQuantizer =
      mode === 'int8'
        ? QuantizationConfig.activationQuantizerOrDefault(config, new AbsMaxQuantizer())
        : mode === 'int4' && block === null
          ? QuantizationConfig.activationQuantizerOrDefault(config, null)
          : null;
    this.installState(state, this.bias);
    this.inputsQuantizer = inputsQuantizer;
    this.quantizationConfig = config;
    this.setQuantizedPolicy(mode === 'int4' ? `int4/${block ?? -1}` : mode);
  }

  async call(inputs: Tensor): Promise<Tensor<'float32'>> {
    const x = this.checkInputs(inputs);
    if (!this.kernel) throw new InvalidArgumentError(`Layer '${this.name}' is quantized; call apply() instead of call()`);
    if (this._gptqCapture) await this._gptqCapture(x.reshape([x.size / this.inputDim, this.inputDim]) as Tensor<'float32'>);
    const y =
      this._deviceIndex !== null
        ? await this.deviceForward(x)
        : await denseForward(x, { format: 'float32', kernel: this.kernel.value.data }, this.units, this.bias?.value.data ?? null);
    applyActivation(this.activation, y.data, this.units);
    return y;
  }

  protected override async quantizedCall(inputs: Tensor): Promise<Tensor<'float32'>> {
    const x = this.checkInputs(inputs);
    const lead = x.shape.slice(0, -1);
    const M = lead.reduce((a, b) => a * b, 1);
    const x2d = x.reshape([M, this.inputDim]) as Tensor<'float32'>;
    if (this._deviceIndex !== null) {
      const yd = await this.deviceForward(x2d);
      applyActivation(this.activation, yd.data, this.units);
      return yd.reshape([...lead, this.units]) as Tensor<'float32'>;
    }
    if (this.gptq) {
      const yg = await projectGptq(x2d, this.gptq, this.bias?.value.data ?? null);
      applyActivation(this.activation, yg.data, this.units);
      return yg.reshape([...lead, this.units]) as Tensor<'float32'>;
    }
    if (!this.qstate) throw new InvalidArgumentError(`Layer '${this.name}' has no quantized weights`);
    const y = await projectQuantized(x2d, this.qstate, this.units, this.bias?.value.data ?? null, this.inputsQuantizer, this.float8InputScale);
    applyActivation(this.activation, y.data, this.units);
    return y.reshape([...lead, this.units]) as Tensor<'float32'>;
  }

  /** @internal Uploads the weights to device `index` (null: frees them); see {@link Layer.to}. */
  override async _placeOwnWeights(index: number | null): Promise<boolean> {
    if (index === null) {
      this._resident.drop();
      return true;
    }
    if (this.built) await this.resident(index);
    return true;
  }

  /** The device copy for device `index`, uploading (again) when the layer's weights changed since. */
  private resident(index: number): Promise<ResidentProjection[]> {
    // what the copy depends on: a new kernel, state, bias, quantizer or device means a new upload
    const key = [index, this.kernel?.value, this.qstate, this.gptq, this.bias?.value, this.inputsQuantizer, this.float8InputScale];
    return this._resident.get(key, async () => {
      const src = await residentSourceOf({
        floatKernel: this.kernel?.value.data ?? null,
        qstate: this.qstate,
        gptq: this.gptq,
        inputsQuantizer: this.inputsQuantizer,
        float8InputScale: this.float8InputScale,
        layerName: this.name,
      });
      return [await ResidentProjection.upload(src, this.inputDim, this.units, this.bias?.value.data ?? null, index)];
    });
  }

  /**
   * The device copy of the projection (uploading it if the weights changed), or null when the layer is on the host
   * or has an activation (callers that chain device ops need a bare projection).
   * @internal
   */
  async _deviceProjection(): Promise<ResidentProjection | null> {
    if (this._deviceIndex === null || this.activation !== 'linear' || !this.built) return null;
    return (await this.resident(this._deviceIndex))[0];
  }

  /** The projection on the device (x2d: `[..., in]` float32, flattened to rows). */
  private async deviceForward(x: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const M = x.size / this.inputDim;
    const [proj] = await this.resident(this._deviceIndex as number);
    const y = await proj.forward(x.data, M);
    return new Tensor('float32', [...x.shape.slice(0, -1), this.units], y);
  }

  private checkInputs(inputs: Tensor): Tensor<'float32'> {
    const x = inputs.dtype === 'float32' ? (inputs as Tensor<'float32'>) : inputs.toFloat32();
    if (x.rank < 1 || x.shape[x.rank - 1] !== this.inputDim) {
      throw new ShapeMismatchError(
        `Expected inputs with last dimension ${this.inputDim} for layer '${this.name}' but received shape [${x.shape.join(', ')}]`,
      );
    }
    return x;
  }

  /** The quantized weights (null for a float layer). */
  get quantizedState(): Readonly<QuantState> | null {
    return this.qstate;
  }

  /**
   * A closure that puts the layer back exactly as it is now (weights, variables, policy, config). The GPTQ driver
   * takes one before installing calibrated weights, so that an aborted or failed calibration leaves the model
   * unchanged.
   * @internal
   */
  _gptqRestorePoint(): () => void {
    const saved = {
      kernel: this.kernel,
      qstate: this.qstate,
      gptq: this.gptq,
      policy: this._policy,
      variables: this._variables,
      config: this.quantizationConfig,
      inputsQuantizer: this.inputsQuantizer,
      isQuantized: this._isQuantized,
    };
    return () => {
      this.kernel = saved.kernel;
      this.qstate = saved.qstate;
      this.gptq = saved.gptq;
      this._policy = saved.policy;
      this._variables = saved.variables;
      this.quantizationConfig = saved.config;
      this.inputsQuantizer = saved.inputsQuantizer;
      this._isQuantized = saved.isQuantized;
    };
  }

  /** The GPTQ weights (null unless GPTQ mode). */
  get gptqState(): Readonly<GptqState> | null {
    return this.gptq;
  }

  /**
   * The kernel as float32 `[in, units]`: the float kernel, or the dequantized quantized kernel.
   * @example
   * ```ts
   * const w = await dense.dequantizedKernel();
   * ```
   */
  async dequantizedKernel(): Promise<Tensor<'float32'>> {
    if (this.kernel) return this.kernel.value;
    if (this.gptq) return dequantizeGptq(this.gptq);
    if (!this.qstate) throw new InvalidArgumentError(`Layer '${this.name}' is not built`);
    return dequantizeState(this.qstate, this.inputDim, this.units);
  }

  /**
   * The Keras config: `units`, `activation`, `use_bias`, `kernel_initializer` / `bias_initializer` (serialized as
   * Keras does, with the seed), regularizers and constraints (always null) and `quantization_config` (serialized,
   * or null), plus `name`, `trainable` and `dtype`.
   * @example
   * ```ts
   * new Dense({ units: 4, name: 'd' }).getConfig().kernel_initializer; // { module: 'keras.initializers', class_name: 'GlorotUniform', ... }
   * ```
   */
  override getConfig(): Record<string, unknown> {
    return {
      ...super.getConfig(),
      units: this.units,
      activation: this.activation,
      use_bias: this.useBias,
      kernel_initializer: serializeInitializer(this.kernelInitializer, this.seed ?? null),
      bias_initializer: serializeInitializer(this.biasInitializer, this.seed === undefined ? null : this.seed + 1),
      kernel_regularizer: null,
      bias_regularizer: null,
      kernel_constraint: null,
      bias_constraint: null,
      quantization_config: serializeQuantizationConfig(this.quantizationConfig),
    };
  }

  /**
   * Rebuilds a Dense layer from a Keras config (as in a `.keras` file's `config.json`, or from
   * {@link Dense.getConfig}). A quantized `dtype` plus `quantization_config` make the layer build quantized
   * variables directly, ready for loading. Regularizers, constraints and LoRA settings are ignored (they do not
   * change inference: Keras saves merged LoRA weights).
   * @example
   * ```ts
   * const d = Dense.fromConfig({ name: 'dense', units: 8, activation: 'relu', dtype: 'int8_from_float32' });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): Dense {
    const c = checkLayerConfig(config, 'Dense');
    const k = deserializeInitializer(c.kernel_initializer, 'config.kernel_initializer');
    const layer = new Dense({
      ...layerOptionsFromConfig(c),
      units: c.units as number,
      activation: activationFromConfig(c.activation),
      useBias: (c.use_bias ?? true) as boolean,
      kernelInitializer: k.init,
      biasInitializer: deserializeInitializer(c.bias_initializer, 'config.bias_initializer').init,
      ...(k.seed === undefined ? {} : { seed: k.seed }),
    });
    layer.quantizationConfig = quantizationConfigFromConfig(c);
    return layer;
  }

}

