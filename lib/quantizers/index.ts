/**
 * Quantizers, quantization configs, Keras-style serialization and quantization helper functions.
 *
 * @example
 * ```ts
 * import { AbsMaxQuantizer, Int8QuantizationConfig, validateAndResolveConfig } from 'quantkit';
 * const config = validateAndResolveConfig('int8', new Int8QuantizationConfig({ activationQuantizer: null }));
 * const { quantized, scale } = await new AbsMaxQuantizer().quantize(x, { axis: -1 });
 * ```
 * @packageDocumentation
 */
export { Quantizer, AbsMaxQuantizer } from './quantizer';
export type { QuantizerResult, QuantizerAxis, AbsMaxQuantizerOptions } from './quantizer';
export { registerSerializable, serializeObject, deserializeObject, getQuantizer } from './registry';
export type { SerializedObject, SerializableClass } from './registry';
export {
  QUANTIZATION_MODES,
  QuantizationConfig,
  Int8QuantizationConfig,
  Int4QuantizationConfig,
  Float8QuantizationConfig,
  GPTQConfig,
  validateAndResolveConfig,
} from './config';
export type {
  QuantizationMode,
  QuantizerArg,
  Int8QuantizationConfigOptions,
  Int4QuantizationConfigOptions,
  GPTQConfigOptions,
} from './config';
export {
  absMaxQuantizeGroupedWithZeroPoint,
  dequantizeGrouped,
  computeFloat8Scale,
  computeFloat8AmaxHistory,
  quantizeAndDequantize,
} from './functions';
export type { GroupedQuantizeOptions, GroupedQuantized } from './functions';
