/**
 * The functional graph: connecting layers to symbolic tensors ({@link applySymbolic}), the recorded graph in
 * topological order ({@link FunctionalGraph}), running it on real tensors, and its Keras config (`layers` with
 * `inbound_nodes`, `input_layers`, `output_layers`).
 *
 * Output shapes are inferred without symbolic maths: the layer is built from the symbolic input shapes
 * (unknown dimensions stay `null`), and then, unless the layer has a `computeOutputShape(inputShape)` method,
 * it is run once on zero tensors in which every unknown dimension is 1 (and once more with 2 when there are
 * unknown dimensions; output dimensions that differ between the two runs are unknown).
 * @packageDocumentation
 */
import { DType } from '../dtype';
import { InvalidArgumentError, UnsupportedError } from '../errors';
import { Layer } from '../layers/layer';
import { getLayerClass } from '../layers/registry';
import { _serializeValue } from '../quantizers/registry';
import { Tensor, describe } from '../tensor';
import { checkShapeAgainst, InputLayer, layerNodes, Node, NodeArgsForm, SymbolicShape, SymbolicTensor } from './input';

/** Options of {@link applySymbolic}. */
export interface ApplySymbolicOptions {
  /** Non-tensor call options recorded on the node and passed to every call (Keras `kwargs`). */
  kwargs?: Record<string, unknown>;
  /**
   * Pass several inputs as separate positional arguments (Keras `layer(a, b)`, e.g. attention's query and
   * value) rather than as one list (`layer([a, b])`, e.g. `Add`). quantkit layers receive a list either way;
   * the difference only shows in the saved config. Default false.
   */
  positional?: boolean;
}

type ShapeArg = SymbolicShape | SymbolicShape[];

function concreteShape(shape: SymbolicShape, unknown: number): number[] {
  return shape.map((d) => (d === null ? unknown : d));
}

function hasUnknown(inputs: readonly SymbolicTensor[]): boolean {
  return inputs.some((t) => t.shape.some((d) => d === null));
}

async function probe(layer: Layer, inputs: readonly SymbolicTensor[], form: NodeArgsForm, kwargs: Record<string, unknown>, unknown: number): Promise<Tensor> {
  const values = inputs.map((t) => new Tensor(t.dtype, concreteShape(t.shape, unknown)));
  const out = (await layer.apply(form === 'single' ? values[0] : values, kwargs)) as unknown;
  if (!(out instanceof Tensor)) {
    throw new InvalidArgumentError(
      `Expected one Tensor from layer '${layer.name}' in a functional graph but received ${describe(out)} (layers with several outputs cannot be connected symbolically)`,
    );
  }
  return out;
}

/**
 * Connects `layer` to symbolic inputs: builds the layer if needed, infers the output shape (see the module
 * notes) and records a {@link Node}. No real data flows; the result is a new {@link SymbolicTensor}.
 * Calling it twice with the same layer shares the layer (and its weights) between both places.
 *
 * @throws InvalidArgumentError when `inputs` are not symbolic tensors.
 * @example
 * ```ts
 * const x = Input({ shape: [10] });
 * const dense = new Dense({ units: 4 });
 * const y = await applySymbolic(dense, x);          // y.shape: [null, 4]
 * const z = await applySymbolic(dense, y2);         // shared: the same weights, a second node
 * const s = await applySymbolic(add, [a, b]);       // a multi-input layer gets a list
 * ```
 */
