/**
 * `Model`: a layer made of layers, in three styles (as Keras): functional (`new Model({ inputs, outputs })`
 * over a graph recorded with `Input()` and `applySymbolic()`), `Sequential` (see `sequential.ts`), and
 * subclassed (`class MyModel extends Model { async call(x) { … } }`, whose Layer-valued properties are tracked
 * in property order). Models build, run, batch-predict, summarize, serialize to Keras configs, and quantize
 * (`await model.quantize('int8')` → {@link QuantizationReport}, spec §1.6).
 * @packageDocumentation
 */
import { DType } from '../dtype';
import { serializeDTypePolicy } from '../dtype-policies';
import { InvalidArgumentError, ShapeMismatchError, UnsupportedError } from '../errors';
import { Dense } from '../layers/dense';
import { EinsumDense } from '../layers/einsum';
import { Layer, LayerOptions, placeLayers } from '../layers/layer';
import { checkCudaDevice, cudaEmulated, Device, parseDevice } from '../cuda/resident';
import { Variable } from '../layers/variable';
import { GPTQConfig, QuantizationConfig, validateAndResolveConfig } from '../quantizers';
import { _pyRepr } from '../quantizers/registry';
import { containerLengthForShape, Tensor, describe } from '../tensor';
import {
  _registerModelDeserializer,
  deserializeLayer,
  FromConfigOptions,
  FunctionalGraph,
  KerasClassInfo,
  rebuildFunctional,
} from './graph';
import { InputLayer, SymbolicShape, SymbolicTensor } from './input';
import { ModelGate } from './gate';
import { QuantizationReport } from './report';
import { GptqProgress, GptqRunOptions, runGptqCalibration } from '../gptq/calibrate';
import type { GptqDevice } from '../gptq/matrix';

/** Options of a functional or subclassed {@link Model}. */
export interface ModelOptions extends LayerOptions {
  /** Symbolic input(s) from `Input()` (functional models only). */
  inputs?: SymbolicTensor | SymbolicTensor[];
  /** Symbolic output(s) from `applySymbolic()` (functional models only). */
  outputs?: SymbolicTensor | SymbolicTensor[];
}

/** A layer-name filter: a regex (string or RegExp, searched in the layer NAME), a list of them, or a predicate. */
export type LayerFilter = string | RegExp | ReadonlyArray<string | RegExp> | ((layer: Layer) => boolean);

/** Options of {@link Model.quantize}. */
export interface ModelQuantizeOptions {
  /** A quantization config (`quantize('int4')` ≡ `quantize({ config: new Int4QuantizationConfig() })`). */
  config?: QuantizationConfig | null;
  /** Which layers to quantize; others are reported as 'filtered out'. */
  filters?: LayerFilter | null;
  /** Refuse subclasses of the quantizable built-in layers (default true). */
  typeCheck?: boolean;
  /** Print the report (default true, as Keras). */
  verbose?: boolean;
  /** GPTQ: progress callback (block started, layer quantized, done). */
  onProgress?: ((p: GptqProgress) => void) | null;
  /** GPTQ: abort calibration; the model is left unchanged and the call rejects with `AbortedError`. */
  signal?: AbortSignal | null;
  /** GPTQ: calibrate sub-layers of a block in execution order, each seeing the earlier ones quantized (default true). */
  trueSequential?: boolean;
  /** GPTQ: seed of the calibration windows (default 42). */
  seed?: number;
  /** GPTQ: run the Hessians and GPTQ on a CUDA device ('cuda', 'cuda:N'; bit-identical); default 'cpu'. */
  device?: GptqDevice;
}

/** The GPTQ layer structure: layers before the blocks, and the blocks calibrated one after the other. */
export interface QuantizationLayerStructure {
  /** Layers run before the first block (e.g. the token embedding). */
  preBlockLayers?: Layer[];
  /** Keras spelling of `preBlockLayers`. */
  pre_block_layers?: Layer[];
  /** The blocks (e.g. transformer layers). */
  sequentialBlocks?: Layer[];
  /** Keras spelling of `sequentialBlocks`. */
  sequential_blocks?: Layer[];
}

/** What {@link Model.gptqQuantize} receives besides the config. */
export interface GPTQContext {
  /** The report being filled. */
  report: QuantizationReport;
  /** Dense / EinsumDense layers inside the blocks that passed the filters and are not quantized yet. */
  targets: Layer[];
  /** Run options (progress, abort signal, ordering, seed). */
  run?: GptqRunOptions;
  /** The normalized structure. */
  preBlockLayers: Layer[];
  /** The normalized blocks. */
  sequentialBlocks: Layer[];
}

/** Options of {@link Model.predict}. */
export interface PredictOptions {
  /** Rows per call (default 32). */
  batchSize?: number;
  /** Options passed to every call. */
  callOptions?: Record<string, unknown>;
}

/** Options of {@link Model.summary}. */
export interface SummaryOptions {
  /** Also print the table with `console.log` (default false). */
  print?: boolean;
}

const NO_SUPPORT_PATTERNS = [/does not have a `quantize` method implemented/, /Invalid quantization mode/];

function isNoSupport(err: unknown): boolean {
  return err instanceof UnsupportedError && NO_SUPPORT_PATTERNS.some((p) => p.test(err.message));
}

/** Keras `naming.to_snake_case` of a class name. */
function snakeCase(name: string): string {
  return name
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase();
}

function compileRegex(p: string | RegExp, where: string): RegExp {
  if (p instanceof RegExp) return new RegExp(p.source, p.flags.replace(/[gy]/g, ''));
  try {
    return new RegExp(p);
  } catch (err) {
    throw new InvalidArgumentError(`Expected a valid regular expression for ${where} but received ${describe(p)}: ${(err as Error).message}`);
  }
}

function pyTypeName(v: unknown): string {
  if (v === null) return "<class 'NoneType'>";
  if (typeof v === 'number') return Number.isInteger(v) ? "<class 'int'>" : "<class 'float'>";
  if (typeof v === 'boolean') return "<class 'bool'>";
  if (typeof v === 'object') return `<class '${(v as object).constructor?.name ?? 'object'}'>`;
  return `<class '${typeof v}'>`;
}

