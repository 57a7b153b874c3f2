/**
 * DType policies: compute/variable dtypes and quantization mode per layer, with Keras's names and serialization.
 *
 * @example
 * ```ts
 * import { getDTypePolicy, DTypePolicyMap } from 'quantkit';
 * getDTypePolicy('int4/128_from_float32').quantizationMode; // 'int4'
 * new DTypePolicyMap('float32', { 'mha/query': 'int8_from_float32' }).get('mha/query').name; // 'int8_from_float32'
 * ```
 * @packageDocumentation
 */
export {
  DTypePolicy,
  QuantizedDTypePolicy,
  QuantizedFloat8DTypePolicy,
  Int4DTypePolicy,
  GPTQDTypePolicy,
  DEFAULT_DTYPE_POLICY_NAME,
} from './policy';
export type { FloatPolicyName, PolicyDType } from './policy';
export { DTypePolicyMap, getDTypePolicy, serializeDTypePolicy, deserializeDTypePolicy } from './map';
export type { DTypePolicyLike } from './map';