export async function applySymbolic(
  layer: Layer,
  inputs: SymbolicTensor | readonly SymbolicTensor[],
  options: ApplySymbolicOptions = {},
): Promise<SymbolicTensor> {
  if (!(layer instanceof Layer)) {
    throw new InvalidArgumentError(`Expected a Layer for layer but received ${describe(layer)}`);
  }
  const list = Array.isArray(inputs) ? [...(inputs as SymbolicTensor[])] : [inputs as SymbolicTensor];
  if (list.length === 0 || !list.every((t) => t instanceof SymbolicTensor)) {
    throw new InvalidArgumentError(
      `Expected a SymbolicTensor or an array of SymbolicTensors (from Input() or applySymbolic()) for inputs of layer '${layer.name}' but received ${describe(inputs)}`,
    );
  }
  const form: NodeArgsForm = Array.isArray(inputs) ? (options.positional ? 'positional' : 'list') : 'single';
  const kwargs = { ...(options.kwargs ?? {}) };
  const shapes: ShapeArg = form === 'single' ? list[0].shape : list.map((t) => t.shape);
  if (!layer.built) {
    // Model.build is async; awaiting a plain layer's void build is harmless.
    await (layer.build as (s: ShapeArg) => void | Promise<void>).call(layer, shapes);
  }
  let shape: (number | null)[];
  let dtype: DType;
  const compute = (layer as unknown as { computeOutputShape?: (s: ShapeArg) => SymbolicShape }).computeOutputShape;
  if (typeof compute === 'function') {
    shape = [...compute.call(layer, shapes)];
    const computeDtype = (layer as unknown as { computeOutputDtype?: (d: DType[]) => DType }).computeOutputDtype;
    dtype = typeof computeDtype === 'function' ? computeDtype.call(layer, list.map((t) => t.dtype)) : 'float32';
  } else {
    const a = await probe(layer, list, form, kwargs, 1);
    shape = [...a.shape];
    dtype = a.dtype;
    if (hasUnknown(list)) {
      const b = await probe(layer, list, form, kwargs, 2);
      if (b.shape.length !== a.shape.length) {
        throw new InvalidArgumentError(`Expected an output rank independent of unknown input dimensions for layer '${layer.name}' but received ranks ${a.shape.length} and ${b.shape.length}`);
      }
      shape = a.shape.map((d, i) => (d === b.shape[i] ? d : null));
    }
  }
  const node = new Node(layer, list, form, kwargs);
  return new SymbolicTensor(shape, dtype, node, 0);
}

/**
 * A layer graph between symbolic inputs and outputs, in topological order, runnable on real tensors.
 *
 * @example
 * ```ts
 * const graph = new FunctionalGraph([x], [y], 'model');
 * const [out] = await graph.run([tensor]);
 * ```
 */
export class FunctionalGraph {
  /** The input tensors (outputs of InputLayers). */
  readonly inputs: readonly SymbolicTensor[];
  /** The output tensors. */
  readonly outputs: readonly SymbolicTensor[];
  /** Every node, inputs' nodes first, each after the nodes it depends on. */
  readonly nodes: readonly Node[];
  /** Every layer once, in the order of its first node (InputLayers included). */
  readonly layers: readonly Layer[];

  /**
   * @param inputs - symbolic inputs; each must come from {@link Input}
   * @param outputs - symbolic outputs
   * @param modelName - used in error messages
   * @throws InvalidArgumentError when an input is not an Input tensor or the graph is disconnected.
   */
  constructor(inputs: readonly SymbolicTensor[], outputs: readonly SymbolicTensor[], modelName: string) {
    inputs.forEach((t, i) => {
      if (!(t instanceof SymbolicTensor) || !(t.layer instanceof InputLayer)) {
        throw new InvalidArgumentError(`Expected a tensor made by Input() for inputs[${i}] of model '${modelName}' but received ${describe(t)}${t instanceof SymbolicTensor ? ` (${t})` : ''}`);
      }
    });
    if (new Set(inputs).size !== inputs.length) {
      throw new InvalidArgumentError(`Expected distinct tensors for inputs of model '${modelName}' but received the same tensor twice`);
    }
    outputs.forEach((t, i) => {
      if (!(t instanceof SymbolicTensor)) {
        throw new InvalidArgumentError(`Expected a SymbolicTensor for outputs[${i}] of model '${modelName}' but received ${describe(t)}`);
      }
    });
    this.inputs = Object.freeze([...inputs]);
    this.outputs = Object.freeze([...outputs]);
    const inputNodes = new Set(inputs.map((t) => t.node));
    const order: Node[] = inputs.map((t) => t.node);
    const done = new Set<Node>(order);
    const visiting = new Set<Node>();
    const visit = (node: Node): void => {
      if (done.has(node)) return;
      if (visiting.has(node)) throw new InvalidArgumentError(`Expected an acyclic graph for model '${modelName}' but layer '${node.layer.name}' depends on itself`);
      if (node.layer instanceof InputLayer && !inputNodes.has(node)) {
        throw new InvalidArgumentError(
          `Expected every path of model '${modelName}' to start at one of its inputs but received one from InputLayer '${node.layer.name}', which is not among them: Graph disconnected: cannot obtain value for tensor ${node.outputs[0]} at layer '${node.layer.name}'. The following previous layers were accessed without issue: [${order.map((n) => `'${n.layer.name}'`).join(', ')}]`,
        );
      }
      visiting.add(node);
      for (const t of node.inputs) visit(t.node);
      visiting.delete(node);
      done.add(node);
      order.push(node);
    };
    for (const t of outputs) visit(t.node);
    this.nodes = Object.freeze(order);
    const layers: Layer[] = [];
    const seen = new Set<Layer>();
    for (const n of order) {
      if (!seen.has(n.layer)) {
        seen.add(n.layer);
        layers.push(n.layer);
      }
    }
    const names = new Map<string, Layer>();
    for (const l of layers) {
      const other = names.get(l.name);
      if (other && other !== l) {
        throw new InvalidArgumentError(`Expected unique layer names in model '${modelName}' but received two layers named '${l.name}'`);
      }
      names.set(l.name, l);
    }
    this.layers = Object.freeze(layers);
  }

