/**
 * The GPTQ state of a projection (`Dense`, `EinsumDense`), shared by both: Keras's stored variables
 * (spec §3.2, §3.10: `quantized_kernel` uint8 `[out, in]` — 4-bit packed two per byte and 2-bit four per byte
 * along axis 0 —, `kernel_scale` float32 `[out, groups]`, `kernel_zero` uint8 `[out, groups]`, `g_idx` float32
 * `[in]`) and the runtime form the fused kernel reads (levels packed along the outputs, inputs reordered once
 * so that every group is a contiguous run of rows, scale and zero transposed to `[groups, out]`). The runtime
 * form is built once, lazily (after calibration or loading); no float kernel exists after quantization.
 * @internal
 * @packageDocumentation
 */
import { CorruptFileError, InvalidArgumentError } from '../errors';
import { denseGptq, packGptqRuntime } from '../ops/dense-gptq';
import { packInt2, packInt4, unpackInt2, unpackInt4 } from '../ops/pack';
import { GPTQDTypePolicy } from '../dtype-policies';
import { GPTQConfig, QuantizationConfig } from '../quantizers';
import { Tensor } from '../tensor';

/** Bit widths GPTQ supports. */
export type GptqBits = 2 | 3 | 4 | 8;

/** What the fused kernel reads (built from the stored variables). */
export interface GptqRuntime {
  /** Levels in the runtime layout (see `packGptqRuntime`), rows in runtime order. */
  wq: Uint8Array;
  /** float32 `[groups', out]`. */
  scale: Float32Array;
  /** uint8 `[groups', out]`. */
  zero: Uint8Array;
  /** Rows per runtime group. */
  group: number;
  /** Runtime row k reads input `perm[k]`; null = identity. */
  perm: Int32Array | null;
}

/** A GPTQ projection `[rows = in, cols = out]`. */
export interface GptqState {
  mode: 'gptq';
  bits: GptqBits;
  /** The config's group size (`-1` = one group per output channel). */
  groupSize: number;
  rows: number;
  cols: number;
  /** Keras `quantized_kernel`. */
  kernel: Tensor<'uint8'>;
  /** Keras `kernel_scale` `[out, groups]`. */
  scale: Tensor<'float32'>;
  /** Keras `kernel_zero` `[out, groups]`. */
  zero: Tensor<'uint8'>;
  /** Keras `g_idx` `[in]` (integer values stored as float32). */
  gIdx: Tensor<'float32'>;
  /** False for a freshly built (uncalibrated, unloaded) state: it refuses to run or save. */
  calibrated: boolean;
  /** The runtime form, built on first use. */
  runtime: Promise<GptqRuntime> | null;
}

/** Number of (scale, zero) columns for `rows` inputs. */
export function gptqGroups(rows: number, groupSize: number): number {
  return groupSize === -1 ? 1 : Math.ceil(rows / groupSize);
}

/** Keras's `quantized_kernel` shape for `[rows = in, cols = out]`. */
export function gptqKernelShape(bits: GptqBits, rows: number, cols: number): [number, number] {
  if (bits === 4) return [Math.ceil(cols / 2), rows];
  if (bits === 2) return [Math.ceil(cols / 4), rows];
  return [cols, rows];
}

/** A zero state of the right shapes (a layer built from a GPTQ policy, before loading or calibration). */
export function emptyGptqState(rows: number, cols: number, bits: GptqBits, groupSize: number): GptqState {
  const G = gptqGroups(rows, groupSize);
  const gIdx = new Float32Array(rows);
  if (groupSize !== -1) for (let i = 0; i < rows; i++) gIdx[i] = Math.floor(i / groupSize);
  return {
    mode: 'gptq',
    bits,
    groupSize,
    rows,
    cols,
    kernel: new Tensor('uint8', gptqKernelShape(bits, rows, cols)),
    scale: new Tensor('float32', [cols, G], new Float32Array(cols * G).fill(1)),
    zero: new Tensor('uint8', [cols, G]),
    gIdx: new Tensor('float32', [rows], gIdx),
    calibrated: false,
    runtime: null,
  };
}

