/**
 * Symbolic tensors for the functional API: `Input()` makes an {@link InputLayer} and returns its
 * {@link SymbolicTensor}; connecting layers to symbolic tensors (see `applySymbolic` in `graph.ts`) records
 * {@link Node}s instead of computing, and a functional `Model` runs the recorded graph on real tensors.
 * @packageDocumentation
 */
import { DType, dtypeInfo } from '../dtype';
import { InvalidArgumentError, ShapeMismatchError } from '../errors';
import { Layer } from '../layers/layer';
import { registerLayer } from '../layers/registry';
import { Tensor, describe } from '../tensor';

/** A shape whose dimensions may be unknown (`null`), e.g. `[null, 10]` for any batch size. */
export type SymbolicShape = readonly (number | null)[];

/** How a node passed its input tensors to the layer (kept so configs round-trip as Keras wrote them). */
export type NodeArgsForm = 'single' | 'list' | 'positional';

const inboundNodes = new WeakMap<Layer, Node[]>();

/**
 * The nodes recorded for `layer` so far (one per symbolic call; a shared layer has several), oldest first.
 * @example
 * ```ts
 * layerNodes(shared).length; // 2 after two symbolic calls
 * ```
 */
export function layerNodes(layer: Layer): readonly Node[] {
  return inboundNodes.get(layer) ?? [];
}

/**
 * One symbolic call of a layer: its input tensors and the output tensor it produced. A layer called on
 * symbolic tensors several times (a shared layer) has one node per call.
 *
 * @example
 * ```ts
 * const y = await applySymbolic(dense, x);
 * y.node.layer === dense; // true
 * y.node.inputs[0] === x;  // true
 * ```
 */
export class Node {
  /** The called layer. */
  readonly layer: Layer;
  /** The symbolic inputs, in call order (empty for an InputLayer). */
  readonly inputs: readonly SymbolicTensor[];
  /** The outputs (quantkit layers return one tensor). */
  readonly outputs: SymbolicTensor[] = [];
  /** How the inputs were passed: one tensor, one list of tensors, or several positional tensors. */
  readonly argsForm: NodeArgsForm;
  /** Non-tensor call options (Keras `kwargs`, e.g. `{ training: false }`). */
  readonly kwargs: Readonly<Record<string, unknown>>;
  /** Index of this node among the layer's nodes. */
  readonly index: number;

  /**
   * @param layer - the called layer
   * @param inputs - its symbolic inputs
   * @param argsForm - how the inputs were passed
   * @param kwargs - non-tensor options
   */
  constructor(layer: Layer, inputs: readonly SymbolicTensor[], argsForm: NodeArgsForm, kwargs: Record<string, unknown> = {}) {
    this.layer = layer;
    this.inputs = Object.freeze([...inputs]);
    this.argsForm = argsForm;
    this.kwargs = Object.freeze({ ...kwargs });
    const list = inboundNodes.get(layer) ?? [];
    this.index = list.length;
    list.push(this);
    inboundNodes.set(layer, list);
  }

  /** The input shapes, as `build()` receives them (one shape, or a list for multi-input layers). */
  get inputShapes(): SymbolicShape | SymbolicShape[] {
    return this.argsForm === 'single' ? this.inputs[0].shape : this.inputs.map((t) => t.shape);
  }
}

/**
 * A placeholder for a tensor in a functional graph: a shape with possibly unknown dimensions, a dtype, and
 * the node that produces it. It holds no data; no maths runs on it.
 *
 * @example
 * ```ts
 * const x = Input({ shape: [10] });
 * x.shape; // [null, 10]
 * x.dtype; // 'float32'
 * ```
 */
export class SymbolicTensor {
  /** Shape with `null` for unknown dimensions (the batch, usually). */
  readonly shape: SymbolicShape;
  /** Element type. */
  readonly dtype: DType;
  /** The node that produced this tensor. */
  readonly node: Node;
  /** Position among the node's outputs. */
  readonly index: number;

  /**
   * @param shape - dimensions (`null` = unknown)
   * @param dtype - element type
   * @param node - the producing node
   * @param index - position among the node's outputs
   */
  constructor(shape: SymbolicShape, dtype: DType, node: Node, index = 0) {
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.node = node;
    this.index = index;
    node.outputs[index] = this;
  }

  /** The layer that produced this tensor. */
  get layer(): Layer {
    return this.node.layer;
  }

  /** Rank. */
  get rank(): number {
    return this.shape.length;
  }

  /** `<SymbolicTensor shape=[null, 10] dtype=float32 from=dense>`. */
  toString(): string {
    return `<SymbolicTensor shape=[${this.shape.map((d) => (d === null ? 'null' : d)).join(', ')}] dtype=${this.dtype} from=${this.layer.name}>`;
  }
}

/**
 * Checks that `v` is a symbolic shape (an array of positive integers or nulls).
 * @example
 * ```ts
 * checkSymbolicShape([null, 4], 'shape'); // [null, 4]
 * ```
 */
export function checkSymbolicShape(v: unknown, name: string): SymbolicShape {
  if (!Array.isArray(v) || !v.every((d) => d === null || (Number.isSafeInteger(d) && (d as number) >= 0))) {
    throw new InvalidArgumentError(`Expected an array of non-negative integers or nulls for ${name} but received ${describe(v)}`);
  }
  return Object.freeze([...(v as (number | null)[])]);
}