/**
 * Turns `filters` into a predicate over layers (null = everything passes). Regexes are searched in the layer
 * NAME (not the path), as Keras's `re.search`.
 * @throws InvalidArgumentError for anything but a regex string/RegExp, a list of them, or a function.
 * @example
 * ```ts
 * makeLayerFilter(['^dense', /head/])!(layer);
 * ```
 */
export function makeLayerFilter(filters: unknown): ((layer: Layer) => boolean) | null {
  if (filters === null || filters === undefined) return null;
  if (typeof filters === 'function') return (layer) => Boolean((filters as (l: Layer) => unknown)(layer));
  if (typeof filters === 'string' || filters instanceof RegExp) {
    const re = compileRegex(filters, 'filters');
    return (layer) => re.test(layer.name);
  }
  if (Array.isArray(filters) && filters.every((f) => typeof f === 'string' || f instanceof RegExp)) {
    const res = filters.map((f, i) => compileRegex(f as string | RegExp, `filters[${i}]`));
    return (layer) => res.some((re) => re.test(layer.name));
  }
  throw new InvalidArgumentError(
    `Expected a regex string, a RegExp, a list of them, or a function for filters but received ${describe(filters)}: ` +
      `The \`filters\` argument must be a regex string, a list of regex strings, or a callable. Received: ${pyTypeName(filters)}`,
  );
}

/**
 * The direct sub-layers of a layer: a model's tracked layers, or a composite layer's `savableChildren()`.
 * @example
 * ```ts
 * childLayersOf(mha).map((l) => l.name); // ['query', 'key', 'value', 'attention_output']
 * ```
 */
export function childLayersOf(layer: Layer): Layer[] {
  if (layer instanceof Model) return layer._childLayers();
  return layer.savableChildren().map(([, l]) => l);
}

/**
 * Every variable of `layer` and of all its sub-layers, each once.
 * @example
 * ```ts
 * collectVariables(model).length; // 6 for a Sequential of two int8 Dense layers
 * ```
 */
export function collectVariables(layer: Layer): Variable[] {
  const seenLayers = new Set<Layer>();
  const seen = new Set<Variable>();
  const out: Variable[] = [];
  const visit = (l: Layer): void => {
    if (seenLayers.has(l)) return;
    seenLayers.add(l);
    if (!(l instanceof Model)) {
      for (const v of l.variables) {
        if (!seen.has(v)) {
          seen.add(v);
          out.push(v);
        }
      }
    }
    for (const c of childLayersOf(l)) visit(c);
  };
  visit(layer);
  return out;
}

function formatShape(shape: SymbolicShape | null | undefined): string {
  if (!shape) return '?';
  return `(${shape.map((d) => (d === null ? 'None' : String(d))).join(', ')}${shape.length === 1 ? ',' : ''})`;
}

function pad(s: string, n: number): string {
  return s.length >= n ? s.slice(0, n - 1) + ' ' : s + ' '.repeat(n - s.length);
}

function isShapeList(s: unknown): s is readonly (readonly (number | null)[])[] {
  return Array.isArray(s) && s.length > 0 && Array.isArray(s[0]);
}

function sliceRows(t: Tensor, start: number, end: number): Tensor {
  const rows = t.shape[0];
  const per = containerLengthForShape(t.dtype, t.shape) / rows;
  const data = (t.data as unknown as { subarray(a: number, b: number): unknown }).subarray(start * per, end * per);
  return new Tensor(t.dtype, [end - start, ...t.shape.slice(1)], data as never);
}

function concatRows(parts: Tensor[]): Tensor {
  const first = parts[0];
  const rest = first.shape.slice(1);
  for (const p of parts) {
    if (p.dtype !== first.dtype || p.shape.length !== first.shape.length || p.shape.slice(1).some((d, i) => d !== rest[i])) {
      throw new ShapeMismatchError(`Expected batch outputs of one dtype and trailing shape [${rest.join(', ')}] for predict() but received a ${p.dtype} tensor of shape [${p.shape.join(', ')}]`);
    }
  }
  const rows = parts.reduce((a, p) => a + p.shape[0], 0);
  const out = new Tensor(first.dtype, [rows, ...rest]);
  let offset = 0;
  for (const p of parts) {
    (out.data as unknown as { set(a: ArrayLike<number>, o: number): void }).set(p.data as unknown as ArrayLike<number>, offset);
    offset += p.data.length;
  }
  return out;
}

/**
 * A model. Functional: `new Model({ inputs, outputs, name })`. Subclassed: extend it, create layers as
 * properties in the constructor, and implement `call`. (For a plain stack use `Sequential`.)
 *
 * Paths: a top-level model's layers have their own name as path; a sub-layer's path is its parent's path,
 * `/`, and its name (`decoder/attention/query`). Paths (and the paths of all variables) are refreshed whenever
 * the model is built, called, summarized, flattened or quantized.
 *
 * `apply`/`call`/`predict` resolve to a Tensor, or to an array of Tensors for a model with several outputs
 * (their declared type is `any` so that both styles type-check; `Sequential` narrows it to `Tensor`).
 *
 * @example
 * ```ts
 * import { Input, Model, Dense, applySymbolic } from 'quantkit';
 * const x = Input({ shape: [10] });
 * const y = await applySymbolic(new Dense({ units: 1 }), await applySymbolic(new Dense({ units: 32, activation: 'relu' }), x));
 * const model = new Model({ inputs: x, outputs: y, name: 'mlp' });
 * const out = await model.predict(batch, { batchSize: 64 });
 * const report = await model.quantize('int8', { verbose: false });
 *
 * class TwoTower extends Model {
 *   left = new Dense({ units: 8 });
 *   right = new Dense({ units: 8 });
 *   override async call(x: Tensor) { return this.right.apply(await this.left.apply(x)); }
 * }
 * ```
 */
export class Model extends Layer {
  /** The report of the last `quantize()` call (Keras `_quantization_report`). */
  quantizationReport: QuantizationReport | null = null;
  protected _qkGraph: FunctionalGraph | null = null;
  protected _qkSingleInput = true;
  protected _qkSingleOutput = true;
  /** Set when a parent model assigns this model's path. */
  _qkNested = false;
  /** The input shape of the first build/call of a subclassed model (for `getBuildConfig`). */
  protected _qkBuildShape: unknown = null;
  private _qkGateObj: ModelGate | null = null;

