/**
 * quantkit — post-training quantization and fast quantized inference for Node.js.
 *
 * @example
 * ```ts
 * import { tensor, absMaxQuantize, matmulInt8, capabilities } from 'quantkit';
 * const w = tensor([0.5, -1, -0.25, 0.2, 1, 0.1], [3, 2]);
 * const { quantized, scale } = await absMaxQuantize(w, 0);
 * console.log(capabilities().isa, quantized.data, scale.data);
 * ```
 * @packageDocumentation
 */
export * from './errors';
export * from './dtype';
export { Tensor, tensor, validateShape, shapeSize, containerLengthForShape, roundHalfEven } from './tensor';
export type { Shape, TensorLike } from './tensor';
export { capabilities, _kernelImpls } from './capabilities';
export type { Capabilities } from './capabilities';
export type { IsaName } from './native/binding';
export type { OpOptions } from './ops/call';
export { rmsNorm, rope, softmaxRows, siluMul, createKVCacheView, kvCacheWrite, attentionDecode } from './ops/llama';
export type { Float32Input, Float32Output, LlamaOutOptions, KVCacheView, RopeOptions, SoftmaxRowsOptions, AttentionDecodeOptions } from './ops/llama';
export { absMax, absMaxQuantize } from './ops/quantize';
export type { Axes, AbsMaxQuantizeOptions, AbsMaxQuantized } from './ops/quantize';
export { packInt4, unpackInt4, packInt2, unpackInt2 } from './ops/pack';
export type { Packed, PackDType } from './ops/pack';
export { matmul, matmulInt8 } from './ops/matmul';
export { packWeights, setWeightPacking, weightPackingEnabled, clearPackedWeights, _packedWeightsState, PACK_MIN_ROWS } from './ops/weight-pack';
export type { PackKind } from './ops/weight-pack';
export { cudaAbsMax, cudaAbsMaxQuantize, cudaAvailable } from './ops/cuda';
export { cudaDenseF32, cudaDenseW8A8, cudaDenseFp8, cudaDenseWq, cudaPack, cudaFp8Convert, cudaDeviceHas, CUDA_FEATURES } from './ops/cuda-dense';
export type { CudaDenseOptions, CudaDenseWqOptions } from './ops/cuda-dense';
export { cudaRmsNorm, cudaRope, cudaSoftmaxRows, cudaSiluMul, cudaAttentionDecode } from './ops/cuda-llama';
export type { CudaAttentionShape } from './ops/cuda-llama';
export { DeviceBuffer, cudaMemoryStats, cudaEmptyCache } from './cuda/device-buffer';
export { ResidentProjection, checkCudaDevice, cudaEmulated, deviceName, parseDevice } from './cuda/resident';
export type { Device, ResidentSource } from './cuda/resident';
export { denseForward } from './ops/dense';
export type { DenseWeights, DenseForwardOptions, ActivationQuant } from './ops/dense';
export { denseGptq, packGptqRuntime, unpackGptqRuntime, gptqRuntimeRowBytes } from './ops/dense-gptq';
export type { GptqRuntimeWeights, GptqBits } from './ops/dense-gptq';
export * from './quantizers';
export * from './dtype-policies';
export * from './layers';
export * from './models';
export * from './io';
export { saveModel, loadModel, saveWeights, loadWeights, modelToKerasBytes, weightsTree, applyWeightsTree, KERAS_FORMAT_VERSION } from './io/keras';
export type { LoadModelOptions } from './io/keras';
export { exportSafetensors, exportSafetensorsFile, importSafetensors, importSafetensorsFile } from './io/model-safetensors';
export * from './gptq';
export * from './tokenizers';
export * from './io/llm';
