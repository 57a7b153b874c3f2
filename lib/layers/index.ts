/**
 * Layers: the `Layer` base and the quantizable projections (`Dense`, `EinsumDense`, `Embedding`,
 * `ReversibleEmbedding`).
 * @packageDocumentation
 */
export { Layer, uniqueLayerName } from './layer';
export type { LayerOptions, QuantizeOptions } from './layer';
export { Variable } from './variable';
export { Dense } from './dense';
export type { DenseOptions } from './dense';
export { EinsumDense, analyzeEinsum, permute } from './einsum';
export type { EinsumDenseOptions, EinsumPlan } from './einsum';
export { Embedding, ReversibleEmbedding } from './embedding';
export type { EmbeddingOptions, ReversibleEmbeddingOptions } from './embedding';
export { initialize, seededRandom } from './initializers';
export type { Initializer } from './initializers';
export { applyActivation, checkActivation } from './activations';
export type { ActivationName } from './activations';
export type { QuantState } from './dense-core';
export { registerLayer, getLayerClass, registeredLayerNames } from './registry';
export type { LayerClass } from './registry';
export { StatelessLayer, Activation, Softmax, Add, Multiply, Dropout, Reshape, Flatten, Identity, GlobalAveragePooling1D, setLayerPath } from './core-layers';
export type { ActivationOptions, SoftmaxOptions, DropoutOptions, ReshapeOptions, FlattenOptions, GlobalPooling1DOptions } from './core-layers';
export * from './normalization';
export { CompositeLayer, MultiHeadAttention, GroupedQueryAttention, GroupQueryAttention } from './attention';
export type { AttentionCallOptions, AttentionBaseOptions, AttentionWithScores, MultiHeadAttentionOptions, GroupedQueryAttentionOptions } from './attention';
export * from './transformer';
export { registerBuiltinLayers } from './builtin';