  /**
   * The model's concurrency gate (see `lib/models/gate.ts`): inference and saving share it, `quantize()`,
   * `loadWeights()` and `dispose()` take it alone.
   * @internal
   */
  protected get gate(): ModelGate {
    if (!this._qkGateObj) this._qkGateObj = new ModelGate(this.name);
    return this._qkGateObj;
  }

  constructor(options: ModelOptions = {}) {
    super(options);
    const { inputs, outputs } = options;
    if ((inputs === undefined) !== (outputs === undefined)) {
      throw new InvalidArgumentError(
        `Expected both inputs and outputs (a functional model) or neither (a subclassed model) for options of Model '${this.name}' but received only ${inputs === undefined ? 'outputs' : 'inputs'}`,
      );
    }
    if (inputs !== undefined && outputs !== undefined) {
      this._qkSingleInput = !Array.isArray(inputs);
      this._qkSingleOutput = !Array.isArray(outputs);
      const ins = Array.isArray(inputs) ? inputs : [inputs];
      const outs = Array.isArray(outputs) ? outputs : [outputs];
      if (ins.length === 0 || outs.length === 0) {
        throw new InvalidArgumentError(`Expected at least one input and one output for Model '${this.name}' but received ${ins.length} and ${outs.length}`);
      }
      this._qkGraph = new FunctionalGraph(ins, outs, this.name);
      this.built = true;
      this.refreshPaths();
    }
  }

  /** Keras class info used in configs (`Functional` for graph models, the class name otherwise). @internal */
  static kerasClassInfo(layer: Layer): KerasClassInfo {
    if (layer instanceof Model && layer._qkGraph && layer.constructor === Model) {
      return { module: 'keras.src.models.functional', className: 'Functional', registeredName: 'Functional' };
    }
    return { module: null, className: layer.constructor.name, registeredName: null };
  }

  /** True for a model built from `inputs`/`outputs`. */
  get isFunctional(): boolean {
    return this._qkGraph !== null;
  }

  /** The symbolic inputs of a functional model (empty otherwise). */
  get inputs(): SymbolicTensor[] {
    return this._qkGraph ? [...this._qkGraph.inputs] : [];
  }

  /** The symbolic outputs of a functional model (empty otherwise). */
  get outputs(): SymbolicTensor[] {
    return this._qkGraph ? [...this._qkGraph.outputs] : [];
  }

  /**
   * The direct sub-layers used for flattening and paths (Keras `_layers`).
   * @internal
   */
  _childLayers(): Layer[] {
    if (this._qkGraph) return [...this._qkGraph.layers];
    return this.trackedLayers().map(([, l]) => l);
  }

  /** Layer-valued properties (and arrays of layers) of a subclassed model, in property order. */
  protected trackedLayers(): Array<[string, Layer]> {
    const out: Array<[string, Layer]> = [];
    const seen = new Set<Layer>();
    for (const key of Object.keys(this)) {
      if (key.startsWith('_qk')) continue;
      const v = (this as unknown as Record<string, unknown>)[key];
      const add = (name: string, l: unknown) => {
        if (l instanceof Layer && l !== this && !seen.has(l)) {
          seen.add(l);
          out.push([name, l]);
        }
      };
      if (v instanceof Layer) add(key, v);
      else if (Array.isArray(v)) v.forEach((l, i) => add(`${key}/${i}`, l));
    }
    return out;
  }

  /**
   * The model's layers: a functional model's graph layers (InputLayers included, as Keras), a Sequential's
   * stack (without its InputLayer), or a subclassed model's tracked layers.
   * @example
   * ```ts
   * model.layers.map((l) => l.name); // ['input_layer', 'dense', 'dense_1']
   * ```
   */
  get layers(): Layer[] {
    return this._childLayers();
  }

  /**
   * The layer named `name` among {@link Model.layers} (a path such as `'decoder/attention/query'` is looked up
   * among all nested layers), or the layer at `index`.
   * @throws InvalidArgumentError when there is no such layer.
   * @example
   * ```ts
   * model.getLayer('dense_1');
   * model.getLayer(0);
   * ```
   */
  getLayer(nameOrIndex: string | number): Layer {
    const layers = this.layers;
    if (typeof nameOrIndex === 'number') {
      if (!Number.isInteger(nameOrIndex) || nameOrIndex < 0 || nameOrIndex >= layers.length) {
        throw new InvalidArgumentError(
          `Expected an index in [0, ${layers.length}) for index but received ${describe(nameOrIndex)}: Was asked to retrieve layer at index ${nameOrIndex} but model only has ${layers.length} layers.`,
        );
      }
      return layers[nameOrIndex];
    }
    if (typeof nameOrIndex !== 'string') {
      throw new InvalidArgumentError(`Expected a layer name or an index for nameOrIndex but received ${describe(nameOrIndex)}`);
    }
    const hit = layers.find((l) => l.name === nameOrIndex);
    if (hit) return hit;
    if (nameOrIndex.includes('/')) {
      this.refreshPaths();
      const byPath = this.flattenLayers({ includeSelf: false }).find((l) => l.path === nameOrIndex);
      if (byPath) return byPath;
    }
    throw new InvalidArgumentError(
      `Expected the name of one of the model's layers for name but received '${nameOrIndex}': No such layer: ${nameOrIndex}. Existing layers are: [${layers.map((l) => `'${l.name}'`).join(', ')}].`,
    );
  }

  /**
   * All layers, recursively (Keras `_flatten_layers`): the model itself (unless `includeSelf: false`), then
   * each layer followed by its own sub-layers (nested models' layers, composite layers' `savableChildren()`),
   * depth first, each layer once. (Keras visits a layer's sub-layers in reverse order; quantkit keeps the
   * declared order, which only changes the order of report entries.)
   * @example
   * ```ts
   * model.flattenLayers({ includeSelf: false }).map((l) => l.path);
   * // ['inner', 'inner/dense', 'inner/dense_1', 'head']
   * ```
   */
  flattenLayers(options: { includeSelf?: boolean; recursive?: boolean } = {}): Layer[] {
    const { includeSelf = true, recursive = true } = options;
    this.refreshPaths();
    const out: Layer[] = includeSelf ? [this] : [];
    const seen = new Set<Layer>([this]);
    const visit = (l: Layer): void => {
      if (seen.has(l)) return;
      seen.add(l);
      out.push(l);
      if (recursive) for (const c of childLayersOf(l)) visit(c);
    };
    for (const c of this._childLayers()) visit(c);
    return out;
  }

