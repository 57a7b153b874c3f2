/**
 * Models: `Model` (functional and subclassed), `Sequential`, the functional API (`Input`, `applySymbolic`,
 * `SymbolicTensor`, `InputLayer`), model-level quantization and its `QuantizationReport`.
 *
 * @example
 * ```ts
 * import { Sequential, Dense, Input } from 'quantkit';
 * const model = new Sequential({ layers: [Input({ shape: [10] }), new Dense({ units: 1 })] });
 * const report = await model.quantize('int8', { verbose: false });
 * console.log(report.render());
 * ```
 * @packageDocumentation
 */
export { Model, makeLayerFilter, childLayersOf, collectVariables } from './model';
export type {
  ModelOptions,
  ModelQuantizeOptions,
  LayerFilter,
  QuantizationLayerStructure,
  GPTQContext,
  PredictOptions,
  SummaryOptions,
} from './model';
export { Sequential } from './sequential';
export type { SequentialOptions } from './sequential';
export { Input, InputLayer, SymbolicTensor, Node, layerNodes, checkSymbolicShape, checkShapeAgainst } from './input';
export type { InputOptions, InputLayerOptions, SymbolicShape, NodeArgsForm } from './input';
export { applySymbolic, FunctionalGraph, serializeLayer, deserializeLayer, rebuildFunctional } from './graph';
export type { ApplySymbolicOptions, FromConfigOptions, KerasClassInfo } from './graph';
export { QuantizationReport } from './report';
export type { QuantizedEntry, SkippedEntry, ErrorEntry, GptqLayerEntry } from './report';
export { LlamaCausalLM, LlamaDecodeBatcher, LlamaDecoderBlock, LlamaKVCache, XorShiftRng } from './llama';
export type { LlamaArchitecture, LlamaCausalLMOptions, LlamaBlockCallOptions, LlamaDecoderBlockOptions, LlamaLayerCache, LlamaTokenizerLike, GenerateOptions, GenerateResult, GenerateChunk } from './llama';