  /**
   * Runs the graph on real tensors (one per input, in order) and returns one tensor per output. Intermediate
   * results are released as soon as no later node needs them. `options` are passed to every layer call
   * (each node's own recorded options take precedence).
   * @example
   * ```ts
   * const [y] = await graph.run([x]);
   * ```
   */
  async run(values: readonly Tensor[], options: Record<string, unknown> = {}): Promise<Tensor[]> {
    if (values.length !== this.inputs.length) {
      throw new InvalidArgumentError(`Expected ${this.inputs.length} input tensor(s) for inputs but received ${values.length}`);
    }
    const known = new Map<SymbolicTensor, Tensor>();
    const uses = new Map<SymbolicTensor, number>();
    for (const n of this.nodes) for (const t of n.inputs) uses.set(t, (uses.get(t) ?? 0) + 1);
    for (const t of this.outputs) uses.set(t, (uses.get(t) ?? 0) + 1);
    this.inputs.forEach((t, i) => {
      const v = values[i];
      if (!(v instanceof Tensor)) throw new InvalidArgumentError(`Expected a Tensor for inputs[${i}] but received ${describe(v)}`);
      checkShapeAgainst(v.shape, t.shape, `input '${t.layer.name}'`);
      known.set(t, v);
    });
    for (const node of this.nodes) {
      if (node.inputs.length === 0) continue;
      const args = node.inputs.map((t) => known.get(t) as Tensor);
      const out = await node.layer.apply(node.argsForm === 'single' ? args[0] : args, { ...options, ...node.kwargs });
      known.set(node.outputs[0], out);
      for (const t of node.inputs) {
        const left = (uses.get(t) ?? 1) - 1;
        uses.set(t, left);
        if (left === 0) known.delete(t);
      }
    }
    return this.outputs.map((t) => known.get(t) as Tensor);
  }

  /** The nodes of `layer` that belong to this graph, in the layer's own order. */
  nodesOf(layer: Layer): Node[] {
    const mine = new Set(this.nodes);
    return layerNodes(layer).filter((n) => mine.has(n));
  }

  /** `[layer name, node index within this graph, tensor index]` (Keras `keras_history`). */
  history(t: SymbolicTensor): [string, number, number] {
    return [t.layer.name, Math.max(0, this.nodesOf(t.layer).indexOf(t.node)), t.index];
  }