/** A calibrated state from GPTQ's outputs (levels unpacked `[out, in]`, `g_idx` int32). */
export async function gptqStateFromResult(
  bits: GptqBits,
  groupSize: number,
  levels: Tensor<'uint8'>,
  scale: Tensor<'float32'>,
  zero: Tensor<'uint8'>,
  gIdx: Tensor<'int32'>,
): Promise<GptqState> {
  const [cols, rows] = levels.shape;
  let kernel: Tensor<'uint8'> = levels;
  if (bits === 4) kernel = (await packInt4(levels, 0, 'uint8')).packed as Tensor<'uint8'>;
  else if (bits === 2) kernel = (await packInt2(levels, 0, 'uint8')).packed as Tensor<'uint8'>;
  const state: GptqState = {
    mode: 'gptq',
    bits,
    groupSize,
    rows,
    cols,
    kernel,
    scale,
    zero,
    gIdx: new Tensor('float32', [rows], Float32Array.from(gIdx.data)),
    calibrated: true,
    runtime: null,
  };
  state.runtime = buildRuntime(state, levels);
  return state;
}

/** The state with the loaded variable values (same shapes), marked calibrated; the runtime is rebuilt lazily. */
export function gptqStateWithValues(
  prev: GptqState,
  kernel: Tensor<'uint8'>,
  scale: Tensor<'float32'>,
  zero: Tensor<'uint8'>,
  gIdx: Tensor<'float32'>,
): GptqState {
  return { ...prev, kernel, scale, zero, gIdx, calibrated: true, runtime: null };
}

/** Levels `[out, in]` unpacked from the stored kernel. */
export async function gptqLevels(state: GptqState): Promise<Tensor<'uint8'>> {
  if (state.bits === 4) return (await unpackInt4(state.kernel, state.cols, 0, 'uint8')) as Tensor<'uint8'>;
  if (state.bits === 2) return (await unpackInt2(state.kernel, state.cols, 0, 'uint8')) as Tensor<'uint8'>;
  return state.kernel;
}

/**
 * Validates the stored values (a file may be hostile) and builds the runtime form. The inputs are sorted by
 * `g_idx` (stable); when every group is then the contiguous run `[g·groupSize, (g+1)·groupSize)` (always the
 * case for GPTQ's own output, with or without activation order, and for Keras files) the kernel runs with that
 * group size and the permutation; otherwise (an arbitrary `g_idx`) each input row gets its own scale row.
 */
async function buildRuntime(state: GptqState, levelsIn?: Tensor<'uint8'>): Promise<GptqRuntime> {
  const { rows: K, cols: N, bits } = state;
  const maxq = (1 << bits) - 1;
  const G = state.scale.shape[1];
  const levels = levelsIn ?? (await gptqLevels(state));
  const lv = levels.data;
  for (let i = 0; i < lv.length; i++) {
    if (lv[i] > maxq) throw new CorruptFileError(`Expected ${bits}-bit GPTQ levels in [0, ${maxq}] but found ${lv[i]} in the quantized kernel`);
  }
  // Zero points may exceed maxq in files written by Keras (it does not clamp them, spec §3.9); any uint8 works.
  const zd = state.zero.data;
  const sd = state.scale.data;
  for (let i = 0; i < sd.length; i++) {
    if (!Number.isFinite(sd[i])) throw new CorruptFileError(`Expected finite GPTQ scales but found ${sd[i]} in kernel_scale`);
  }
  const gi = new Int32Array(K);
  const gd = state.gIdx.data;
  for (let k = 0; k < K; k++) {
    const g = gd[k];
    if (!Number.isInteger(g) || g < 0 || g >= G) {
      throw new CorruptFileError(`Expected g_idx values that are integers in [0, ${G - 1}] but found ${g} at index ${k}`);
    }
    gi[k] = g;
  }
  // Stable sort of the inputs by group.
  const counts = new Int32Array(G + 1);
  for (let k = 0; k < K; k++) counts[gi[k] + 1]++;
  for (let g = 0; g < G; g++) counts[g + 1] += counts[g];
  const perm = new Int32Array(K);
  const next = counts.slice(0, G);
  for (let k = 0; k < K; k++) perm[next[gi[k]]++] = k;
  const gs = state.groupSize === -1 ? Math.max(K, 1) : state.groupSize;
  let contiguous = G === Math.ceil(K / gs) || K === 0;
  for (let k = 0; contiguous && k < K; k++) if (gi[perm[k]] !== Math.floor(k / gs)) contiguous = false;
  let identity = true;
  for (let k = 0; identity && k < K; k++) if (perm[k] !== k) identity = false;

  let scale: Float32Array;
  let zero: Uint8Array;
  let group: number;
  let runPerm: Int32Array | null;
  if (contiguous) {
    group = gs;
    runPerm = identity ? null : perm;
    scale = new Float32Array(G * N);
    zero = new Uint8Array(G * N);
    for (let o = 0; o < N; o++) {
      for (let g = 0; g < G; g++) {
        scale[g * N + o] = sd[o * G + g];
        zero[g * N + o] = zd[o * G + g];
      }
    }
  } else {
    group = 1;
    runPerm = null;
    scale = new Float32Array(K * N);
    zero = new Uint8Array(K * N);
    for (let k = 0; k < K; k++) {
      const g = gi[k];
      for (let o = 0; o < N; o++) {
        scale[k * N + o] = sd[o * G + g];
        zero[k * N + o] = zd[o * G + g];
      }
    }
  }
  const wq = await packGptqRuntime(levels.data, N, K, bits, runPerm);
  return { wq, scale, zero, group, perm: runPerm };
}