  /**
   * Recomputes the paths of every nested layer and variable from this model down (see the class notes).
   * @example
   * ```ts
   * model.refreshPaths();
   * model.getLayer('decoder').path; // 'decoder'
   * ```
   */
  refreshPaths(): void {
    const seen = new Set<Layer>();
    const assign = (layer: Layer, path: string, root: boolean): void => {
      if (seen.has(layer)) return;
      seen.add(layer);
      if (!root) {
        layer.path = path;
        if (layer instanceof Model) layer._qkNested = true;
      }
      if (!(layer instanceof Model)) for (const v of layer.variables) v.path = `${layer.path}/${v.name}`;
      const prefix = root && !this._qkNested ? '' : `${layer.path}/`;
      for (const c of childLayersOf(layer)) assign(c, `${prefix}${c.name}`, false);
    };
    assign(this, this.path, true);
  }

  /** All variables of all layers, each once. */
  override get variables(): Variable[] {
    return collectVariables(this);
  }

  /** Trainable variables of all layers. */
  override get trainableVariables(): Variable[] {
    const seen = new Set<Variable>();
    const out: Variable[] = [];
    for (const l of this.flattenLayers({ includeSelf: false })) {
      if (l instanceof Model) continue;
      for (const v of l.trainableVariables) if (!seen.has(v)) (seen.add(v), out.push(v));
    }
    return out;
  }

  /** Non-trainable variables of all layers. */
  override get nonTrainableVariables(): Variable[] {
    const trainable = new Set(this.trainableVariables);
    return this.variables.filter((v) => !trainable.has(v));
  }

  /**
   * Number of weight values (the product of each variable's shape, summed).
   * @example
   * ```ts
   * model.countParams(); // 385 for Dense(32) on 10 features then Dense(1)
   * ```
   */
  countParams(): number {
    return this.variables.reduce((a, v) => a + v.shape.reduce((x, y) => x * y, 1), 0);
  }

  /**
   * Builds the model for inputs of `inputShape` (a list of shapes for several inputs). Functional models are
   * built at construction. A subclassed model is built by running `call` once on zero tensors of that shape
   * (unknown dimensions become 1) and `dtype`; override `build` for anything else. Returns a Promise: await it.
   * @example
   * ```ts
   * await model.build([null, 10]);
   * ```
   */
  override async build(
    inputShape: readonly (number | null)[] | readonly (readonly (number | null)[])[],
    dtype: DType = 'float32',
  ): Promise<void> {
    if (this._qkGraph) {
      this.built = true;
      return;
    }
    const shapes = isShapeList(inputShape) ? inputShape : [inputShape as readonly (number | null)[]];
    const zeros = shapes.map((s) => new Tensor(dtype, s.map((d) => (d === null ? 1 : d))));
    await this.apply(isShapeList(inputShape) ? zeros : zeros[0]);
  }

  /**
   * Builds from a Keras `build_config` (`{ input_shape }`).
   * @example
   * ```ts
   * await model.buildFromConfig({ input_shape: [null, 10] });
   * ```
   */
  async buildFromConfig(config: Record<string, unknown> | null | undefined): Promise<void> {
    const shape = config?.input_shape;
    if (shape !== null && shape !== undefined && !this.built) {
      await this.build(shape as (number | null)[]);
    }
  }

  /**
   * Keras `get_build_config`: `{ input_shape }` (null for a functional model, as Keras writes it).
   * @example
   * ```ts
   * model.getBuildConfig(); // { input_shape: [2, 4] }
   * ```
   */
  getBuildConfig(): Record<string, unknown> | null {
    if (this._qkGraph) return { input_shape: null };
    return this.built ? { input_shape: this._qkBuildShape } : null;
  }

