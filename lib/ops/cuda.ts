/**
 * CUDA versions of the abs-max ops. They run where quantkit was built with CUDA and a device exists; elsewhere
 * they reject with `QK_UNSUPPORTED` (check {@link cudaAvailable} first).
 * @packageDocumentation
 */
import { InvalidArgumentError, UnsupportedError } from '../errors';
import { loadNative } from '../native/load';
import { Tensor, describe } from '../tensor';
import { axisView, callNative, normalizeAxis } from './call';
import { validateValueRange } from './quantize';

/**
 * True when CUDA is compiled in and at least one device is visible.
 * @example
 * ```ts
 * if (cudaAvailable()) await cudaAbsMax(x, 0);
 * ```
 */
export function cudaAvailable(): boolean {
  const c = loadNative().capabilities().cuda;
  return c.compiled && c.devices.length > 0;
}

function prepare(x: unknown, axis: number, device: number): { xf: Tensor<'float32'>; ax: number } {
  if (!(x instanceof Tensor) || x.dtype !== 'float32') {
    throw new InvalidArgumentError(`Expected a float32 Tensor for x but received ${x instanceof Tensor ? `a ${x.dtype} tensor` : describe(x)}`);
  }
  if (!Number.isInteger(device) || device < 0) {
    throw new InvalidArgumentError(`Expected a non-negative integer for device but received ${describe(device)}`);
  }
  if (!cudaAvailable()) {
    const c = loadNative().capabilities().cuda;
    throw new UnsupportedError(`CUDA is not available: ${c.error ?? 'no CUDA device found'}`);
  }
  return { xf: x as Tensor<'float32'>, ax: normalizeAxis(axis, x.rank) };
}

/**
 * `max(|x|)` along one axis on a CUDA device (keepdims).
 * @example
 * ```ts
 * const amax = await cudaAbsMax(x, -1);
 * ```
 */
export async function cudaAbsMax(x: Tensor, axis = -1, device = 0): Promise<Tensor<'float32'>> {
  const { xf, ax } = prepare(x, axis, device);
  const { outer, len, inner } = axisView(xf.shape, ax, ax);
  const out = new Float32Array(outer * inner);
  await callNative((n) => n.cudaAbsmax(device, xf.data, outer, len, inner, out));
  return new Tensor('float32', xf.shape.map((d, i) => (i === ax ? 1 : d)), out);
}

/**
 * Abs-max quantization on a CUDA device, bit-exact with {@link absMaxQuantize}.
 * @example
 * ```ts
 * const { quantized, scale } = await cudaAbsMaxQuantize(x, -1);
 * ```
 */
export async function cudaAbsMaxQuantize(
  x: Tensor,
  axis = -1,
  options: { valueRange?: readonly [number, number]; epsilon?: number; device?: number } = {},
): Promise<{ quantized: Tensor<'int8'>; scale: Tensor<'float32'> }> {
  const device = options.device ?? 0;
  const { xf, ax } = prepare(x, axis, device);
  const [lo, hi] = validateValueRange(options.valueRange ?? [-127, 127]);
  const eps = options.epsilon ?? 1e-7;
  const { outer, len, inner } = axisView(xf.shape, ax, ax);
  const q = new Int8Array(xf.size);
  const scale = new Float32Array(outer * inner);
  await callNative((n) => n.cudaAbsmaxQuantize(device, xf.data, outer, len, inner, lo, hi, eps, q, scale));
  return {
    quantized: new Tensor('int8', xf.shape, q),
    scale: new Tensor('float32', xf.shape.map((d, i) => (i === ax ? 1 : d)), scale),
  };
}