  /**
   * The Keras functional config body: `{ name, trainable, layers, input_layers, output_layers }`.
   * `singleInput` / `singleOutput` write `input_layers` / `output_layers` as one `[name, 0, 0]` triple.
   * @example
   * ```ts
   * graph.getConfig('model', true, true, true).output_layers; // ['dense_1', 0, 0]
   * ```
   */
  getConfig(name: string, trainable: boolean, singleInput: boolean, singleOutput: boolean): Record<string, unknown> {
    const ref = (t: SymbolicTensor) => ({
      class_name: '__keras_tensor__',
      config: { shape: [...t.shape], dtype: t.dtype, keras_history: this.history(t) },
    });
    const layers = this.layers.map((layer) => {
      const entry = serializeLayer(layer, this.nodesOf(layer)[0]);
      entry.name = layer.name;
      entry.inbound_nodes = this.nodesOf(layer)
        .filter((n) => n.inputs.length > 0)
        .map((n) => ({
          args: n.argsForm === 'list' ? [n.inputs.map(ref)] : n.inputs.map(ref),
          kwargs: _serializeValue({ ...n.kwargs }),
        }));
      return entry;
    });
    const inputLayers = this.inputs.map((t) => this.history(t));
    const outputLayers = this.outputs.map((t) => this.history(t));
    return {
      name,
      trainable,
      layers,
      input_layers: singleInput ? inputLayers[0] : inputLayers,
      output_layers: singleOutput ? outputLayers[0] : outputLayers,
    };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Layer (de)serialization shared by Sequential and functional models.

/** Options of model `fromConfig`. */
export interface FromConfigOptions {
  /** Layer classes by `class_name` (or `registered_name`), searched before the registry. */
  customObjects?: Record<string, { fromConfig(config: Record<string, unknown>): Layer | Promise<Layer> }>;
}

type ModelDeserializer = (config: Record<string, unknown>, options: FromConfigOptions) => Promise<Layer>;
const modelDeserializers = new Map<string, ModelDeserializer>();

/**
 * Registers how a model class (`'Sequential'`, `'Functional'`) is rebuilt from its config (used by
 * {@link deserializeLayer}; models register themselves).
 * @internal
 * @example
 * ```ts
 * _registerModelDeserializer('Sequential', (c, o) => Sequential.fromConfig(c, o));
 * ```
 */
export function _registerModelDeserializer(className: string, fn: ModelDeserializer): void {
  modelDeserializers.set(className, fn);
}

/** Per-class `{ module, class_name, registered_name }` overrides (models set theirs). @internal */
export interface KerasClassInfo {
  module: string | null;
  className: string;
  registeredName: string | null;
}

/**
 * The Keras dict of a layer: `{ module, class_name, config, registered_name, build_config? }`. `node`
 * (the layer's first node in a graph) supplies `build_config.input_shape` when the layer does not define
 * `getBuildConfig()`.
 * @example
 * ```ts
 * serializeLayer(dense).class_name; // 'Dense'
 * ```
 */
export function serializeLayer(layer: Layer, node?: Node): Record<string, unknown> {
  const ctor = layer.constructor as unknown as { name: string; kerasClassInfo?: (layer: Layer) => KerasClassInfo };
  const info: KerasClassInfo =
    typeof ctor.kerasClassInfo === 'function'
      ? ctor.kerasClassInfo(layer)
      : getLayerClass(ctor.name) === (ctor as unknown)
        ? { module: 'keras.layers', className: ctor.name, registeredName: null }
        : { module: null, className: ctor.name, registeredName: null };
  const entry: Record<string, unknown> = {
    module: info.module,
    class_name: info.className,
    config: _serializeValue(layer.getConfig()),
    registered_name: info.registeredName,
  };
  const getBuild = (layer as unknown as { getBuildConfig?: () => Record<string, unknown> | null }).getBuildConfig;
  if (typeof getBuild === 'function') {
    const bc = getBuild.call(layer);
    if (bc) entry.build_config = _serializeValue(bc);
  } else if (layer.built && node && node.inputs.length > 0 && !(layer instanceof InputLayer)) {
    entry.build_config = { input_shape: node.argsForm === 'single' ? [...node.inputs[0].shape] : node.inputs.map((t) => [...t.shape]) };
  }
  return entry;
}

/**
 * Rebuilds a layer (or a nested model) from its Keras dict: `customObjects` first, then models, then the
 * layer registry (`getLayerClass(class_name)`, also the part of `registered_name` after `>`).
 * @throws InvalidArgumentError naming the class when it is unknown.
 * @example
 * ```ts
 * const dense = await deserializeLayer({ class_name: 'Dense', config: { units: 4, name: 'd' } });
 * ```
 */
export async function deserializeLayer(entry: unknown, options: FromConfigOptions = {}): Promise<Layer> {
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry) || typeof (entry as { class_name?: unknown }).class_name !== 'string') {
    throw new InvalidArgumentError(`Expected a Keras layer dict ({ class_name, config, ... }) for layer config but received ${describe(entry)}`);
  }
  const e = entry as Record<string, unknown>;
  const className = e.class_name as string;
  const registered = typeof e.registered_name === 'string' ? e.registered_name : null;
  const config = (e.config ?? {}) as Record<string, unknown>;
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new InvalidArgumentError(`Expected a plain object for config of layer class '${className}' but received ${describe(config)}`);
  }
  const custom = options.customObjects ?? {};
  // own properties only: a class_name such as 'constructor' or '__proto__' must not reach Object.prototype
  const own = (k: string | null) => (k !== null && Object.prototype.hasOwnProperty.call(custom, k) ? custom[k] : undefined);
  const fromCustom = own(className) ?? own(registered);
  if (fromCustom) return fromCustom.fromConfig(config);
  const model = modelDeserializers.get(className) ?? (registered ? modelDeserializers.get(registered) : undefined);
  if (model) return model(config, options);
  const cls = getLayerClass(className) ?? (registered?.includes('>') ? getLayerClass(registered.split('>')[1]) : undefined);
  if (!cls && (className === 'Lambda' || registered === 'Lambda' || registered?.endsWith('>Lambda'))) {
    // Keras serializes a Lambda layer's function as Python bytecode (refused by Keras's safe_mode); quantkit never
    // executes code from a file.
    throw new UnsupportedError(
      `Expected layers without code for layer '${typeof config.name === 'string' ? config.name : '?'}' but received a Lambda layer: its function is serialized Python bytecode, which quantkit never executes (as Keras refuses it in safe_mode). Replace it with a custom layer class and registerLayer() it`,
    );
  }
  if (!cls) {
    throw new InvalidArgumentError(
      `Expected a registered layer class for class_name of layer '${typeof config.name === 'string' ? config.name : '?'}' but received '${className}'${registered ? ` (registered_name '${registered}')` : ''}: ` +
        `register it with registerLayer(${className}) (or pass it in customObjects) before loading`,
    );
  }
  return cls.fromConfig(config);
}