  /**
   * Runs the model on real tensors (one, or a list for several inputs), building it first if needed.
   * @example
   * ```ts
   * const y = await model.apply(x);
   * const [a, b] = await twoOutputModel.apply([x1, x2]);
   * ```
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  override async apply(inputs: Tensor | Tensor[], options: Record<string, unknown> = {}): Promise<any> {
    if (!this.gate.holds()) return this.gate.read('apply()', () => this.apply(inputs, options));
    if (this._disposed) throw this.disposedError('apply()');
    const list = Array.isArray(inputs) ? inputs : [inputs];
    if (list.length === 0 || !list.every((t) => t instanceof Tensor)) {
      throw new InvalidArgumentError(`Expected a Tensor or an array of Tensors for inputs of model '${this.name}' but received ${describe(inputs)}`);
    }
    this.refreshPaths();
    const firstCall = !this.built;
    const out = await this.call(inputs, options);
    if (firstCall && !this._qkGraph) {
      this._qkBuildShape = Array.isArray(inputs) ? inputs.map((t) => [...t.shape]) : [...inputs.shape];
    }
    this.built = true;
    this.refreshPaths();
    return out;
  }

  /**
   * The forward pass. A functional model runs its graph; a subclassed model must override this.
   * @example
   * ```ts
   * class M extends Model { dense = new Dense({ units: 2 }); override async call(x: Tensor) { return this.dense.apply(x); } }
   * ```
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async call(inputs: Tensor | Tensor[], options: Record<string, unknown> = {}): Promise<any> {
    if (!this._qkGraph) {
      throw new UnsupportedError(`Expected a functional model (inputs and outputs) or a subclass that overrides call() for model '${this.name}' but received neither`);
    }
    const list = Array.isArray(inputs) ? inputs : [inputs];
    if (this._qkSingleInput && Array.isArray(inputs) && inputs.length !== 1) {
      throw new InvalidArgumentError(`Expected one Tensor for inputs of model '${this.name}' but received ${inputs.length}`);
    }
    const outs = await this._qkGraph.run(list, options);
    return this._qkSingleOutput ? outs[0] : outs;
  }

  /**
   * Runs the model over the batch dimension in slices of `batchSize` rows and concatenates the results, so the
   * result equals one call on the whole batch. Several inputs are sliced together (they must have the same
   * number of rows); several outputs give an array.
   * @example
   * ```ts
   * const y = await model.predict(x, { batchSize: 128 });
   * ```
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async predict(inputs: Tensor | Tensor[], options: PredictOptions = {}): Promise<any> {
    if (!this.gate.holds()) return this.gate.read('predict()', () => this.predict(inputs, options));
    const batchSize = options.batchSize ?? 32;
    if (!Number.isSafeInteger(batchSize) || batchSize <= 0) {
      throw new InvalidArgumentError(`Expected a positive integer for batchSize but received ${describe(batchSize)}`);
    }
    const list = Array.isArray(inputs) ? inputs : [inputs];
    if (list.length === 0 || !list.every((t) => t instanceof Tensor && t.rank >= 1)) {
      throw new InvalidArgumentError(`Expected a Tensor of rank >= 1 or an array of them for inputs of predict() but received ${describe(inputs)}`);
    }
    const rows = list[0].shape[0];
    if (list.some((t) => t.shape[0] !== rows)) {
      throw new ShapeMismatchError(`Expected the same number of rows in every input for inputs of predict() but received [${list.map((t) => t.shape[0]).join(', ')}]`);
    }
    if (list.some((t) => t.rank === 1 && (t.dtype === 'int4' || t.dtype === 'uint4'))) {
      throw new InvalidArgumentError('Expected inputs that are not packed along the batch axis for inputs of predict() but received a rank-1 4-bit tensor');
    }
    const chunks: unknown[] = [];
    for (let start = 0; start < rows || (rows === 0 && start === 0); start += batchSize) {
      const end = Math.min(rows, start + batchSize);
      const slice = list.map((t) => sliceRows(t, start, end));
      chunks.push(await this.apply(Array.isArray(inputs) ? slice : slice[0], options.callOptions ?? {}));
      if (rows === 0) break;
    }
    if (chunks.length === 1) return chunks[0];
    if (Array.isArray(chunks[0])) {
      const n = (chunks[0] as Tensor[]).length;
      return Array.from({ length: n }, (_, k) => concatRows(chunks.map((c) => (c as Tensor[])[k])));
    }
    return concatRows(chunks as Tensor[]);
  }

  /** Output shape of `layer` in this model when known (functional graphs), else null. */
  protected outputShapeOf(layer: Layer): SymbolicShape | null {
    const graph = this._qkGraph;
    if (!graph) return null;
    const node = graph.nodesOf(layer)[0];
    return node ? node.outputs[0].shape : null;
  }

  /**
   * Saves the model as a Keras 3 `.keras` archive (config, dtype policies, quantized weights), atomically.
   * @example
   * ```ts
   * await model.quantize('int8');
   * await model.save('int8.keras');
   * const again = await loadModel('int8.keras');
   * ```
   */
  async save(file: string): Promise<void> {
    // required lazily: lib/io/keras imports this module
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const io = require('../io/keras') as typeof import('../io/keras');
    await this.gate.read('save()', () => io.saveModel(this, file));
  }

  /**
   * Saves only the weights as `.weights.h5` (the same tree as inside a `.keras` archive).
   * @example
   * ```ts
   * await model.saveWeights('model.weights.h5');
   * ```
   */
  async saveWeights(file: string): Promise<void> {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const io = require('../io/keras') as typeof import('../io/keras');
    await this.gate.read('saveWeights()', () => io.saveWeights(this, file));
  }

  /**
   * Loads weights saved by {@link Model.saveWeights} (or Keras's `save_weights`) into this model; quantized weights
   * need the same quantization first (e.g. `await model.quantize('int8')`).
   * @example
   * ```ts
   * await model.loadWeights('model.weights.h5');
   * ```
   */
  async loadWeights(file: string | Uint8Array, options: { maxBytes?: number } = {}): Promise<void> {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const io = require('../io/keras') as typeof import('../io/keras');
    await this.gate.write('loadWeights()', () => io.loadWeights(this, file, options));
  }

  /**
   * A table of the model's layers with their output shapes (when known) and parameter counts, then totals.
   * @example
   * ```ts
   * console.log(model.summary());
   * // Model: "mlp"
   * // ...
   * //  dense (Dense)                  (None, 32)                   352
   * ```
   */
  summary(options: SummaryOptions = {}): string {
    this.refreshPaths();
    const widths = [32, 28, 12];
    const rule = (c: string) => c.repeat(widths[0] + widths[1] + widths[2]);
    const lines = [`Model: "${this.name}"`, rule('_'), pad(' Layer (type)', widths[0]) + pad('Output Shape', widths[1]) + 'Param #', rule('=')];
    for (const l of this.layers) {
      const params = collectVariables(l).reduce((a, v) => a + v.shape.reduce((x, y) => x * y, 1), 0);
      lines.push(pad(` ${l.name} (${l.constructor.name})`, widths[0]) + pad(formatShape(this.outputShapeOf(l)), widths[1]) + String(params));
    }
    const total = this.countParams();
    const trainable = this.trainableVariables.reduce((a, v) => a + v.shape.reduce((x, y) => x * y, 1), 0);
    lines.push(rule('='), `Total params: ${total}`, `Trainable params: ${trainable}`, `Non-trainable params: ${total - trainable}`, rule('_'));
    const text = lines.join('\n');
    if (options.print) console.log(text);
    return text;
  }

  /**
   * The GPTQ structure of this model (`{ preBlockLayers, sequentialBlocks }`); the base has none. Override it
   * (or pass `config.quantizationLayerStructure`) to quantize with GPTQ.
   * @example
   * ```ts
   * class LM extends Model {
   *   override getQuantizationLayerStructure(mode: string) {
   *     return mode === 'gptq' ? { preBlockLayers: [this.embed], sequentialBlocks: this.blocks } : null;
   *   }
   * }
   * ```
   */
  getQuantizationLayerStructure(_mode: string): QuantizationLayerStructure | null {
    return null;
  }