/**
 * The runtime form (built on first use). An uncalibrated state (a layer built from a GPTQ policy, before its
 * weights are loaded) runs with its current values, like any layer built from a quantized policy; it cannot be saved.
 */
export function gptqRuntime(state: GptqState): Promise<GptqRuntime> {
  if (!state.runtime) {
    const p = buildRuntime(state);
    state.runtime = p;
    p.catch(() => {
      if (state.runtime === p) state.runtime = null;
    });
  }
  return state.runtime;
}

/** `y[M, out] = x[M, in] @ W_hat + bias` on the fused dequantize-in-register kernel. */
export async function projectGptq(x2d: Tensor<'float32'>, state: GptqState, bias: Float32Array | null): Promise<Tensor<'float32'>> {
  const rt = await gptqRuntime(state);
  let x = x2d;
  if (rt.perm) {
    const [M, K] = x2d.shape;
    const src = x2d.data;
    const dst = new Float32Array(M * K);
    const p = rt.perm;
    for (let i = 0; i < M; i++) {
      const base = i * K;
      for (let k = 0; k < K; k++) dst[base + k] = src[base + p[k]];
    }
    x = new Tensor('float32', [M, K], dst);
  }
  return denseGptq(x, { bits: state.bits, kernel: rt.wq, scale: rt.scale, zero: rt.zero, groupSize: rt.group }, state.cols, bias);
}

/** The dequantized kernel `[in, out]` (Keras `(q − zero[g_idx]) · scale[g_idx]`, float32). */
export async function dequantizeGptq(state: GptqState): Promise<Tensor<'float32'>> {
  const levels = (await gptqLevels(state)).data;
  const { rows: K, cols: N } = state;
  const G = state.scale.shape[1];
  const s = state.scale.data;
  const z = state.zero.data;
  const g = state.gIdx.data;
  const out = new Float32Array(K * N);
  for (let o = 0; o < N; o++) {
    for (let k = 0; k < K; k++) {
      const gi = g[k];
      out[k * N + o] = Math.fround((levels[o * K + k] - z[o * G + gi]) * s[o * G + gi]);
    }
  }
  return new Tensor('float32', [K, N], out);
}

/** `g_idx` as float32 (Keras stores int32 values in a float32 variable; files may hold either). */
export function gIdxAsFloat32(t: Tensor): Tensor {
  if (t instanceof Tensor && t.dtype === 'int32') return new Tensor('float32', t.shape, Float32Array.from(t.data as Int32Array));
  return t;
}

/**
 * Bits and group size of a GPTQ layer: from its GPTQConfig, else from its GPTQ policy (Keras rule, spec §3.2).
 * @internal
 */
export function gptqParams(config: QuantizationConfig | null, policy: unknown, layerName: string): { bits: GptqBits; groupSize: number } {
  if (config instanceof GPTQConfig) return { bits: config.weightBits, groupSize: config.groupSize };
  if (policy instanceof GPTQDTypePolicy) return { bits: policy.weightBits, groupSize: policy.groupSize };
  throw new InvalidArgumentError(
    `Layer '${layerName}': GPTQ needs weight_bits and group_size from a GPTQConfig or a GPTQDTypePolicy ('gptq/<bits>/<group>_from_<source>'), but neither was given`,
  );
}
