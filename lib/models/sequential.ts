/**
 * `Sequential`: a plain stack of single-input, single-output layers. It builds lazily — from its InputLayer
 * (`Input()` or `new InputLayer(...)` as the first entry), from `await model.build(shape)`, or from the first
 * call — by connecting the layers symbolically into a functional graph.
 * @packageDocumentation
 */
import { DType } from '../dtype';
import { serializeDTypePolicy } from '../dtype-policies';
import { InvalidArgumentError } from '../errors';
import { Layer, LayerOptions } from '../layers/layer';
import { Tensor, describe } from '../tensor';
import { _registerModelDeserializer, applySymbolic, deserializeLayer, FromConfigOptions, FunctionalGraph, KerasClassInfo, serializeLayer } from './graph';
import { checkShapeAgainst, checkSymbolicShape, InputLayer, SymbolicShape, SymbolicTensor } from './input';
import { Model } from './model';

/** Options of {@link Sequential}. */
export interface SequentialOptions extends LayerOptions {
  /** The layers, in order; the first may be an InputLayer or an `Input()` tensor. */
  layers?: Array<Layer | SymbolicTensor>;
}

/**
 * A linear stack of layers.
 *
 * @example
 * ```ts
 * import { Sequential, Dense, Input } from 'quantkit';
 * const model = new Sequential({ layers: [Input({ shape: [10] }), new Dense({ units: 32, activation: 'relu' }), new Dense({ units: 1 })] });
 * // or, as in Keras: new Sequential([Input({ shape: [10] }), new Dense({ units: 32 })], { name: 'mlp' })
 * await model.build();                     // or just call it: the first call builds
 * const y = await model.apply(x);
 * await model.quantize('int8', { verbose: false });
 * model.layers[0].dtypePolicy.name;        // 'int8_from_float32'
 * ```
 */
export class Sequential extends Model {
  private _qkInput: InputLayer | null = null;
  private _qkStack: Layer[] = [];
  private _qkSeqGraph: FunctionalGraph | null = null;

  /**
   * @param layersOrOptions the options, or the layers directly as in Keras (`keras.Sequential([...])`).
   * @param options more options when the first argument is the layer array (its `layers` must be absent).
   */
  constructor(layersOrOptions: SequentialOptions | Array<Layer | SymbolicTensor> = {}, options: Omit<SequentialOptions, 'layers'> = {}) {
    if (Array.isArray(layersOrOptions) && options !== null && typeof options === 'object' && 'layers' in options && (options as SequentialOptions).layers !== undefined) {
      throw new InvalidArgumentError('Expected the layers once but received them both as the first argument and as options.layers; pass one of them');
    }
    const opts: SequentialOptions = Array.isArray(layersOrOptions) ? { ...(options ?? {}), layers: layersOrOptions } : (layersOrOptions ?? {});
    if (typeof opts !== 'object') {
      throw new InvalidArgumentError(`Expected an array of layers or an options object for layersOrOptions but received ${describe(layersOrOptions)}`);
    }
    super({ name: opts.name, dtype: opts.dtype, trainable: opts.trainable });
    const layers = opts.layers ?? [];
    if (!Array.isArray(layers)) {
      throw new InvalidArgumentError(`Expected an array of layers for layers but received ${describe(layers)}`);
    }
    for (const l of layers) this.add(l);
  }

  /** Keras class info: `keras.Sequential`. @internal */
  static override kerasClassInfo(layer: Layer): KerasClassInfo {
    return layer.constructor === Sequential
      ? { module: 'keras', className: 'Sequential', registeredName: null }
      : { module: null, className: layer.constructor.name, registeredName: null };
  }

