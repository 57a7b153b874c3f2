/**
 * `EinsumDense`: a projection written as an einsum equation (Keras `keras.layers.EinsumDense`), e.g.
 * `'abc,cde->abde'` for attention projections. Internally every supported equation is reduced to one 2-D
 * projection `[M, C] @ [C, F]` (C = product of contracted dims, F = product of free kernel dims) plus input
 * and output permutations, so float and quantized calls run on the same native kernels as `Dense`.
 * @packageDocumentation
 */
import { InvalidArgumentError, ShapeMismatchError, UnsupportedError } from '../errors';
import { ResidentProjection } from '../cuda/resident';
import { denseForward } from '../ops/dense';
import { residentSourceOf, ResidentSlot, uploadAll } from './device-core';
import { Int4DTypePolicy } from '../dtype-policies';
import { AbsMaxQuantizer, QuantizationConfig, QuantizationMode, Quantizer } from '../quantizers';
import { Tensor, describe } from '../tensor';
import {
  dequantizeGptq,
  emptyGptqState,
  GptqState,
  gptqParams,
  gptqStateWithValues,
  gIdxAsFloat32,
  projectGptq,
} from './gptq-core';
import { ActivationName, applyActivation, checkActivation } from './activations';
import {
  blockSizeFor,
  dequantizeState,
  emptyQuantState,
  FLOAT8_HISTORY,
  loadFloat8Aware,
  projectQuantized,
  QuantState,
  quantizeKernel2D,
  saveFloat8Aware,
  stateFromVariables,
  storedInputScale,
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
import { initialize, Initializer } from './initializers';
import { Layer, LayerOptions } from './layer';
import { Variable } from './variable';

/** The analysed equation (all ellipses expanded). */
export interface EinsumPlan {
  input: string;
  kernel: string;
  output: string;
  /** Letters summed over (in input and kernel, not in output), in kernel order. */
  contracted: string[];
  /** Letters of the input kept in the output (not in the kernel), in input order. */
  freeInput: string[];
  /** Letters of the kernel kept in the output (not in the input), in kernel order. */
  freeKernel: string[];
  /** Letters present in input, kernel and output (element-wise batch; float only). */
  batch: string[];
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';

/**
 * Parses and canonicalises an EinsumDense equation for an input of rank `inputRank`: replaces an ellipsis with
 * unused letters and classifies every letter (spec §2.6).
 * @example
 * ```ts
 * analyzeEinsum('...b,bc->...c', 3).contracted; // ['b']
 * ```
 */
export function analyzeEinsum(equation: string, inputRank: number): EinsumPlan {
  if (typeof equation !== 'string') throw new InvalidArgumentError(`Expected an einsum equation string for equation but received ${describe(equation)}`);
  const m = /^\s*([a-zA-Z.]+)\s*,\s*([a-zA-Z]+)\s*->\s*([a-zA-Z.]*)\s*$/.exec(equation);
  if (!m) {
    throw new InvalidArgumentError(`Expected an equation of the form 'ab,bc->ac' (an ellipsis '...' is allowed on the input and output) for equation but received '${equation}'`);
  }
  let [, inp, ker, out] = m;
  const hasEllipsis = inp.includes('...');
  if (hasEllipsis !== out.includes('...')) {
    throw new InvalidArgumentError(`Expected an ellipsis in both the input and the output of equation but received '${equation}'`);
  }
  if (hasEllipsis) {
    const explicit = inp.replace('...', '').length;
    const n = inputRank - explicit;
    if (n < 0) throw new ShapeMismatchError(`Expected inputs of rank >= ${explicit} for equation '${equation}' but received rank ${inputRank}`);
    const used = new Set((inp + ker + out).replace(/\./g, ''));
    const fresh = [...LETTERS].filter((c) => !used.has(c)).slice(0, n).join('');
    inp = inp.replace('...', fresh);
    out = out.replace('...', fresh);
  }
  for (const [name, spec] of [['input', inp], ['kernel', ker], ['output', out]] as const) {
    if (new Set(spec).size !== spec.length) {
      throw new InvalidArgumentError(`Expected distinct letters in the ${name} of equation but received '${equation}'`);
    }
  }
  if (inp.length !== inputRank) {
    throw new ShapeMismatchError(`Expected inputs of rank ${inp.length} for equation '${equation}' but received rank ${inputRank}`);
  }
  for (const c of out) {
    if (!inp.includes(c) && !ker.includes(c)) throw new InvalidArgumentError(`Output letter '${c}' of equation '${equation}' appears in neither the input nor the kernel`);
  }
  for (const c of inp) {
    if (!ker.includes(c) && !out.includes(c)) throw new UnsupportedError(`Input letter '${c}' of equation '${equation}' is summed without the kernel; reduce the input first`);
  }
  for (const c of ker) {
    if (!inp.includes(c) && !out.includes(c)) throw new UnsupportedError(`Kernel letter '${c}' of equation '${equation}' is summed without the input; such equations are not supported`);
  }
  return {
    input: inp,
    kernel: ker,
    output: out,
    contracted: [...ker].filter((c) => inp.includes(c) && !out.includes(c)),
    freeInput: [...inp].filter((c) => !ker.includes(c)),
    freeKernel: [...ker].filter((c) => !inp.includes(c)),
    batch: [...ker].filter((c) => inp.includes(c) && out.includes(c)),
  };
}

/**
 * Permutes a row-major tensor's data by `perm` (output axis i = input axis perm[i]); returns the input itself for
 * the identity permutation.
 * @example
 * ```ts
 * permute(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3], [1, 0]); // [1, 4, 2, 5, 3, 6]
 * ```
 */
export function permute<T extends Float32Array | Int8Array | Uint8Array>(data: T, shape: readonly number[], perm: readonly number[]): T {
  const rank = shape.length;
  const identity = perm.every((p, i) => p === i);
  if (identity) return data;
  const outShape = perm.map((p) => shape[p]);
  const inStrides = new Array<number>(rank);
  let s = 1;
  for (let i = rank - 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= shape[i];
  }
  const strides = perm.map((p) => inStrides[p]);
  const out = new (data.constructor as new (n: number) => T)(data.length);
  const idx = new Array<number>(rank).fill(0);
  let src = 0;
  for (let o = 0; o < data.length; o++) {
    out[o] = data[src];
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      src += strides[d];
      if (idx[d] < outShape[d]) break;
      src -= strides[d] * idx[d];
      idx[d] = 0;
    }
  }
  return out;
}

/** Options of {@link EinsumDense}. */
export interface EinsumDenseOptions extends LayerOptions {
  /** e.g. `'abc,cde->abde'`. */
  equation: string;
  /** Output shape without the batch dimension (an integer for rank-1). A null entry takes the input's size. */
  outputShape: number | readonly (number | null)[];
  /** Output letters that carry a bias (e.g. `'de'`); default none. */
  biasAxes?: string | null;
  activation?: ActivationName | null;
  kernelInitializer?: Initializer;
  biasInitializer?: Initializer;
  seed?: number;
}

/**
 * An einsum projection layer, quantizable like `Dense`.
 * @example
 * ```ts
 * const query = new EinsumDense({ equation: 'abc,cde->abde', outputShape: [null, 4, 16], biasAxes: 'de' });
 * const y = await query.apply(x);                 // x: [batch, seq, 64] -> [batch, seq, 4, 16]
 * await query.quantize('int8');
 * ```
 */
export class EinsumDense extends Layer {
  readonly equation: string;
  readonly partialOutputShape: readonly (number | null)[];
  readonly biasAxes: string | null;
  readonly activation: ActivationName;
  private readonly kernelInitializer: Initializer;
  private readonly biasInitializer: Initializer;
  private readonly seed?: number;
  /** Float kernel in the equation's kernel layout (float mode). */
  kernel: Variable<'float32'> | null = null;
  bias: Variable<'float32'> | null = null;
  inputsQuantizer: Quantizer | null = null;
  /** float8 only: null = dynamic activation scale, or Keras's stored `inputs_scale` (layers loaded from Keras files). */
  float8InputScale: number | null = null;
  /** One 2-D quantized state per combination of batch letters (one when the equation has none). */
  protected qstates: QuantState[] | null = null;
  /** Device copies of the B projections (after `to('cuda')`). */
  private readonly _resident = new ResidentSlot();
  /** GPTQ weights of the [contracted, free] projection (GPTQ mode only). */
  protected gptq: GptqState | null = null;
  /**
   * GPTQ calibration hook: receives the `[rows, contracted]` float32 inputs of every float forward, exactly what
   * the projection multiplies.
   * @internal
   */
  _gptqCapture: ((x2d: Tensor<'float32'>) => Promise<void>) | null = null;
  /** Known after build. */
  plan: EinsumPlan | null = null;
  kernelShape: number[] = [];
  fullOutputShape: (number | null)[] = [];
  private sizes = new Map<string, number>();
  /** Product of batch, contracted and free kernel sizes. */
  private B = 1;
  private C = 1;
  private F = 1;

  constructor(options: EinsumDenseOptions) {
    super(options);
    if (!options || typeof options.equation !== 'string') throw new InvalidArgumentError(`Expected an equation string for equation but received ${describe(options?.equation)}`);
    this.equation = options.equation;
    const os = typeof options.outputShape === 'number' ? [options.outputShape] : options.outputShape;
    if (!Array.isArray(os) || os.some((d) => d !== null && !(Number.isSafeInteger(d) && d >= 1))) {
      throw new InvalidArgumentError(`Expected positive integers (or null) for outputShape but received ${describe(options.outputShape)}`);
    }
    this.partialOutputShape = [...os];
    this.biasAxes = options.biasAxes ?? null;
    this.activation = checkActivation(options.activation);
    this.kernelInitializer = options.kernelInitializer ?? 'glorot_uniform';
    this.biasInitializer = options.biasInitializer ?? 'zeros';
    this.seed = options.seed;
  }

  build(inputShape: readonly (number | null)[]): void {
    const plan = analyzeEinsum(this.equation, inputShape.length);
    let outShape: (number | null)[] = [...this.partialOutputShape];
    if (outShape.length === plan.output.length - 1) outShape = [inputShape[0], ...outShape];
    if (outShape.length !== plan.output.length) {
      throw new ShapeMismatchError(`Expected outputShape of rank ${plan.output.length - 1} (without the batch dimension) for equation '${this.equation}' but received [${this.partialOutputShape.join(', ')}]`);
    }
    const sizes = new Map<string, number>();
    [...plan.input].forEach((c, i) => {
      const d = inputShape[i];
      if (d !== null && d !== undefined) sizes.set(c, d);
    });
    [...plan.output].forEach((c, i) => {
      const d = outShape[i];
      if (d === null || d === undefined) return;
      const prev = sizes.get(c);
      if (prev !== undefined && plan.input.includes(c) && prev !== d) {
        throw new ShapeMismatchError(`Expected output dimension '${c}' = ${prev} (the input's) for outputShape but received ${d}`);
      }
      sizes.set(c, d);
    });
    for (const c of plan.kernel) {
      if (!sizes.has(c)) throw new InvalidArgumentError(`Expected a known size for kernel dimension '${c}' of equation '${this.equation}' (from the input shape or outputShape)`);
    }
    this.plan = plan;
    this.sizes = sizes;
    this.kernelShape = [...plan.kernel].map((c) => sizes.get(c) as number);
    this.fullOutputShape = [...plan.output].map((c) => sizes.get(c) ?? null);
    const prod = (letters: string[]) => letters.reduce((a, c) => a * (sizes.get(c) as number), 1);
    this.B = prod(plan.batch);
    this.C = prod(plan.contracted);
    this.F = prod(plan.freeKernel);
    if (this.quantizationMode !== null) {
      this.quantizedBuild(this.quantizationMode);
    } else {
      this.kernel = this.addWeight('kernel', initialize(this.kernelInitializer, this.kernelShape, this.seed));
      const bs = this.biasShape();
      if (bs) this.bias = this.addWeight('bias', initialize(this.biasInitializer, bs, this.seed === undefined ? undefined : this.seed + 1));
    }
    this.built = true;
  }

  /** Keras bias shape: output letters from the first bias letter on, 1 where a letter has no bias. */
  private biasShape(): number[] | null {
    if (!this.biasAxes) return null;
    const out = (this.plan as EinsumPlan).output;
    for (const c of this.biasAxes) {
      if (!out.includes(c)) throw new InvalidArgumentError(`Expected bias axes among the output letters '${out}' for biasAxes but received '${this.biasAxes}'`);
    }
    const first = Math.min(...[...this.biasAxes].map((c) => out.indexOf(c)));
    return [...out.slice(first)].map((c) => ((this.biasAxes as string).includes(c) ? (this.sizes.get(c) as number) : 1));
  }

  /** Modes other than int8 need a plain projection (no batch letters). */
  private checkModeSupported(mode: QuantizationMode): void {
    const plan = this.plan as EinsumPlan;
    if (plan.batch.length > 0 && mode !== 'int8') {
      throw new UnsupportedError(
        `EinsumDense '${this.name}': equation '${this.equation}' has letters shared by input, kernel and output (${plan.batch.join(', ')}); with such letters only int8 quantization is supported, received mode '${mode}'`,
      );
    }
  }

  /** Kernel letters in the internal order [batch..., contracted..., freeKernel...]. */
  private internalKernelLetters(): string[] {
    const plan = this.plan as EinsumPlan;
    return [...plan.batch, ...plan.contracted, ...plan.freeKernel];
  }

  /** Permutation taking the kernel layout to the internal order. */
  private kernelPerm(): number[] {
    const plan = this.plan as EinsumPlan;
    return this.internalKernelLetters().map((c) => plan.kernel.indexOf(c));
  }

  private internalKernelShape(): number[] {
    return this.internalKernelLetters().map((c) => this.sizes.get(c) as number);
  }

  /** Output letters that index the int8 kernel scale (batch and free kernel letters), in output order. */
  private scaleLettersOutputOrder(): string[] {
    const plan = this.plan as EinsumPlan;
    return [...plan.output].filter((c) => plan.freeKernel.includes(c) || plan.batch.includes(c));
  }

  /** Keras's stored kernel_scale shape for int8: the output rank, kept kernel sizes at their output positions. */
  private int8ScaleShape(): number[] {
    const keep = this.scaleLettersOutputOrder();
    return [...(this.plan as EinsumPlan).output].map((c) => (keep.includes(c) ? (this.sizes.get(c) as number) : 1));
  }

  protected quantizedBuild(mode: QuantizationMode): void {
    this.checkModeSupported(mode);
    const policy = this.effectivePolicy;
    if (mode === 'gptq') {
      const { bits, groupSize } = gptqParams(this.quantizationConfig, policy, this.name);
      const bs = this.biasShape();
      this.bias = bs ? new Variable('bias', new Tensor('float32', bs)) : null;
      this.installGptq(emptyGptqState(this.C, this.F, bits, groupSize));
      this._isQuantized = true;
      return;
    }
    const block = blockSizeFor(this.quantizationConfig, policy instanceof Int4DTypePolicy ? policy.blockSize : null);
    const states = Array.from({ length: this.B }, () => emptyQuantState(this.C, this.F, mode, mode === 'int4' ? block : null));
    const bs = this.biasShape();
    this.bias = bs ? new Variable('bias', new Tensor('float32', bs)) : null;
    this.installStates(states);
    this.inputsQuantizer = QuantizationConfig.activationQuantizerOrDefault(this.quantizationConfig, mode === 'int8' ? new AbsMaxQuantizer() : null);
    this._isQuantized = true;
  }

  private installStates(states: QuantState[]): void {
    const plan = this.plan as EinsumPlan;
    const vars: Variable[] = [];
    const nt = { trainable: false };
    const first = states[0];
    const backPerm = inversePerm(this.kernelPerm());
    const internalShape = this.internalKernelShape();
    if (first.mode === 'int8' || first.mode === 'float8') {
      // Keras keeps the equation's kernel shape for int8/float8: concatenate the slices, undo the permutation.
      const joined = new (first.mode === 'int8' ? Int8Array : Uint8Array)(this.B * this.C * this.F);
      states.forEach((st, b) => joined.set((st as { kernel: Tensor }).kernel.data as Int8Array, b * this.C * this.F));
      const data = permute(joined, internalShape, backPerm);
      const kv = first.mode === 'int8' ? new Tensor('int8', this.kernelShape, data as Int8Array) : new Tensor('float8_e4m3fn', this.kernelShape, data as Uint8Array);
      vars.push(new Variable('kernel', kv, first.mode === 'int8' ? nt : {}));
    } else {
      vars.push(new Variable('kernel', first.kernel, nt));
    }
    if (this.bias) vars.push(this.bias);
    if (first.mode === 'float8') {
      const scalar = (v: number) => new Tensor('float32', [], new Float32Array([v]));
      vars.push(
        new Variable('inputs_scale', scalar(1)),
        new Variable('inputs_amax_history', new Tensor('float32', [FLOAT8_HISTORY])),
        new Variable('kernel_scale', scalar(first.kernelScale)),
        new Variable('kernel_amax_history', new Tensor('float32', [FLOAT8_HISTORY])),
        new Variable('outputs_grad_scale', scalar(1)),
        new Variable('outputs_grad_amax_history', new Tensor('float32', [FLOAT8_HISTORY])),
      );
    } else if (first.mode === 'int8') {
      // internal scale order [batch..., freeKernel...] -> the output order of those letters
      const from = [...plan.batch, ...plan.freeKernel];
      const to = this.scaleLettersOutputOrder();
      const joined = new Float32Array(this.B * this.F);
      states.forEach((st, b) => joined.set((st as { scale: Tensor<'float32'> }).scale.data, b * this.F));
      const vals = permute(joined, from.map((c) => this.sizes.get(c) as number), to.map((c) => from.indexOf(c)));
      vars.push(new Variable('kernel_scale', new Tensor('float32', this.int8ScaleShape(), vals), nt));
    } else {
      vars.push(new Variable('kernel_scale', first.scale, nt));
      if (first.blockSize !== null) vars.push(new Variable('kernel_zero', first.zero, nt), new Variable('g_idx', first.gIdx, nt));
    }
    this.setVariables(vars);
    this.qstates = states;
    this.kernel = null;
  }

  /** GPTQ variables in Keras's order: bias, quantized_kernel, kernel_scale, zero_point (Keras's name here), g_idx. */
  private installGptq(state: GptqState): void {
    const nt = { trainable: false };
    const vars: Variable[] = [];
    if (this.bias) vars.push(this.bias);
    vars.push(
      new Variable('kernel', state.kernel, nt),
      new Variable('kernel_scale', state.scale, nt),
      new Variable('zero_point', state.zero, nt),
      new Variable('g_idx', state.gIdx, nt),
    );
    this.setVariables(vars);
    this.gptq = state;
    this.qstates = null;
    this.kernel = null;
  }

  /**
   * The float projection `[contracted, free]` GPTQ calibrates (the kernel in the internal order, no batch letters).
   * @internal
   */
  _gptqFloatKernel(): Tensor<'float32'> {
    if (!this.kernel) throw new InvalidArgumentError(`Layer '${this.name}' has no float kernel to quantize`);
    this.checkModeSupported('gptq');
    return new Tensor('float32', [this.C, this.F], Float32Array.from(this.kernelSlices(this.kernel.value.data)[0]));
  }

  /**
   * Installs calibrated GPTQ weights of the `[contracted, free]` projection; the float kernel is released.
   * @internal
   */
  _installGptq(state: GptqState, config: QuantizationConfig | null): void {
    if (state.rows !== this.C || state.cols !== this.F) {
      throw new InvalidArgumentError(`Expected GPTQ weights of shape [${this.C}, ${this.F}] for layer '${this.name}' but received [${state.rows}, ${state.cols}]`);
    }
    this.installGptq(state);
    this.quantizationConfig = config;
    this.inputsQuantizer = null;
    this.setQuantizedPolicy(`gptq/${state.bits}/${state.groupSize}`);
    this._isQuantized = true;
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
      qstates: this.qstates,
      gptq: this.gptq,
      policy: this._policy,
      variables: this._variables,
      config: this.quantizationConfig,
      inputsQuantizer: this.inputsQuantizer,
      isQuantized: this._isQuantized,
    };
    return () => {
      this.kernel = saved.kernel;
      this.qstates = saved.qstates;
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

  /** The float kernel as B slices of [C, F]. */
  private kernelSlices(data: Float32Array): Float32Array[] {
    const all = permute(data, this.kernelShape, this.kernelPerm());
    const n = this.C * this.F;
    return Array.from({ length: this.B }, (_, b) => all.subarray(b * n, (b + 1) * n));
  }

  /** After loading: rebuild the internal [C, F] slices from the (replaced) variables in Keras layout. */
  protected override releaseState(): void {
    this._resident.drop();
    this.qstates = null;
    this.gptq = null;
    this._gptqCapture = null;
  }

  protected override afterLoad(): void {
    if (this.gptq) {
      const get = (n: string) => (this._variables.find((v) => v.name === n) as Variable).value;
      this.gptq = gptqStateWithValues(this.gptq, get('kernel') as Tensor<'uint8'>, get('kernel_scale') as Tensor<'float32'>, get('zero_point') as Tensor<'uint8'>, get('g_idx') as Tensor<'float32'>);
      return;
    }
    const states = this.qstates;
    if (!states) return;
    const plan = this.plan as EinsumPlan;
    const get = (name: string) => (this._variables.find((v) => v.name === name) as Variable).value;
    const first = states[0];
    if (first.mode === 'int4') {
      this.qstates = [stateFromVariables(first, this._variables)];
      return;
    }
    const n = this.C * this.F;
    const internal = permute(get('kernel').data as Int8Array | Uint8Array, this.kernelShape, this.kernelPerm());
    if (first.mode === 'float8') {
      const ks = (get('kernel_scale').data as Float32Array)[0];
      this.qstates = states.map((_, b) => ({ mode: 'float8', kernel: new Tensor('float8_e4m3fn', [this.C, this.F], (internal as Uint8Array).slice(b * n, (b + 1) * n)), kernelScale: ks }));
      return;
    }
    const from = this.scaleLettersOutputOrder();
    const to = [...plan.batch, ...plan.freeKernel];
    const scales = permute(get('kernel_scale').data as Float32Array, from.map((c) => this.sizes.get(c) as number), to.map((c) => from.indexOf(c)));
    this.qstates = states.map((_, b) => ({
      mode: 'int8',
      kernel: new Tensor('int8', [this.C, this.F], (internal as Int8Array).slice(b * n, (b + 1) * n)),
      scale: new Tensor('float32', [this.F], scales.slice(b * this.F, (b + 1) * this.F)),
    }));
  }

  /** float8 layers save the float32 kernel, as Keras keeps it. */
  override saveOwnVariables(): Tensor[] {
    if (this.gptq && !this.gptq.calibrated) {
      throw new InvalidArgumentError(`Cannot save an uncalibrated GPTQ layer '${this.name}': run model.quantize('gptq', { config }) with calibration data first`);
    }
    return saveFloat8Aware(this.qstates?.[0] ?? null, this._variables);
  }

  /** What a file must hold for this layer (also for an uncalibrated GPTQ layer). @internal */
  override loadSpec(): Tensor[] {
    return saveFloat8Aware(this.qstates?.[0] ?? null, this._variables);
  }

  /** float8 layers load Keras's float32 kernel and quantize it with the stored kernel scale. */
  override loadOwnVariables(tensors: Tensor[]): void {
    if (this.gptq) {
      const i = this._variables.findIndex((v) => v.name === 'g_idx');
      if (i >= 0 && i < tensors.length) tensors = tensors.map((t, j) => (j === i ? gIdxAsFloat32(t) : t));
    }
    const first = this.qstates?.[0] ?? null;
    super.loadOwnVariables(loadFloat8Aware(first, this._variables, tensors, this.name));
    if (first?.mode === 'float8') this.float8InputScale = storedInputScale(this._variables);
  }

  protected override async quantizeLayer(mode: QuantizationMode, config: QuantizationConfig, typeCheck: boolean): Promise<void> {
    if (typeCheck && this.constructor !== EinsumDense) throw this.noQuantizeSupport();
    this.checkModeSupported(mode);
    if (mode === 'gptq') throw new InvalidArgumentError("GPTQ quantizes through Model.quantize('gptq', { config }) with calibration data");
    if (!this.kernel) throw new InvalidArgumentError(`Layer '${this.name}' has no float kernel to quantize`);
    const block = mode === 'int4' ? blockSizeFor(config, undefined) : null;
    const states: QuantState[] = [];
    for (const slice of this.kernelSlices(this.kernel.value.data)) {
      states.push(await quantizeKernel2D(new Tensor('float32', [this.C, this.F], slice), mode, config, block));
    }
    const inputsQuantizer =
      mode === 'int8'
        ? QuantizationConfig.activationQuantizerOrDefault(config, new AbsMaxQuantizer())
        : mode === 'int4' && block === null
          ? QuantizationConfig.activationQuantizerOrDefault(config, null)
          : null;
    this.installStates(states);
    this.inputsQuantizer = inputsQuantizer;
    this.quantizationConfig = config;
    this.setQuantizedPolicy(mode === 'int4' ? `int4/${block ?? -1}` : mode);
  }

  /** Input permuted to [batch..., freeInput..., contracted...]: B slices of [M, C], plus the free input sizes. */
  private prepareInput(inputs: Tensor): { slices: Tensor<'float32'>[]; freeSizes: number[] } {
    const plan = this.plan as EinsumPlan;
    const x = inputs.dtype === 'float32' ? (inputs as Tensor<'float32'>) : inputs.toFloat32();
    if (x.rank !== plan.input.length) throw new ShapeMismatchError(`Expected inputs of rank ${plan.input.length} for layer '${this.name}' but received shape [${x.shape.join(', ')}]`);
    [...plan.input].forEach((c, i) => {
      const want = this.sizes.get(c);
      if (want !== undefined && plan.kernel.includes(c) && x.shape[i] !== want) {
        throw new ShapeMismatchError(`Expected dimension ${i} ('${c}') of the inputs to be ${want} for layer '${this.name}' but received shape [${x.shape.join(', ')}]`);
      }
    });
    const perm = [...plan.batch, ...plan.freeInput, ...plan.contracted].map((c) => plan.input.indexOf(c));
    const data = permute(x.data as Float32Array, x.shape, perm);
    const freeSizes = plan.freeInput.map((c) => x.shape[plan.input.indexOf(c)]);
    const M = freeSizes.reduce((a, b) => a * b, 1);
    const n = M * this.C;
    const slices = Array.from({ length: this.B }, (_, b) => new Tensor('float32', [M, this.C], data.subarray(b * n, (b + 1) * n)));
    return { slices, freeSizes };
  }

  /** B results [M, F] -> output layout, + bias, + activation. */
  private finishOutput(ys: Tensor<'float32'>[], freeSizes: number[]): Tensor<'float32'> {
    const plan = this.plan as EinsumPlan;
    const M = freeSizes.reduce((a, b) => a * b, 1);
    const joined = new Float32Array(this.B * M * this.F);
    ys.forEach((y, b) => joined.set(y.data, b * M * this.F));
    const letters = [...plan.batch, ...plan.freeInput, ...plan.freeKernel];
    const shape = letters.map((c, i) => (i >= plan.batch.length && i < plan.batch.length + freeSizes.length ? freeSizes[i - plan.batch.length] : (this.sizes.get(c) as number)));
    const perm = [...plan.output].map((c) => letters.indexOf(c));
    const data = permute(joined, shape, perm);
    const outShape = perm.map((p) => shape[p]);
    this.addBiasAndActivate(data, outShape);
    return new Tensor('float32', outShape, data);
  }

  /** Adds the (broadcast) bias and applies the activation in place on output-layout data. */
  private addBiasAndActivate(data: Float32Array, outShape: number[]): void {
    if (this.bias) {
      const b = this.bias.value.data;
      const bshape = this.bias.value.shape;
      const tail = outShape.slice(outShape.length - bshape.length);
      const tailSize = tail.reduce((a, c) => a * c, 1);
      // the bias expanded once to the full tail (broadcast dims repeated), then added row by row
      const full = new Float32Array(tailSize);
      for (let i = 0; i < tailSize; i++) {
        let r = i;
        let bi = 0;
        let bstride = 1;
        for (let d = tail.length - 1; d >= 0; d--) {
          const coord = r % tail[d];
          r = (r - coord) / tail[d];
          if (bshape[d] !== 1) bi += coord * bstride;
          bstride *= bshape[d];
        }
        full[i] = b[bi];
      }
      for (let o = 0; o < data.length; o += tailSize) {
        for (let i = 0; i < tailSize; i++) data[o + i] += full[i];
      }
    }
    applyActivation(this.activation, data, outShape[outShape.length - 1] ?? 1);
  }

  async call(inputs: Tensor): Promise<Tensor<'float32'>> {
    if (!this.kernel) throw new InvalidArgumentError(`Layer '${this.name}' is quantized; call apply() instead of call()`);
    const { slices, freeSizes } = this.prepareInput(inputs);
    if (this._gptqCapture && this.B === 1) await this._gptqCapture(slices[0]);
    if (this._deviceIndex !== null) return this.finishOutput(await this.deviceForward(slices), freeSizes);
    const kernels = this.kernelSlices(this.kernel.value.data);
    const ys: Tensor<'float32'>[] = [];
    for (let b = 0; b < this.B; b++) ys.push(await denseForward(slices[b], { format: 'float32', kernel: kernels[b] }, this.F, null));
    return this.finishOutput(ys, freeSizes);
  }

  /** @internal Uploads the B projections to device `index` (null: frees them); see {@link Layer.to}. */
  override async _placeOwnWeights(index: number | null): Promise<boolean> {
    if (index === null) this._resident.drop();
    else if (this.built) await this.resident(index);
    return true;
  }

  /** The device copies of the B projections (bias stays on the host: it is broadcast in the output layout). */
  private resident(index: number): Promise<ResidentProjection[]> {
    const key = [index, this.kernel?.value, this.qstates, this.gptq, this.inputsQuantizer, this.float8InputScale];
    return this._resident.get(key, () => {
      const one = { gptq: null, inputsQuantizer: this.inputsQuantizer, float8InputScale: this.float8InputScale, layerName: this.name };
      const kernels = this.kernel ? this.kernelSlices(this.kernel.value.data) : null;
      const sources = this.gptq
        ? [{ ...one, floatKernel: null, qstate: null, gptq: this.gptq }]
        : Array.from({ length: this.B }, (_, b) => ({ ...one, floatKernel: kernels ? kernels[b].slice() : null, qstate: this.qstates ? this.qstates[b] : null }));
      return uploadAll(sources.map((w) => async () => ResidentProjection.upload(await residentSourceOf(w), this.C, this.F, null, index)));
    });
  }

  private async deviceForward(slices: Tensor<'float32'>[]): Promise<Tensor<'float32'>[]> {
    const projs = await this.resident(this._deviceIndex as number);
    const ys: Tensor<'float32'>[] = [];
    for (let b = 0; b < projs.length; b++) {
      const M = slices[b].shape[0];
      ys.push(new Tensor('float32', [M, this.F], await projs[b].forward(slices[b].data, M)));
    }
    return ys;
  }

  protected override async quantizedCall(inputs: Tensor): Promise<Tensor<'float32'>> {
    const { slices, freeSizes } = this.prepareInput(inputs);
    if (this._deviceIndex !== null) return this.finishOutput(await this.deviceForward(slices), freeSizes);
    if (this.gptq) return this.finishOutput([await projectGptq(slices[0], this.gptq, null)], freeSizes);
    const states = this.qstates as QuantState[];
    const ys: Tensor<'float32'>[] = [];
    for (let b = 0; b < this.B; b++) ys.push(await projectQuantized(slices[b], states[b], this.F, null, this.inputsQuantizer, this.float8InputScale));
    return this.finishOutput(ys, freeSizes);
  }

  /** float32 kernel in the equation's kernel layout (dequantized when quantized). */
  async dequantizedKernel(): Promise<Tensor<'float32'>> {
    if (this.kernel) return this.kernel.value;
    if (this.gptq) {
      const dq = await dequantizeGptq(this.gptq);
      return new Tensor('float32', this.kernelShape, permute(dq.data, this.internalKernelShape(), inversePerm(this.kernelPerm())));
    }
    const joined = new Float32Array(this.B * this.C * this.F);
    const states = this.qstates as QuantState[];
    for (let b = 0; b < this.B; b++) joined.set((await dequantizeState(states[b], this.C, this.F)).data, b * this.C * this.F);
    return new Tensor('float32', this.kernelShape, permute(joined, this.internalKernelShape(), inversePerm(this.kernelPerm())));
  }

  /** The quantized state of a projection without batch letters (null for float). */
  get quantizedState(): Readonly<QuantState> | null {
    return this.qstates && this.qstates.length === 1 ? this.qstates[0] : null;
  }

  /**
   * The Keras config: `output_shape`, `equation`, `activation`, `bias_axes`, serialized initializers (with the
   * seed), regularizers and constraints (always null) and `quantization_config` (serialized, or null), plus
   * `name`, `trainable` and `dtype`.
   * @example
   * ```ts
   * new EinsumDense({ equation: 'abc,cd->abd', outputShape: [null, 64], biasAxes: 'd' }).getConfig().output_shape; // [null, 64]
   * ```
   */
  override getConfig(): Record<string, unknown> {
    return {
      ...super.getConfig(),
      output_shape: [...this.partialOutputShape],
      equation: this.equation,
      activation: this.activation,
      bias_axes: this.biasAxes,
      kernel_initializer: serializeInitializer(this.kernelInitializer, this.seed ?? null),
      bias_initializer: serializeInitializer(this.biasInitializer, this.seed === undefined ? null : this.seed + 1),
      kernel_regularizer: null,
      bias_regularizer: null,
      activity_regularizer: null,
      kernel_constraint: null,
      bias_constraint: null,
      quantization_config: serializeQuantizationConfig(this.quantizationConfig),
      ...(this.gptq ? { gptq_unpacked_column_size: this.F } : {}),
    };
  }

  /**
   * Rebuilds an EinsumDense layer from a Keras config (`config.json` or {@link EinsumDense.getConfig}); a
   * quantized `dtype` plus `quantization_config` build quantized variables directly. Regularizers, constraints,
   * LoRA settings and `gptq_unpacked_column_size` are ignored.
   * @example
   * ```ts
   * EinsumDense.fromConfig({ name: 'proj', equation: 'abc,cd->abd', output_shape: [null, 64], bias_axes: 'd' });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): EinsumDense {
    const c = checkLayerConfig(config, 'EinsumDense');
    const k = deserializeInitializer(c.kernel_initializer, 'config.kernel_initializer');
    const layer = new EinsumDense({
      ...layerOptionsFromConfig(c),
      equation: c.equation as string,
      outputShape: c.output_shape as number | (number | null)[],
      biasAxes: (c.bias_axes ?? null) as string | null,
      activation: activationFromConfig(c.activation),
      kernelInitializer: k.init,
      biasInitializer: deserializeInitializer(c.bias_initializer, 'config.bias_initializer').init,
      ...(k.seed === undefined ? {} : { seed: k.seed }),
    });
    layer.quantizationConfig = quantizationConfigFromConfig(c);
    return layer;
  }

}

function inversePerm(perm: readonly number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return inv;
}
