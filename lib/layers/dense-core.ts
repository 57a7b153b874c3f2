/**
 * The quantization machinery shared by `Dense` and `EinsumDense`: both reduce to a 2-D projection
 * `[rows = contracted, cols = free]` whose weights are stored in one of the Keras formats. This module holds
 * that 2-D state, its quantization (int8, int4 per-channel and grouped, float8), and its forward pass on the
 * native kernels (with a generic path for custom activation quantizers).
 * @internal
 * @packageDocumentation
 */
import { InvalidArgumentError, ShapeMismatchError } from '../errors';
import { matmulInt8 } from '../ops/matmul';
import { ActivationQuant, denseForward, DenseWeights } from '../ops/dense';
import { packInt4, unpackInt4 } from '../ops/pack';
import {
  AbsMaxQuantizer,
  absMaxQuantizeGroupedWithZeroPoint,
  Int4QuantizationConfig,
  QuantizationConfig,
  Quantizer,
} from '../quantizers';
import { Tensor } from '../tensor';
import type { Variable } from './variable';

/** Keras AMAX history length of float8 policies. */
export const FLOAT8_HISTORY = 1024;
/** Largest finite float8_e4m3fn value. */
export const E4M3_MAX = 448;

/** Quantized weights of a projection, in Keras storage form (see spec §2.3-§2.5). */
export type QuantState =
  | { mode: 'int8'; kernel: Tensor<'int8'>; scale: Tensor<'float32'> }
  | { mode: 'int4'; blockSize: null; kernel: Tensor<'int8'>; scale: Tensor<'float32'> }
  | { mode: 'int4'; blockSize: number; kernel: Tensor<'int8'>; scale: Tensor<'float32'>; zero: Tensor<'int8'>; gIdx: Tensor<'float32'> }
  | { mode: 'float8'; kernel: Tensor<'float8_e4m3fn'>; kernelScale: number };

/** The int4 block size for a layer: the config's when it is an Int4QuantizationConfig, else the policy's (-1 -> null). */
export function blockSizeFor(config: QuantizationConfig | null, policyBlockSize: number | null | undefined): number | null {
  if (config instanceof Int4QuantizationConfig) return config.blockSize;
  if (policyBlockSize === undefined || policyBlockSize === null || policyBlockSize === -1) return null;
  return policyBlockSize;
}

/**
 * Quantizes a float `[rows, cols]` kernel (rows = contracted/input axis) in `mode`.
 * `weightQuantizer`: the config's weight quantizer (int8 / per-channel int4), which must reduce over axis 0.
 */
