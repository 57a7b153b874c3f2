/**
 * Registers every built-in layer class with the layer registry under the `class_name` Keras writes in
 * `config.json` (plus Keras's public aliases), so configs can be rebuilt by name. Importing this module is
 * enough; {@link registerBuiltinLayers} can be called again safely.
 * @packageDocumentation
 */
import { Dense } from './dense';
import { EinsumDense } from './einsum';
import { Embedding, ReversibleEmbedding } from './embedding';
import { LayerNormalization, RMSNormalization } from './normalization';
import { Activation, Add, Dropout, Flatten, GlobalAveragePooling1D, Identity, Multiply, Reshape, Softmax } from './core-layers';
import { GroupedQueryAttention, MultiHeadAttention } from './attention';
import { TransformerEncoder } from './transformer';
import { LayerClass, registerLayer } from './registry';

/** `[class_name, class]` for every built-in layer (aliases included). */
const BUILTIN_LAYERS: ReadonlyArray<readonly [string, LayerClass]> = [
  ['Dense', Dense as unknown as LayerClass],
  ['EinsumDense', EinsumDense as unknown as LayerClass],
  ['Embedding', Embedding as unknown as LayerClass],
  ['ReversibleEmbedding', ReversibleEmbedding as unknown as LayerClass],
  ['LayerNormalization', LayerNormalization as unknown as LayerClass],
  ['RMSNormalization', RMSNormalization as unknown as LayerClass],
  ['Activation', Activation as unknown as LayerClass],
  ['Softmax', Softmax as unknown as LayerClass],
  ['Add', Add as unknown as LayerClass],
  ['Multiply', Multiply as unknown as LayerClass],
  ['Dropout', Dropout as unknown as LayerClass],
  ['Reshape', Reshape as unknown as LayerClass],
  ['Flatten', Flatten as unknown as LayerClass],
  ['GlobalAveragePooling1D', GlobalAveragePooling1D as unknown as LayerClass],
  ['Identity', Identity as unknown as LayerClass],
  ['MultiHeadAttention', MultiHeadAttention as unknown as LayerClass],
  ['GroupedQueryAttention', GroupedQueryAttention as unknown as LayerClass],
  ['GroupQueryAttention', GroupedQueryAttention as unknown as LayerClass],
  ['TransformerEncoder', TransformerEncoder as unknown as LayerClass],
];

/**
 * Registers the built-in layers (idempotent; runs once when this module is imported).
 * @example
 * ```ts
 * registerBuiltinLayers();
 * getLayerClass('MultiHeadAttention'); // MultiHeadAttention
 * ```
 */
export function registerBuiltinLayers(): void {
  for (const [name, ctor] of BUILTIN_LAYERS) registerLayer(ctor, name);
}

registerBuiltinLayers();