/** Options of {@link InputLayer}. */
export interface InputLayerOptions {
  /** Shape without the batch dimension, e.g. `[10]` (dimensions may be null). */
  shape?: readonly (number | null)[];
  /** Full shape including the batch dimension (instead of `shape` and `batchSize`). */
  batchShape?: readonly (number | null)[];
  /** A fixed batch size (default: unknown). */
  batchSize?: number | null;
  /** Element type of the input (default `'float32'`). */
  dtype?: DType;
  /** Layer name (default `input_layer`, uniquified). */
  name?: string;
}

/**
 * The layer behind {@link Input}: it has no weights and passes its input through (after checking its rank and
 * fixed dimensions). Its Keras config is `{ batch_shape, dtype, sparse, ragged, name, optional }`.
 *
 * @example
 * ```ts
 * const layer = new InputLayer({ shape: [16], dtype: 'int32', name: 'tokens' });
 * layer.batchShape; // [null, 16]
 * ```
 */
export class InputLayer extends Layer {
  /** Shape including the batch dimension. */
  readonly batchShape: SymbolicShape;
  /** Element type of the input. */
  readonly inputDtype: DType;
  /** The symbolic tensor this layer outputs. */
  readonly output: SymbolicTensor;

  constructor(options: InputLayerOptions = {}) {
    super({ name: options.name });
    if (options.batchShape !== undefined && options.batchShape !== null) {
      if (options.shape !== undefined || (options.batchSize !== undefined && options.batchSize !== null)) {
        throw new InvalidArgumentError(
          `Expected either batchShape or shape (with an optional batchSize) for options of InputLayer '${this.name}' but received both`,
        );
      }
      this.batchShape = checkSymbolicShape(options.batchShape, 'batchShape');
    } else {
      if (options.shape === undefined) {
        throw new InvalidArgumentError(`Expected an array for shape of InputLayer '${this.name}' but received undefined`);
      }
      const shape = checkSymbolicShape(options.shape, 'shape');
      const b = options.batchSize ?? null;
      if (b !== null && !(Number.isSafeInteger(b) && b > 0)) {
        throw new InvalidArgumentError(`Expected a positive integer or null for batchSize but received ${describe(b)}`);
      }
      this.batchShape = Object.freeze([b, ...shape]);
    }
    const dtype = options.dtype ?? 'float32';
    dtypeInfo(dtype, 'dtype');
    this.inputDtype = dtype;
    this.built = true;
    const node = new Node(this, [], 'single');
    this.output = new SymbolicTensor(this.batchShape, dtype, node, 0);
  }

  /** Nothing to build. */
  build(): void {
    this.built = true;
  }

  /** Returns `inputs` after checking the rank and the fixed dimensions. */
  async call(inputs: Tensor | Tensor[]): Promise<Tensor> {
    if (Array.isArray(inputs) || !(inputs instanceof Tensor)) {
      throw new InvalidArgumentError(`Expected one Tensor for inputs of InputLayer '${this.name}' but received ${describe(inputs)}`);
    }
    checkShapeAgainst(inputs.shape, this.batchShape, `inputs of InputLayer '${this.name}'`);
    return inputs;
  }

  override getConfig(): Record<string, unknown> {
    return { batch_shape: [...this.batchShape], dtype: this.inputDtype, sparse: false, ragged: false, name: this.name, optional: false };
  }

  /**
   * Rebuilds an input layer from its Keras config (`batch_shape`, or the older `batch_input_shape`).
   * @example
   * ```ts
   * InputLayer.fromConfig({ batch_shape: [null, 10], dtype: 'float32', name: 'x' });
   * ```
   */
  static fromConfig(config: Record<string, unknown>): InputLayer {
    const batchShape = (config.batch_shape ?? config.batch_input_shape) as (number | null)[] | undefined;
    const dtype = typeof config.dtype === 'string' ? (config.dtype as DType) : 'float32';
    return new InputLayer({ batchShape, dtype, name: typeof config.name === 'string' ? config.name : undefined });
  }
}
registerLayer(InputLayer);

/**
 * Throws a {@link ShapeMismatchError} unless `shape` has the rank of `expected` and equals it on every known
 * dimension.
 * @example
 * ```ts
 * checkShapeAgainst([4, 10], [null, 10], 'x'); // ok
 * ```
 */
export function checkShapeAgainst(shape: readonly number[], expected: SymbolicShape, name: string): void {
  const ok = shape.length === expected.length && expected.every((d, i) => d === null || d === shape[i]);
  if (!ok) {
    throw new ShapeMismatchError(
      `Expected shape [${expected.map((d) => (d === null ? 'null' : d)).join(', ')}] for ${name} but received [${shape.join(', ')}]`,
    );
  }
}

/** Options of {@link Input}. */
export interface InputOptions extends InputLayerOptions {
  /** Shape without the batch dimension (required unless `batchShape` is given). */
  shape?: readonly (number | null)[];
}

/**
 * Starts a functional graph: a symbolic tensor of shape `[batchSize ?? null, ...shape]`.
 *
 * @example
 * ```ts
 * import { Input, Model, Dense, applySymbolic } from 'quantkit';
 * const x = Input({ shape: [10], name: 'features' });
 * const h = await applySymbolic(new Dense({ units: 32, activation: 'relu' }), x);
 * const y = await applySymbolic(new Dense({ units: 1 }), h);
 * const model = new Model({ inputs: x, outputs: y });
 * ```
 */
export function Input(options: InputOptions): SymbolicTensor {
  if (options === null || typeof options !== 'object') {
    throw new InvalidArgumentError(`Expected an options object ({ shape, batchSize?, dtype?, name? }) for Input but received ${describe(options)}`);
  }
  return new InputLayer(options).output;
}