export async function quantizeKernel2D(
  kernel: Tensor<'float32'>,
  mode: 'int8' | 'int4' | 'float8',
  config: QuantizationConfig | null,
  blockSize: number | null,
): Promise<QuantState> {
  const [rows, cols] = kernel.shape;
  if (mode === 'int8' || (mode === 'int4' && blockSize === null)) {
    const def = new AbsMaxQuantizer({ axis: 0, valueRange: mode === 'int8' ? [-127, 127] : [-8, 7] });
    const wq = QuantizationConfig.weightQuantizerOrDefault(config, def) ?? def;
    const { quantized, scale } = await wq.quantize(kernel);
    if (quantized.dtype !== 'int8' || quantized.size !== kernel.size) {
      throw new InvalidArgumentError(`Expected the weight quantizer to return int8 values of shape [${rows}, ${cols}] but received ${quantized}`);
    }
    if (scale.size !== cols) {
      throw new ShapeMismatchError(
        `Expected the weight quantizer to return one scale per output unit (${cols}) but received ${scale.size}; a custom weight quantizer must reduce over axis 0 (pass axis: 0)`,
      );
    }
    const s = new Tensor('float32', [cols], Float32Array.from(scale.data as Float32Array));
    if (mode === 'int8') return { mode, kernel: new Tensor('int8', [rows, cols], quantized.data as Int8Array), scale: s };
    const lo = mode === 'int4' ? -8 : -128;
    const qd = quantized.data as Int8Array;
    for (let i = 0; i < qd.length; i++) {
      if (qd[i] < lo || qd[i] > 7) {
        throw new InvalidArgumentError(`Expected int4 values in [-8, 7] from the weight quantizer but received ${qd[i]}; use valueRange: [-8, 7]`);
      }
    }
    const { packed } = await packInt4(new Tensor('int8', [rows, cols], qd), 1);
    return { mode: 'int4', blockSize: null, kernel: packed as Tensor<'int8'>, scale: s };
  }
  if (mode === 'int4') {
    const g = absMaxQuantizeGroupedWithZeroPoint(kernel, blockSize as number);
    const { packed } = await packInt4(g.quantized, 1);
    return {
      mode: 'int4',
      blockSize: blockSize as number,
      kernel: packed as Tensor<'int8'>,
      scale: g.scale,
      zero: g.zero,
      gIdx: new Tensor('float32', [rows], g.gIdx),
    };
  }
  // float8: per-tensor scale from the kernel's amax (a deliberate difference from Keras, which starts at 1).
  const d = kernel.data as Float32Array;
  let amax = 0;
  for (let i = 0; i < d.length; i++) amax = Math.max(amax, Math.abs(d[i]));
  const kernelScale = amax > 0 && Number.isFinite(amax) ? amax / E4M3_MAX : 1;
  const scaled = new Float32Array(d.length);
  for (let i = 0; i < d.length; i++) scaled[i] = Math.max(-E4M3_MAX, Math.min(E4M3_MAX, d[i] / kernelScale));
  const codes = new Tensor('float32', [rows, cols], scaled).astype('float8_e4m3fn');
  return { mode: 'float8', kernel: codes, kernelScale };
}

/** Zero-filled quantized state of the given shape (a layer built from a quantized policy, before loading). */
export function emptyQuantState(rows: number, cols: number, mode: 'int8' | 'int4' | 'float8', blockSize: number | null): QuantState {
  if (mode === 'int8') return { mode, kernel: new Tensor('int8', [rows, cols]), scale: new Tensor('float32', [cols], new Float32Array(cols).fill(1)) };
  if (mode === 'float8') return { mode, kernel: new Tensor('float8_e4m3fn', [rows, cols]), kernelScale: 1 };
  const packedCols = Math.ceil(cols / 2);
  if (blockSize === null) {
    return { mode, blockSize, kernel: new Tensor('int8', [rows, packedCols]), scale: new Tensor('float32', [cols], new Float32Array(cols).fill(1)) };
  }
  const groups = Math.ceil(rows / blockSize);
  const gIdx = new Float32Array(rows);
  for (let i = 0; i < rows; i++) gIdx[i] = Math.floor(i / blockSize);
  return {
    mode,
    blockSize,
    kernel: new Tensor('int8', [rows, packedCols]),
    scale: new Tensor('float32', [groups, cols], new Float32Array(groups * cols).fill(1)),
    zero: new Tensor('int8', [groups, cols]),
    gIdx: new Tensor('float32', [rows], gIdx),
  };
}

/** The native weights descriptor of a state. */
export function denseWeights(state: QuantState): DenseWeights {
  switch (state.mode) {
    case 'int8':
      return { format: 'int8', kernel: state.kernel.data, scale: state.scale.data };
    case 'int4':
      return state.blockSize === null
        ? { format: 'int4', kernel: state.kernel.data, scale: state.scale.data }
        : { format: 'int4-grouped', kernel: state.kernel.data, scale: state.scale.data, zero: state.zero.data, groupSize: state.blockSize };
    case 'float8':
      return { format: 'float8', kernel: state.kernel.data as Uint8Array, scale: state.kernelScale };
  }
}

/**
 * The projection forward for a `[M, rows]` input: native fused kernels when the activation quantizer is a plain
 * `AbsMaxQuantizer`, or the generic path (`quantizer.quantize` + int8 GEMM + descale) for custom quantizers.
 */