  /**
   * Quantizes every supported layer (spec §1.6) and returns a {@link QuantizationReport} (also kept as
   * `model.quantizationReport`). Layers are walked with {@link Model.flattenLayers}: models and InputLayers are
   * passed over; composite layers (with `savableChildren()`) are not quantized themselves (their Dense,
   * EinsumDense and Embedding children are reached on their own); other layers are skipped as 'filtered out',
   * 'already quantized', 'no quantize support' or (GPTQ) 'outside quantization structure'. Any other error
   * propagates. One summary warning (`process.emitWarning`) lists up to 5 unsupported layers.
   *
   * The declared return type is `QuantizationReport & void` only because `Layer.quantize` returns
   * `Promise<void>`; the value is the report.
   *
   * @throws NotBuiltError when the model is not built; InvalidArgumentError for unknown options, bad filters,
   *   bad modes or configs, and a GPTQ call without a layer structure (before any layer changes).
   * @example
   * ```ts
   * const report = await model.quantize('int8', { filters: /^dense/, verbose: false });
   * await model.quantize({ config: new Int4QuantizationConfig({ blockSize: 64 }) });
   * ```
   */
  override async quantize(mode?: string | null | ModelQuantizeOptions, options: ModelQuantizeOptions = {}): Promise<QuantizationReport & void> {
    if (!this.gate.holds()) return this.gate.write('quantize()', () => this.quantize(mode, options));
    let opts: unknown = options;
    if (mode !== null && typeof mode === 'object') {
      opts = mode;
      mode = undefined;
    }
    if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) {
      throw new InvalidArgumentError(`Expected an options object for options of quantize() but received ${describe(opts)}`);
    }
    const { config: configArg, filters, typeCheck = true, verbose = true, onProgress, signal, trueSequential, seed, device, ...rest } =
      opts as ModelQuantizeOptions & Record<string, unknown>;
    const config = validateAndResolveConfig(mode ?? null, configArg ?? null);
    this.refreshPaths();
    this.checkQuantizeArgs(config.mode);
    const unknown = Object.keys(rest);
    if (unknown.length > 0) {
      const repr = `{${unknown.map((k) => `'${k}': ${_pyRepr(rest[k])}`).join(', ')}}`;
      throw new InvalidArgumentError(
        `Expected only config, filters, typeCheck, verbose (and for GPTQ onProgress, signal, trueSequential, seed, device) for options of quantize() but received ${unknown.map((k) => `'${k}'`).join(', ')}: Unrecognized keyword arguments passed to ${this.constructor.name}: ${repr}`,
      );
    }
    if (typeof typeCheck !== 'boolean') throw new InvalidArgumentError(`Expected a boolean for typeCheck but received ${describe(typeCheck)}`);
    if (typeof verbose !== 'boolean') throw new InvalidArgumentError(`Expected a boolean for verbose but received ${describe(verbose)}`);
    const filter = makeLayerFilter(filters);

    let allowed: Set<Layer> | null = null;
    let structure: { preBlockLayers: Layer[]; sequentialBlocks: Layer[] } | null = null;
    if (config.mode === 'gptq') {
      structure = this.resolveStructure(config as GPTQConfig);
      allowed = new Set();
      for (const block of structure.sequentialBlocks) {
        for (const l of [block, ...this.descendants(block)]) if (l instanceof Dense || l instanceof EinsumDense) allowed.add(l);
      }
    }