  /**
   * Appends a layer. An InputLayer (or an `Input()` tensor) is accepted only first. Adding a layer to a built
   * model rebuilds the graph at the next build or call.
   * @throws InvalidArgumentError for non-layers, a misplaced input, or a duplicate name.
   * @example
   * ```ts
   * model.add(new Dense({ units: 4 }));
   * ```
   */
  add(layer: Layer | SymbolicTensor): void {
    if (layer instanceof SymbolicTensor) {
      if (!(layer.layer instanceof InputLayer)) {
        throw new InvalidArgumentError(`Expected a Layer or a tensor made by Input() for layer of Sequential '${this.name}' but received ${layer}`);
      }
      layer = layer.layer;
    }
    if (!(layer instanceof Layer)) {
      throw new InvalidArgumentError(`Expected a Layer for layer of Sequential '${this.name}' but received ${describe(layer)}`);
    }
    if (layer instanceof InputLayer) {
      if (this._qkInput || this._qkStack.length > 0) {
        throw new InvalidArgumentError(`Expected an InputLayer only as the first layer of Sequential '${this.name}' but received '${layer.name}' after other layers`);
      }
      this._qkInput = layer;
      this.built = false;
      return;
    }
    if (layer === this) throw new InvalidArgumentError(`Expected another layer for layer of Sequential '${this.name}' but received the model itself`);
    if (this._qkStack.some((l) => l.name === layer.name)) {
      throw new InvalidArgumentError(
        `Expected a unique layer name for layer of Sequential '${this.name}' but received '${layer.name}': All layers added to a Sequential model should have unique names.`,
      );
    }
    this._qkStack.push(layer);
    this._qkSeqGraph = null;
    if (!layer.built) this.built = false;
  }

  /**
   * Removes and returns the last layer.
   * @example
   * ```ts
   * model.pop();
   * ```
   */
  pop(): Layer {
    const l = this._qkStack.pop();
    if (!l) throw new InvalidArgumentError(`Expected a non-empty Sequential for pop() but '${this.name}' has no layers`);
    this._qkSeqGraph = null;
    return l;
  }

  override get isFunctional(): boolean {
    return false;
  }

  /** The stacked layers (without the InputLayer). */
  override get layers(): Layer[] {
    return [...this._qkStack];
  }

  /** The InputLayer, once known. */
  get inputLayer(): InputLayer | null {
    return this._qkInput;
  }

  override get inputs(): SymbolicTensor[] {
    return this._qkInput ? [this._qkInput.output] : [];
  }

  override get outputs(): SymbolicTensor[] {
    return this._qkSeqGraph ? [...this._qkSeqGraph.outputs] : [];
  }

  /** @internal */
  override _childLayers(): Layer[] {
    return this._qkInput ? [this._qkInput, ...this._qkStack] : [...this._qkStack];
  }

  /**
   * Builds every layer for inputs of `inputShape` (including the batch dimension, which may be null) by
   * connecting the stack symbolically. Without an argument the InputLayer's shape is used.
   * @example
   * ```ts
   * await new Sequential({ layers: [new Dense({ units: 2 })] }).build([null, 3]);
   * ```
   */
  override async build(inputShape?: readonly (number | null)[] | readonly (readonly (number | null)[])[], dtype: DType = 'float32'): Promise<void> {
    if (inputShape !== undefined && inputShape !== null) {
      const shape = checkSymbolicShape(inputShape, 'inputShape');
      if (this._qkInput) {
        const mine = this._qkInput.batchShape;
        const ok = mine.length === shape.length && mine.every((d, i) => d === null || shape[i] === null || d === shape[i]);
        if (!ok) {
          throw new InvalidArgumentError(
            `Expected an input shape compatible with [${mine.map((d) => (d === null ? 'null' : d)).join(', ')}] for inputShape of Sequential '${this.name}' but received [${shape.join(', ')}]`,
          );
        }
      } else {
        this._qkInput = new InputLayer({ batchShape: shape, dtype });
      }
    }
    const input = this._qkInput;
    if (!input) {
      throw new InvalidArgumentError(`Expected an input shape (or an InputLayer first) for build() of Sequential '${this.name}' but received none`);
    }
    let t = input.output;
    for (const l of this._qkStack) t = await applySymbolic(l, t);
    this._qkSeqGraph = new FunctionalGraph([input.output], [t], this.name);
    this.built = true;
    this.refreshPaths();
  }