export function projectQuantized(
  x2d: Tensor<'float32'>,
  state: QuantState,
  cols: number,
  bias: Float32Array | null,
  inputsQuantizer: Quantizer | null,
  float8InputScale: number | null = null,
): Promise<Tensor<'float32'>> {
  const act = activationQuantOf(state, inputsQuantizer);
  if (act !== 'custom') {
    // The native fused kernels: the promise of denseForward is returned as is (not awaited in an async function,
    // which would add promise hops to every layer call).
    const inputScale = state.mode === 'float8' && float8InputScale !== null ? float8InputScale : undefined;
    return denseForward(x2d, denseWeights(state), cols, bias, { activation: act, inputScale });
  }
  return projectGeneric(x2d, state, cols, bias, inputsQuantizer as Quantizer);
}

/**
 * How a state's forward quantizes activations: null (weight-only: grouped int4, float8, or no activation
 * quantizer), the abs-max parameters of a plain `AbsMaxQuantizer` (the fused native kernels), or 'custom' (a
 * user-defined quantizer: the generic path).
 */
export function activationQuantOf(state: QuantState, inputsQuantizer: Quantizer | null): ActivationQuant | null | 'custom' {
  const grouped = state.mode === 'int4' && state.blockSize !== null;
  const usesActivations = (state.mode === 'int8' || (state.mode === 'int4' && !grouped)) && inputsQuantizer !== null;
  if (!usesActivations) return null;
  if (!isPlainAbsMax(inputsQuantizer)) return 'custom';
  const q = inputsQuantizer as AbsMaxQuantizer;
  return { valueRange: q.valueRange as [number, number], epsilon: q.epsilon };
}

/** Generic path for a user-defined activation quantizer (always called with axis -1, as Keras does). */
async function projectGeneric(
  x2d: Tensor<'float32'>,
  state: QuantState,
  cols: number,
  bias: Float32Array | null,
  inputsQuantizer: Quantizer,
): Promise<Tensor<'float32'>> {
  const M = x2d.shape[0];
  const { quantized: qx, scale: sx } = await (inputsQuantizer as Quantizer).quantize(x2d, { axis: -1 });
  if (sx.size !== M) {
    throw new ShapeMismatchError(`Expected the activation quantizer to return one scale per row (${M}) but received ${sx.size}`);
  }
  let w: Tensor<'int8'>;
  if (state.mode === 'int8') {
    w = state.kernel;
  } else {
    w = (await unpackInt4(state.kernel, cols, 1, 'int8')) as Tensor<'int8'>;
  }
  const acc = await matmulInt8(qx, w);
  const ks = (state as { scale: Tensor<'float32'> }).scale.data;
  const sxd = sx.data as Float32Array;
  const out = new Float32Array(M * cols);
  const ad = acc.data;
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < cols; j++) {
      const d = Math.fround(ks[j] * sxd[i]);
      let v = Math.fround(ad[i * cols + j] / d);
      if (bias) v = Math.fround(v + bias[j]);
      out[i * cols + j] = v;
    }
  }
  return new Tensor('float32', [M, cols], out);
}

function isPlainAbsMax(q: Quantizer | null): boolean {
  return q !== null && q.constructor === AbsMaxQuantizer;
}

/** Float32 dequantized `[rows, cols]` kernel of a state (for tests, saving float copies and custom gradients). */
export async function dequantizeState(state: QuantState, rows: number, cols: number): Promise<Tensor<'float32'>> {
  const out = new Float32Array(rows * cols);
  if (state.mode === 'float8') {
    const f = state.kernel.toFloat32().data;
    for (let i = 0; i < out.length; i++) out[i] = Math.fround(f[i] * state.kernelScale);
    return new Tensor('float32', [rows, cols], out);
  }
  const levels =
    state.mode === 'int8' ? state.kernel.data : ((await unpackInt4(state.kernel, cols, 1, 'int8')).data as Int8Array);
  if (state.mode === 'int4' && state.blockSize !== null) {
    const s = state.scale.data;
    const z = state.zero.data;
    for (let r = 0; r < rows; r++) {
      const g = Math.floor(r / state.blockSize);
      for (let c = 0; c < cols; c++) out[r * cols + c] = Math.fround((levels[r * cols + c] - z[g * cols + c]) * s[g * cols + c]);
    }
  } else {
    const s = (state as { scale: Tensor<'float32'> }).scale.data;
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[r * cols + c] = Math.fround(levels[r * cols + c] / s[c]);
  }
  return new Tensor('float32', [rows, cols], out);
}