    const report = new QuantizationReport(config.mode);
    const targets: Layer[] = [];
    let changed = false;
    try {
      for (const layer of this.flattenLayers()) {
        if (layer instanceof Model || layer instanceof InputLayer) continue;
        if (allowed && !allowed.has(layer)) {
          report.addSkipped(layer.path, QuantizationReport.SKIP_OUTSIDE_STRUCTURE);
          continue;
        }
        if (filter && !filter(layer)) {
          report.addSkipped(layer.path, QuantizationReport.SKIP_FILTERED);
          continue;
        }
        if (layer.isQuantized) {
          report.addSkipped(layer.path, QuantizationReport.SKIP_ALREADY_QUANTIZED);
          continue;
        }
        if (layer.savableChildren().length > 0) {
          report.addSkipped(layer.path, QuantizationReport.SKIP_NO_SUPPORT);
          continue;
        }
        if (config.mode === 'gptq') {
          targets.push(layer);
          continue;
        }
        try {
          await layer.quantize(config.mode, { config, typeCheck });
        } catch (err) {
          if (isNoSupport(err)) {
            report.addSkipped(layer.path, QuantizationReport.SKIP_NO_SUPPORT);
            continue;
          }
          throw err;
        }
        changed = true;
        report.addQuantized(layer.path, layer.quantizationMode, layer.effectivePolicy.name);
      }
      if (config.mode === 'gptq' && structure) {
        await this.gptqQuantize(config as GPTQConfig, structure, filter, {
          report,
          targets,
          ...structure,
          run: { onProgress: onProgress ?? null, signal: signal ?? null, trueSequential, seed, device: device ?? this.gptqDefaultDevice() },
        });
        changed = report.numQuantized > 0;
      }
    } finally {
      this.quantizationReport = report;
    }
    const warning = report.summaryWarning();
    if (warning) process.emitWarning(warning, { type: 'UserWarning', code: 'QK_QUANTIZE_SKIPPED' });
    if (verbose) console.log(report.render());
    if (changed) {
      // Composite layers (attention, transformer blocks) record their quantized sub-layers' policies in a
      // DTypePolicyMap so that their config rebuilds the quantized sub-layers on load. Innermost first.
      const composites = this.flattenLayers({ includeSelf: false }).filter(
        (l) => typeof (l as { recordSubLayerPolicies?: unknown }).recordSubLayerPolicies === 'function',
      );
      for (const l of composites.reverse()) await (l as unknown as { recordSubLayerPolicies(): Promise<unknown> }).recordSubLayerPolicies();
      await this.postQuantize(config.mode);
    }
    return report as QuantizationReport & void;
  }

  /** Hook run after `quantize()` changed at least one layer (Keras `_post_quantize`); the base does nothing. */
  protected async postQuantize(_mode: string): Promise<void> {}

  /**
   * Frees the model's weights (every layer's variables and quantized/runtime state). From the moment it is
   * called, new calls (`predict`, `apply`, `quantize`, `save`, `generate`, …) reject with `QK_DISPOSED`, and so do
   * calls still waiting for a `quantize()` to finish; calls already running finish normally and the promise
   * resolves once they have, after which the memory is released. Idempotent. quantkit's weights live in
   * JavaScript ArrayBuffers (KV caches are per call), so the memory returns when the garbage collector runs;
   * layers shared with another model are disposed there too.
   * @example
   * ```ts
   * await model.dispose();
   * await model.predict(x); // rejects with QK_DISPOSED
   * ```
   */
  override async dispose(): Promise<void> {
    const gate = this.gate;
    if (gate.disposed) return;
    gate.markDisposed();
    await gate.write(
      'dispose()',
      async () => {
        const layers = this.flattenLayers({ includeSelf: false });
        super.dispose();
        for (const l of layers) l.dispose();
        this.releaseModelState();
      },
      { evenIfDisposed: true },
    );
  }

  /**
   * Moves the weights of every layer to `device` ('cpu', 'cuda' = 'cuda:0', 'cuda:<index>'); exclusive like
   * `quantize()` (waits for calls in flight). On a CUDA device the Dense and EinsumDense projections (and the logits projection of a ReversibleEmbedding) (float32, int8, int4, float8 and
   * GPTQ weights, in their storage format) run on the GPU with device-resident weights; a `LlamaCausalLM` decoding one
   * sequence also keeps its activations and KV cache on the device (lib/models/llama-device.ts); elsewhere
   * activations, embeddings, norms and attention stay on the host. `quantize()` on a model on a CUDA device re-uploads the
   * new weights, and GPTQ runs its Hessians and sweep on that device unless `device` says otherwise. On failure
   * (e.g. out of device memory) nothing moves.
   * @throws InvalidArgumentError for a bad device string; UnsupportedError (`QK_UNSUPPORTED`) when the device is
   *   not usable, saying why (built without CUDA, no driver, no device) and how to fix it
   * @example
   * ```ts
   * await model.to('cuda');
   * model.device;                           // 'cuda:0'
   * const out = await model.generate('Once upon a time', { maxNewTokens: 16 });
   * await model.to('cpu');                  // frees the device memory
   * ```
   */
  override async to(device: Device): Promise<this> {
    const index = parseDevice(device);
    if (index !== null) checkCudaDevice(index);
    await this.gate.write('to()', async () => {
      await placeLayers(this.flattenLayers({ includeSelf: false }), index);
      this._deviceIndex = index;
    });
    return this;
  }

  /** @internal A nested model moves with its layers (it holds no weights of its own). */
  override async _placeOwnWeights(index: number | null): Promise<boolean> {
    void index;
    return true;
  }

  /** GPTQ's device when quantize() names none: the model's CUDA device (not the emulated one), else the CPU. */
  private gptqDefaultDevice(): GptqDevice | undefined {
    return this._deviceIndex !== null && !cudaEmulated() ? `cuda:${this._deviceIndex}` : undefined;
  }

  /** Hook of {@link Model.dispose} for model-level state (e.g. a tokenizer); the base drops the quantization report. */
  protected releaseModelState(): void {
    this.quantizationReport = null;
  }

  private descendants(layer: Layer): Layer[] {
    const out: Layer[] = [];
    const seen = new Set<Layer>([layer]);
    const visit = (l: Layer): void => {
      for (const c of childLayersOf(l)) {
        if (seen.has(c)) continue;
        seen.add(c);
        out.push(c);
        visit(c);
      }
    };
    visit(layer);
    return out;
  }

  private resolveStructure(config: GPTQConfig): { preBlockLayers: Layer[]; sequentialBlocks: Layer[] } {
    const raw = (config.quantizationLayerStructure ?? this.getQuantizationLayerStructure('gptq')) as QuantizationLayerStructure | null;
    if (!raw || typeof raw !== 'object') {
      throw new InvalidArgumentError(
        "For mode='gptq', a valid quantization structure must be provided either via `config.quantization_layer_structure` or by overriding `model.get_quantization_layer_structure(mode)`. The structure should be a dictionary with keys 'pre_block_layers' and 'sequential_blocks'. " +
          '(In quantkit: `new GPTQConfig({ quantizationLayerStructure })` or `Model.getQuantizationLayerStructure(mode)`.)',
      );
    }
    const blocks = raw.sequentialBlocks ?? raw.sequential_blocks ?? [];
    const pre = raw.preBlockLayers ?? raw.pre_block_layers ?? [];
    if (!Array.isArray(blocks) || blocks.length === 0) {
      throw new InvalidArgumentError('No sequential blocks found in the provided structure to quantize.');
    }
    for (const [what, list] of [['sequentialBlocks', blocks], ['preBlockLayers', pre]] as const) {
      if (!Array.isArray(list) || !list.every((l) => l instanceof Layer)) {
        throw new InvalidArgumentError(`Expected an array of Layers for ${what} of the quantization structure but received ${describe(list)}`);
      }
    }
    return { preBlockLayers: [...pre], sequentialBlocks: [...blocks] };
  }

  /**
   * GPTQ calibration of `context.targets` block by block (Keras `gptq_quantize`, with real calibration; see
   * `lib/gptq/calibrate.ts`). Fills the report (quantized layers with their GPTQ details in `report.gptq`;
   * targets the blocks never call are skipped). On error or abort the model is left unchanged.
   * Called by {@link Model.quantize}; override to customize.
   * @example
   * ```ts
   * await model.quantize('gptq', { config: new GPTQConfig({ dataset, tokenizer, quantizationLayerStructure }) });
   * ```
   */
  async gptqQuantize(
    config: GPTQConfig,
    structure: { preBlockLayers: Layer[]; sequentialBlocks: Layer[] },
    _filters: ((layer: Layer) => boolean) | null,
    context?: GPTQContext,
  ): Promise<void> {
    const targets = context?.targets ?? [];
    const report = context?.report ?? null;
    const result = await runGptqCalibration(
      { config, preBlockLayers: structure.preBlockLayers, sequentialBlocks: structure.sequentialBlocks, targets, descendants: (l) => this.descendants(l) },
      context?.run ?? {},
    );
    if (report) {
      for (const e of result.entries) {
        const layer = targets.find((l) => l.path === e.path);
        report.addQuantized(e.path, 'gptq', layer ? layer.effectivePolicy.name : `gptq/${e.bits}/${e.groupSize}`);
        report.gptq.push(e);
      }
      for (const l of result.notCalled) report.addSkipped(l.path, QuantizationReport.SKIP_NOT_CALLED);
    }
  }

  /**
   * A text summary of the quantized leaf layers: per layer its path, dtype policy, and the dtype and bytes of
   * its largest stored weight ("weight store"); then totals compared with float32. Logical parameters count 2
   * values per stored element for int4 and GPTQ (as Keras, whatever the bit width). Printed when `verbose`
   * (default true).
   * @example
   * ```ts
   * model.quantizationSummary({ verbose: false });
   * // ... d1: int8_from_float32, weight store : int8 (32768 bytes) ... 4.00x smaller
   * ```
   */
  quantizationSummary(options: { verbose?: boolean } = {}): string {
    const verbose = options.verbose ?? true;
    const rows: string[] = [];
    let params = 0;
    let stored = 0;
    for (const l of this.flattenLayers({ includeSelf: false })) {
      if (l instanceof Model || l.quantizationMode === null || childLayersOf(l).length > 0) continue;
      const vars = l.variables;
      if (vars.length === 0) continue;
      const nonFloat = vars.filter((v) => v.dtype !== 'float32');
      const pool = nonFloat.length > 0 ? nonFloat : vars;
      const largest = pool.reduce((a, v) => (v.value.byteLength > a.value.byteLength ? v : a));
      const elements = largest.value.data.length;
      const mode = l.quantizationMode;
      const logical = mode === 'int4' || mode === 'gptq' ? elements * 2 : elements;
      params += logical;
      stored += largest.value.byteLength;
      rows.push(`  - ${l.path}: ${l.effectivePolicy.name}, weight store : ${largest.dtype} (${largest.value.byteLength} bytes)`);
    }
    const baseline = params * 4;
    const ratio = stored > 0 ? (baseline / stored).toFixed(2) : '0.00';
    const lines = [
      `Quantization summary for model '${this.name}'`,
      '='.repeat(65),
      ...(rows.length > 0 ? rows : ['  (none)']),
      '='.repeat(65),
      `Quantized layers : ${rows.length}`,
      `Quantized params : ${params}`,
      `Weight store     : ${stored} bytes (vs ${baseline} bytes float32, ${ratio}x smaller)`,
    ];
    const text = lines.join('\n');
    if (verbose) console.log(text);
    return text;
  }

  /**
   * Sub-layers saved under this model: `layers/<snake_case class>[_k]` for functional models (InputLayers
   * included), the attribute names of a subclassed model's tracked layers.
   * @example
   * ```ts
   * model.savableChildren().map(([k]) => k); // ['layers/input_layer', 'layers/dense', 'layers/dense_1']
   * ```
   */
  override savableChildren(): Array<[string, Layer]> {
    if (this._qkGraph) return Model.numberByClass(this._qkGraph.layers);
    // subclassed models: Keras saves every tracked layer under layers/<snake_case class>[_k], in tracking order
    return Model.numberByClass(this.trackedLayers().map(([, l]) => l));
  }

  /** `layers/dense`, `layers/dense_1`, … numbered per class name in order (Keras saving). @internal */
  static numberByClass(layers: readonly Layer[]): Array<[string, Layer]> {
    const used = new Map<string, number>();
    return layers.map((l) => {
      // A functional model is class `Functional` in Keras, hence `layers/functional`.
      const base = l instanceof Model && l.constructor === Model && l._qkGraph ? 'functional' : snakeCase(l.constructor.name);
      const n = used.get(base);
      used.set(base, n === undefined ? 0 : n + 1);
      return [`layers/${n === undefined ? base : `${base}_${n + 1}`}`, l] as [string, Layer];
    });
  }

  /**
   * The Keras config: for a functional model `{ name, trainable, layers: [...with inbound_nodes], input_layers,
   * output_layers }`; for a subclassed model the base layer config.
   * @example
   * ```ts
   * JSON.stringify(model.getConfig());
   * ```
   */
  override getConfig(): Record<string, unknown> {
    if (this._qkGraph) return this._qkGraph.getConfig(this.name, this.trainable, this._qkSingleInput, this._qkSingleOutput);
    return { name: this.name, trainable: this.trainable, dtype: serializeDTypePolicy(this._policy) };
  }

  /**
   * Rebuilds a functional model from its config (the `config` part, with `layers`, `input_layers`,
   * `output_layers`), or any model or layer from a full Keras dict (`{ class_name, config, ... }`). Layers are
   * found in `customObjects`, then the layer registry (`registerLayer`).
   * @throws InvalidArgumentError naming an unknown class.
   * @example
   * ```ts
   * const model = await Model.fromConfig(JSON.parse(text).config);
   * ```
   */
  static async fromConfig(config: Record<string, unknown>, options: FromConfigOptions = {}): Promise<Model> {
    if (config === null || typeof config !== 'object' || Array.isArray(config)) {
      throw new InvalidArgumentError(`Expected a plain object for config but received ${describe(config)}`);
    }
    if (typeof config.class_name === 'string' && 'config' in config) {
      const layer = await deserializeLayer(config, options);
      if (!(layer instanceof Model)) {
        throw new InvalidArgumentError(`Expected the config of a model for config but received one of a ${layer.constructor.name}`);
      }
      return layer;
    }
    const { inputs, outputs, singleInput, singleOutput } = await rebuildFunctional(config, options);
    return new Model({
      inputs: singleInput ? inputs[0] : inputs,
      outputs: singleOutput ? outputs[0] : outputs,
      name: typeof config.name === 'string' ? config.name : undefined,
      trainable: typeof config.trainable === 'boolean' ? config.trainable : undefined,
    });
  }

  override toString(): string {
    return `<${this.constructor.name} name=${this.name}, built=${this.built}>`;
  }
}

_registerModelDeserializer('Functional', (c, o) => Model.fromConfig(c, o));
_registerModelDeserializer('Model', (c, o) => Model.fromConfig(c, o));