  /** Runs the stack; the first call builds the model from the input's shape (batch dimension unknown). */
  override async call(inputs: Tensor | Tensor[], options: Record<string, unknown> = {}): Promise<Tensor> {
    const x = Array.isArray(inputs) && inputs.length === 1 ? inputs[0] : inputs;
    if (!(x instanceof Tensor)) {
      throw new InvalidArgumentError(`Expected one Tensor for inputs of Sequential '${this.name}' but received ${describe(inputs)}`);
    }
    if (!this._qkSeqGraph) {
      if (this._qkInput) checkShapeAgainst(x.shape, this._qkInput.batchShape, `inputs of Sequential '${this.name}'`);
      await this.build(this._qkInput ? undefined : [null, ...x.shape.slice(1)], x.dtype);
    }
    const [y] = await (this._qkSeqGraph as FunctionalGraph).run([x], options);
    return y;
  }

  override async apply(inputs: Tensor | Tensor[], options: Record<string, unknown> = {}): Promise<Tensor> {
    return super.apply(inputs, options) as Promise<Tensor>;
  }

  override async predict(inputs: Tensor | Tensor[], options: { batchSize?: number; callOptions?: Record<string, unknown> } = {}): Promise<Tensor> {
    return super.predict(inputs, options) as Promise<Tensor>;
  }

  protected override outputShapeOf(layer: Layer): SymbolicShape | null {
    const node = this._qkSeqGraph?.nodesOf(layer)[0];
    return node ? node.outputs[0].shape : null;
  }

  override getBuildConfig(): Record<string, unknown> | null {
    return this._qkInput && this.built ? { input_shape: [...this._qkInput.batchShape] } : null;
  }

  /** Keras saves a Sequential's stack (without the InputLayer) as `layers/<snake_case class>[_k]`. */
  override savableChildren(): Array<[string, Layer]> {
    return Model.numberByClass(this._qkStack);
  }

  /**
   * Keras config: `{ name, trainable, dtype, layers: [InputLayer?, ...], build_input_shape? }`.
   * @example
   * ```ts
   * model.getConfig().layers[1].class_name; // 'Dense'
   * ```
   */
  override getConfig(): Record<string, unknown> {
    const layers: Record<string, unknown>[] = [];
    if (this._qkInput) layers.push(serializeLayer(this._qkInput));
    for (const l of this._qkStack) layers.push(serializeLayer(l, this._qkSeqGraph?.nodesOf(l)[0]));
    const config: Record<string, unknown> = {
      name: this.name,
      trainable: this.trainable,
      dtype: serializeDTypePolicy(this._policy),
      layers,
    };
    if (this._qkInput && this.built) config.build_input_shape = [...this._qkInput.batchShape];
    return config;
  }

  /**
   * Rebuilds a Sequential from its Keras config (built when it has an InputLayer or `build_input_shape`).
   * @example
   * ```ts
   * const model = await Sequential.fromConfig(JSON.parse(text).config);
   * ```
   */
  static override async fromConfig(config: Record<string, unknown>, options: FromConfigOptions = {}): Promise<Sequential> {
    if (config === null || typeof config !== 'object' || Array.isArray(config)) {
      throw new InvalidArgumentError(`Expected a plain object for config but received ${describe(config)}`);
    }
    if (typeof config.class_name === 'string' && 'config' in config) {
      const m = await deserializeLayer(config, options);
      if (!(m instanceof Sequential)) throw new InvalidArgumentError(`Expected the config of a Sequential for config but received one of a ${m.constructor.name}`);
      return m;
    }
    const entries = config.layers;
    if (!Array.isArray(entries)) {
      throw new InvalidArgumentError(`Expected an array for layers of the Sequential config but received ${describe(entries)}`);
    }
    const model = new Sequential({
      name: typeof config.name === 'string' ? config.name : undefined,
      trainable: typeof config.trainable === 'boolean' ? config.trainable : undefined,
    });
    for (const e of entries) model.add(await deserializeLayer(e, options));
    const shape = config.build_input_shape;
    if (model.inputLayer) await model.build();
    else if (Array.isArray(shape)) await model.build(shape as (number | null)[]);
    return model;
  }
}

_registerModelDeserializer('Sequential', (c, o) => Sequential.fromConfig(c, o));