function isHistoryRef(v: unknown): v is { class_name: '__keras_tensor__'; config: { keras_history: [string, number, number] } } {
  return (
    v !== null &&
    typeof v === 'object' &&
    (v as { class_name?: unknown }).class_name === '__keras_tensor__' &&
    Array.isArray((v as { config?: { keras_history?: unknown } }).config?.keras_history)
  );
}

function parseHistory(v: unknown, where: string): [string, number, number] {
  if (Array.isArray(v) && v.length === 3 && typeof v[0] === 'string' && Number.isInteger(v[1]) && Number.isInteger(v[2])) {
    return v as [string, number, number];
  }
  throw new InvalidArgumentError(`Expected a [layer name, node index, tensor index] triple for ${where} but received ${describe(v)}`);
}

/**
 * Rebuilds the layers and the graph described by a Keras functional config. Nodes are replayed with
 * {@link applySymbolic} once all their inputs exist (so shared layers and any layer order work).
 * @returns the symbolic inputs and outputs, and whether each was written as a single triple.
 * @example
 * ```ts
 * const { inputs, outputs } = await rebuildFunctional(config.config);
 * ```
 */
export async function rebuildFunctional(
  config: Record<string, unknown>,
  options: FromConfigOptions = {},
): Promise<{ inputs: SymbolicTensor[]; outputs: SymbolicTensor[]; singleInput: boolean; singleOutput: boolean }> {
  const entries = config.layers;
  if (!Array.isArray(entries)) {
    throw new InvalidArgumentError(`Expected an array for layers of the functional config but received ${describe(entries)}`);
  }
  const byName = new Map<string, Layer>();
  const pending: Array<{ layer: Layer; nodes: unknown[] }> = [];
  for (const entry of entries) {
    const layer = await deserializeLayer(entry, options);
    const name = typeof (entry as { name?: unknown }).name === 'string' ? ((entry as { name: string }).name) : layer.name;
    if (byName.has(name)) throw new InvalidArgumentError(`Expected unique layer names in the functional config but received '${name}' twice`);
    byName.set(name, layer);
    const inbound = (entry as { inbound_nodes?: unknown }).inbound_nodes ?? [];
    if (!Array.isArray(inbound)) throw new InvalidArgumentError(`Expected an array for inbound_nodes of layer '${name}' but received ${describe(inbound)}`);
    pending.push({ layer, nodes: [...inbound] });
  }
  // Output tensors by [layer name][node index]; InputLayers have node 0.
  const produced = new Map<string, SymbolicTensor[]>();
  for (const [name, layer] of byName) if (layer instanceof InputLayer) produced.set(name, [layer.output]);
  const lookup = (h: [string, number, number]): SymbolicTensor | undefined => produced.get(h[0])?.[h[1]];
  let progress = true;
  while (progress && pending.some((p) => p.nodes.length > 0)) {
    progress = false;
    for (const p of pending) {
      while (p.nodes.length > 0) {
        const node = p.nodes[0] as { args?: unknown; kwargs?: unknown };
        const args = Array.isArray(node?.args) ? node.args : Array.isArray(node) ? (node as unknown[]) : null;
        if (!args) throw new InvalidArgumentError(`Expected { args, kwargs } for an inbound node of layer '${p.layer.name}' but received ${describe(node)}`);
        // args: [ref] (one tensor), [[ref, ref]] (a list), or [ref, ref] (positional).
        let form: NodeArgsForm;
        let refs: unknown[];
        if (args.length === 1 && Array.isArray(args[0])) {
          form = 'list';
          refs = args[0] as unknown[];
        } else {
          form = args.length === 1 ? 'single' : 'positional';
          refs = args;
        }
        const histories = refs.map((r, i) => {
          if (!isHistoryRef(r)) throw new InvalidArgumentError(`Expected a __keras_tensor__ reference for args[${i}] of layer '${p.layer.name}' but received ${describe(r)}`);
          return parseHistory(r.config.keras_history, `keras_history of an input of layer '${p.layer.name}'`);
        });
        const ins = histories.map(lookup);
        if (ins.some((t) => t === undefined)) break;
        const kwargs = (node && typeof node === 'object' && !Array.isArray(node) && node.kwargs && typeof node.kwargs === 'object' ? node.kwargs : {}) as Record<string, unknown>;
        const out = await applySymbolic(p.layer, form === 'single' ? (ins[0] as SymbolicTensor) : (ins as SymbolicTensor[]), {
          kwargs,
          positional: form === 'positional',
        });
        const list = produced.get(p.layer.name) ?? [];
        list.push(out);
        produced.set(p.layer.name, list);
        p.nodes.shift();
        progress = true;
      }
    }
  }
  const stuck = pending.find((p) => p.nodes.length > 0);
  if (stuck) {
    throw new InvalidArgumentError(`Expected every inbound node of the functional config to be reachable from its inputs but received an unresolvable node of layer '${stuck.layer.name}'`);
  }
  const toTensors = (v: unknown, what: string): { list: SymbolicTensor[]; single: boolean } => {
    const single = Array.isArray(v) && typeof v[0] === 'string';
    const triples = single ? [v] : Array.isArray(v) ? v : null;
    if (!triples) throw new InvalidArgumentError(`Expected a triple or a list of triples for ${what} but received ${describe(v)}`);
    const list = triples.map((h, i) => {
      const t = lookup(parseHistory(h, `${what}[${i}]`));
      if (!t) throw new InvalidArgumentError(`Expected ${what}[${i}] to name a layer output of the config but received ${describe(h)}`);
      return t;
    });
    return { list, single };
  };
  const ins = toTensors(config.input_layers, 'input_layers');
  const outs = toTensors(config.output_layers, 'output_layers');
  // Keras unwraps one-element input/output lists when it rebuilds a functional model
  return { inputs: ins.list, outputs: outs.list, singleInput: ins.single || ins.list.length === 1, singleOutput: outs.single || outs.list.length === 1 };
}
