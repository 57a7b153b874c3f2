/**
 * GPTQ: the matrix-level API (bring your own activations or Hessians), calibration data, and the calibration
 * driver's types. The model-level entry point is `model.quantize('gptq', { config: new GPTQConfig({...}) })`.
 * @example
 * ```ts
 * import { gptqHessian, gptqQuantizeMatrix } from 'quantkit';
 * const { hessian } = await gptqHessian(activationBatches);
 * const r = await gptqQuantizeMatrix(kernel, hessian, { weightBits: 4, groupSize: 128 });
 * ```
 * @packageDocumentation
 */
export { GptqHessian, gptqHessian, gptqQuantizeMatrix } from './matrix';
export type { GptqDevice, GptqMatrixOptions, GptqMatrixResult } from './matrix';
export { calibrationWindows, tokenizerFunction } from './data';
export type { TokenizerLike, CalibrationStrategy, CalibrationWindowOptions } from './data';
export type { GptqProgress, GptqRunOptions } from './calibrate';