/** Rebuilds a quantized state of the same kind from loaded variables (by Keras variable name). */
export function stateFromVariables(prev: QuantState, vars: readonly Variable[]): QuantState {
  const get = (name: string) => {
    const v = vars.find((x) => x.name === name);
    if (!v) throw new InvalidArgumentError(`missing variable '${name}'`);
    return v.value;
  };
  switch (prev.mode) {
    case 'int8':
      return { mode: 'int8', kernel: get('kernel') as Tensor<'int8'>, scale: get('kernel_scale') as Tensor<'float32'> };
    case 'int4':
      return prev.blockSize === null
        ? { mode: 'int4', blockSize: null, kernel: get('kernel') as Tensor<'int8'>, scale: get('kernel_scale') as Tensor<'float32'> }
        : {
            mode: 'int4',
            blockSize: prev.blockSize,
            kernel: get('kernel') as Tensor<'int8'>,
            scale: get('kernel_scale') as Tensor<'float32'>,
            zero: get('kernel_zero') as Tensor<'int8'>,
            gIdx: get('g_idx') as Tensor<'float32'>,
          };
    case 'float8':
      return { mode: 'float8', kernel: get('kernel') as Tensor<'float8_e4m3fn'>, kernelScale: (get('kernel_scale').data as Float32Array)[0] };
  }
}

/** Own variables for saving; a float8 kernel is written as float32 (codes x kernel scale), as Keras stores it. */
export function saveFloat8Aware(state: QuantState | null, vars: readonly Variable[]): Tensor[] {
  return vars.map((v) => {
    if (state?.mode === 'float8' && v.name === 'kernel') {
      const f = (v.value as Tensor<'float8_e4m3fn'>).toFloat32();
      const ks = (vars.find((x) => x.name === 'kernel_scale')!.value.data as Float32Array)[0];
      const d = f.data;
      for (let i = 0; i < d.length; i++) d[i] = Math.fround(d[i] * ks);
      return f;
    }
    return v.value;
  });
}

/**
 * Prepares loaded tensors for a float8 layer: the float32 kernel (Keras keeps it in float) is quantized to e4m3fn
 * codes with the file's kernel scale, exactly as Keras's QDQ does (`e4m3fn(clip(w / scale))`).
 */
export function loadFloat8Aware(state: QuantState | null, vars: readonly Variable[], tensors: Tensor[], layerName: string): Tensor[] {
  if (state?.mode !== 'float8' || tensors.length !== vars.length) return tensors;
  const ki = vars.findIndex((v) => v.name === 'kernel');
  const si = vars.findIndex((v) => v.name === 'kernel_scale');
  const k = tensors[ki];
  const s = tensors[si];
  if (!(k instanceof Tensor) || k.dtype !== 'float32' || !(s instanceof Tensor) || s.dtype !== 'float32' || s.size !== 1) return tensors;
  const ks = (s.data as Float32Array)[0];
  if (!(ks > 0) || !Number.isFinite(ks)) {
    throw new InvalidArgumentError(`Expected a positive finite kernel_scale for float8 layer '${layerName}' but received ${ks}`);
  }
  const d = k.data as Float32Array;
  const scaled = new Float32Array(d.length);
  for (let i = 0; i < d.length; i++) scaled[i] = Math.max(-E4M3_MAX, Math.min(E4M3_MAX, d[i] / ks));
  const out = [...tensors];
  out[ki] = new Tensor('float32', k.shape, scaled).astype('float8_e4m3fn');
  return out;
}

/** The stored (Keras) activation scale of a float8 layer. */
export function storedInputScale(vars: readonly Variable[]): number {
  const v = vars.find((x) => x.name === 'inputs_scale');
  const s = v ? (v.value.data as Float32Array)[0] : 1;
  return s > 0 && Number.isFinite(s) ? s : 1;
}
