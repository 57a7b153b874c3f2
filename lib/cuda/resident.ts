/**
 * Device-resident weights of Dense-like projections (`Layer.to('cuda')` / `Model.to('cuda')`).
 *
 * A {@link ResidentProjection} holds one projection's weights in device memory ({@link DeviceBuffer}s from the
 * caching allocator), in the layout the CUDA kernel of its storage format reads:
 *
 * | storage format                      | on the device                                    | kernel                       |
 * | ----------------------------------- | ------------------------------------------------ | ---------------------------- |
 * | float32                             | float32 [K, N] as is                             | SIMT tiled GEMM (gemm_f32)   |
 * | int8 W8A8 (abs-max activations)     | int8 repacked to NK64 once, at upload            | int8 Tensor-Core GEMM        |
 * | int4 per-channel + activations W4A8 | unpacked to int8, NK64 (same kernel as W8A8)     | int8 Tensor-Core GEMM        |
 * | int8 weight-only                    | uint8 levels q + 128, zero 128, scale 1 / s      | fused dequantize GEMM (8-bit)|
 * | int4 per-channel weight-only        | packed nibbles, one group of K rows, 1 / s       | fused dequantize GEMM        |
 * | int4 grouped                        | packed nibbles, scale / zero [G, N]              | fused dequantize GEMM        |
 * | float8 e4m3 (sm_89+)                | e4m3 codes repacked to NK64                      | fp8 Tensor-Core GEMM         |
 * | float8 below sm_89                  | dequantized float32 (codes x scale)              | SIMT tiled GEMM              |
 * | GPTQ 2/3/4/8-bit                    | the runtime layout (rows in act order)           | fused dequantize GEMM        |
 *
 * {@link ResidentProjection.forward} takes host activations: it uploads x, runs the kernel on the worker's stream
 * with the resident weights and downloads y (one PCIe round trip per projection). Code that keeps its activations
 * on the device (the Llama decode, lib/models/llama-device.ts) enqueues the same kernels on a DeviceQueue instead.
 *
 * `QK_CUDA_EMULATE=1` (tests only) replaces the device by host memory and the CPU kernels: uploads copy the
 * weights, forwards run the CPU ops on the copies. It exercises the TypeScript plumbing of `to('cuda')` →
 * `predict` / `generate` → `to('cpu')` on machines without a GPU; it verifies no CUDA kernel.
 * @packageDocumentation
 */
import { InvalidArgumentError, UnsupportedError } from '../errors';
import { cudaIndex, GptqDevice } from '../gptq/matrix';
import type { GptqBits } from '../layers/gptq-core';
import { loadNative } from '../native/load';
import { callNative } from '../ops/call';
import { ActivationQuant, denseForward, DenseWeights } from '../ops/dense';
import { denseGptq } from '../ops/dense-gptq';
import { unpackInt4 } from '../ops/pack';
import { Tensor, describe } from '../tensor';
import { DeviceBuffer } from './device-buffer';
import type { DeviceQueue, QBuf } from './queue';

/** Where a layer's weights live: 'cpu', or a CUDA device ('cuda' = 'cuda:0', 'cuda:1', ...). */
export type Device = GptqDevice;

/**
 * True when `QK_CUDA_EMULATE=1`: CUDA devices are emulated with host memory and the CPU kernels (plumbing tests).
 * @example
 * ```ts
 * if (cudaEmulated()) console.log('device ops run on the CPU');
 * ```
 */
export function cudaEmulated(): boolean {
  return process.env.QK_CUDA_EMULATE === '1';
}

/**
 * Parses a device string: null for 'cpu', else the CUDA device index.
 * @throws InvalidArgumentError for anything but 'cpu', 'cuda' or 'cuda:<index>'
 * @example
 * ```ts
 * parseDevice('cuda:1'); // 1
 * parseDevice('cpu');    // null
 * ```
 */
export function parseDevice(device: unknown): number | null {
  if (device === undefined) {
    throw new InvalidArgumentError("Expected 'cpu', 'cuda' or 'cuda:<index>' for device but received undefined");
  }
  const i = cudaIndex(device as GptqDevice);
  return i === undefined ? null : i;
}

/**
 * The canonical name of a device index ('cpu' for null, else 'cuda:<index>').
 * @example
 * ```ts
 * deviceName(0); // 'cuda:0'
 * ```
 */
export function deviceName(index: number | null): string {
  return index === null ? 'cpu' : `cuda:${index}`;
}

/**
 * Throws UnsupportedError (`QK_UNSUPPORTED`) when CUDA device `index` cannot hold weights in this process, saying
 * why (built without CUDA, no driver, no device, no such device, unsupported GPU) and how to fix it.
 * @example
 * ```ts
 * checkCudaDevice(0); // throws QK_UNSUPPORTED on a machine without a GPU
 * ```
 */
export function checkCudaDevice(index: number): void {
  if (cudaEmulated()) {
    if (index !== 0) throw new UnsupportedError(`CUDA device ${index} is not available: QK_CUDA_EMULATE=1 emulates one device (cuda:0)`);
    return;
  }
  const c = loadNative().capabilities().cuda;
  if (!c.compiled) {
    throw new UnsupportedError(
      `CUDA device ${index} is not available: quantkit was built without CUDA (nvcc not found or QK_CUDA=off). Install the CUDA toolkit (nvcc) and rebuild with QK_CUDA=on npm run build:native, or keep the model on 'cpu'`,
    );
  }
  if (c.devices.length === 0) {
    const why = c.error ? `no usable CUDA driver or device (${c.error})` : 'no CUDA device found';
    throw new UnsupportedError(
      `CUDA device ${index} is not available: ${why}. Install an NVIDIA driver that supports this CUDA runtime and check CUDA_VISIBLE_DEVICES, or keep the model on 'cpu'`,
    );
  }
  const dev = c.devices.find((d) => d.index === index);
  if (!dev) {
    throw new UnsupportedError(`CUDA device ${index} is not available: ${c.devices.length} CUDA device(s) found (cuda:0 .. cuda:${c.devices.length - 1})`);
  }
  if (!dev.supported) {
    throw new UnsupportedError(
      `CUDA device ${index} (${dev.name}, compute capability ${dev.computeCapability}) is not supported by this build (compiled for ${c.archs.join(' ')}; compute capability 7.5 or newer is needed)`,
    );
  }
}

/** One projection's weights on the host, in a storage format of quantkit (Keras layouts, `[K, N]` logically). */
export type ResidentSource =
  | { format: 'float32'; kernel: Float32Array }
  | { format: 'int8'; kernel: Int8Array; scale: Float32Array; activation: ActivationQuant | null }
  | { format: 'int4'; kernel: Int8Array | Uint8Array; scale: Float32Array; activation: ActivationQuant | null }
  | { format: 'int4-grouped'; kernel: Int8Array | Uint8Array; scale: Float32Array; zero: Int8Array; groupSize: number }
  | { format: 'float8'; kernel: Uint8Array; scale: number; inputScale: number | null }
  | { format: 'gptq'; bits: GptqBits; kernel: Uint8Array; scale: Float32Array; zero: Uint8Array; groupSize: number; perm: Int32Array | null };

const KIND = { f32: 0, w8a8: 1, fp8: 2, wq: 3 } as const;
const FP8_MMA = 4; // qk_cuda.h QK_CUDA_FEATURE_FP8_MMA

function copyOf<T extends Float32Array | Int8Array | Uint8Array | Int32Array>(a: T): T {
  return a.slice() as T;
}

function reciprocal(s: Float32Array): Float32Array {
  const r = new Float32Array(s.length);
  for (let i = 0; i < s.length; i++) r[i] = 1 / s[i];
  return r;
}

/** Dynamic float8 activation scale, as the CPU forward computes it (`max|x| / 448`, 1 for an all-zero input). */
function float8Scale(x: Float32Array): number {
  let amax = 0;
  for (let i = 0; i < x.length; i++) {
    const a = Math.abs(x[i]);
    if (a > amax) amax = a;
  }
  return amax > 0 && Number.isFinite(amax) ? amax / 448 : 1;
}

function permuteColumns(x: Float32Array, M: number, K: number, perm: Int32Array): Float32Array {
  const out = new Float32Array(M * K);
  for (let i = 0; i < M; i++) {
    const b = i * K;
    for (let k = 0; k < K; k++) out[b + k] = x[b + perm[k]];
  }
  return out;
}

interface NativePlan {
  kind: number;
  w: DeviceBuffer;
  scale: DeviceBuffer | null;
  zero: DeviceBuffer | null;
  bias: DeviceBuffer | null;
  params: Float64Array;
  /** float8: the activation scale per call (null = dynamic). */
  fp8InputScale: number | null | undefined;
  perm: Int32Array | null;
}

/**
 * A Dense-like projection `y[M, N] = x[M, K] @ W + bias` whose weights live on a CUDA device (or, with
 * `QK_CUDA_EMULATE=1`, in an emulated device's host memory). Activations are host arrays: {@link forward}
 * uploads x, runs the kernel with the resident weights on the worker's stream and downloads y.
 * @example
 * ```ts
 * const p = await ResidentProjection.upload({ format: 'float32', kernel: w }, K, N, bias, 0);
 * const y = await p.forward(x, M); // Float32Array [M, N]
 * p.dispose();
 * ```
 */
export class ResidentProjection {
  #plan: NativePlan | null;
  #emulated: { source: ResidentSource; bias: Float32Array | null } | null;
  #buffers: DeviceBuffer[];

  private constructor(
    readonly device: number,
    readonly K: number,
    readonly N: number,
    plan: NativePlan | null,
    emulated: { source: ResidentSource; bias: Float32Array | null } | null,
    buffers: DeviceBuffer[],
  ) {
    this.#plan = plan;
    this.#emulated = emulated;
    this.#buffers = buffers;
  }

  /** Bytes of device memory held (the emulated device counts its host copies). */
  get byteLength(): number {
    if (this.#emulated) {
      const s = this.#emulated.source as unknown as Record<string, unknown>;
      let n = this.#emulated.bias?.byteLength ?? 0;
      for (const v of Object.values(s)) if (ArrayBuffer.isView(v)) n += v.byteLength;
      return n;
    }
    return this.#buffers.reduce((a, b) => a + b.byteLength, 0);
  }

  /** True until {@link dispose}. */
  get alive(): boolean {
    return this.#plan !== null || this.#emulated !== null;
  }

  /**
   * Copies `source` (and `bias`) to CUDA device `device` in the layout of its kernel (see the module table).
   * @throws UnsupportedError without a usable device; OutOfMemoryError when the device is full (nothing stays
   *   allocated then)
   */
  static async upload(source: ResidentSource, K: number, N: number, bias: Float32Array | null, device: number): Promise<ResidentProjection> {
    checkCudaDevice(device);
    if (cudaEmulated()) {
      const s = { ...source } as Record<string, unknown>;
      for (const [k, v] of Object.entries(s)) if (ArrayBuffer.isView(v)) s[k] = copyOf(v as Float32Array);
      return new ResidentProjection(device, K, N, null, { source: s as ResidentSource, bias: bias ? copyOf(bias) : null }, []);
    }
    const buffers: DeviceBuffer[] = [];
    const put = async (host: ArrayBufferView): Promise<DeviceBuffer> => {
      const b = DeviceBuffer.alloc(host.byteLength, device);
      buffers.push(b);
      await b.upload(host);
      return b;
    };
    const nk64 = async (bytes: Int8Array | Uint8Array): Promise<DeviceBuffer> => {
      const tmp = DeviceBuffer.alloc(bytes.byteLength, device);
      try {
        await tmp.upload(bytes);
        const dst = DeviceBuffer.alloc(N * Math.ceil(K / 64) * 64, device);
        buffers.push(dst);
        await callNative((n) => n.cudaRepackNk64(tmp._native(), K, N, dst._native()));
        return dst;
      } finally {
        tmp.dispose();
      }
    };
    const params = new Float64Array(8);
    try {
      const b = bias ? await put(bias) : null;
      let plan: NativePlan;
      const base = { scale: null, zero: null, bias: b, params, fp8InputScale: undefined, perm: null };
      switch (source.format) {
        case 'float32':
          plan = { ...base, kind: KIND.f32, w: await put(source.kernel) };
          break;
        case 'int8':
        case 'int4': {
          if (source.activation) {
            // W8A8, and W4A8 as W8A8 over the unpacked int4 levels (the same integer products)
            const q =
              source.format === 'int8'
                ? source.kernel
                : ((await unpackInt4(new Tensor('int8', [K, Math.ceil(N / 2)], source.kernel as Int8Array), N, 1, 'int8')).data as Int8Array);
            params.set([source.activation.valueRange[0], source.activation.valueRange[1], source.activation.epsilon]);
            plan = { ...base, kind: KIND.w8a8, w: await nk64(q), scale: await put(source.scale) };
          } else if (source.format === 'int8') {
            const levels = new Uint8Array(source.kernel.length);
            for (let i = 0; i < levels.length; i++) levels[i] = (source.kernel[i] + 128) & 255;
            params.set([8, 0, Math.max(1, K)]);
            plan = { ...base, kind: KIND.wq, w: await put(levels), scale: await put(reciprocal(source.scale)), zero: await put(new Uint8Array(N).fill(128)) };
          } else {
            params.set([4, 1, Math.max(1, K)]);
            plan = { ...base, kind: KIND.wq, w: await put(source.kernel), scale: await put(reciprocal(source.scale)), zero: await put(new Uint8Array(N)) };
          }
          break;
        }
        case 'int4-grouped':
          params.set([4, 1, source.groupSize]);
          plan = { ...base, kind: KIND.wq, w: await put(source.kernel), scale: await put(source.scale), zero: await put(source.zero) };
          break;
        case 'float8':
          if (loadNative().cudaDeviceHas(device, FP8_MMA)) {
            plan = { ...base, kind: KIND.fp8, w: await nk64(source.kernel), fp8InputScale: source.inputScale };
            params[1] = source.scale;
          } else {
            const f = new Tensor('float8_e4m3fn', [K, N], source.kernel).toFloat32().data as Float32Array;
            for (let i = 0; i < f.length; i++) f[i] = Math.fround(f[i] * source.scale);
            plan = { ...base, kind: KIND.f32, w: await put(f) };
          }
          break;
        case 'gptq':
          params.set([source.bits, 0, source.groupSize < 1 ? Math.max(1, K) : source.groupSize]);
          plan = { ...base, kind: KIND.wq, w: await put(source.kernel), scale: await put(source.scale), zero: await put(source.zero), perm: source.perm ? copyOf(source.perm) : null };
          break;
        default:
          throw new InvalidArgumentError(`Expected a known weights format but received ${describe((source as { format: unknown }).format)}`);
      }
      return new ResidentProjection(device, K, N, plan, null, buffers);
    } catch (err) {
      for (const b of buffers) b.dispose();
      throw err;
    }
  }

  /**
   * `y = x @ W + bias` for `x` float32 `[M, K]` (host memory); resolves to y `[M, N]` on the host.
   * @throws DisposedError after {@link dispose}
   */
  async forward(x: Float32Array, M: number): Promise<Float32Array> {
    const { K, N } = this;
    if (x.length !== M * K) throw new InvalidArgumentError(`Expected ${M * K} values in x ([${M}, ${K}]) but received ${x.length}`);
    if (this.#emulated) return emulatedForward(this.#emulated.source, this.#emulated.bias, x, M, K, N);
    const p = this.#plan;
    if (!p) throw new InvalidArgumentError('Expected live device weights but they were released (to(\'cpu\') or dispose())');
    let xd = x;
    if (p.perm) xd = permuteColumns(x, M, K, p.perm);
    let params = p.params;
    if (p.kind === KIND.fp8) {
      params = p.params.slice();
      params[0] = p.fp8InputScale ?? float8Scale(x);
    }
    const y = new Float32Array(M * N);
    await callNative((n) =>
      n.cudaDenseResident(this.device, p.kind, xd, M, N, K, p.w._native(), p.scale?._native() ?? null, p.zero?._native() ?? null, null,
        p.bias?._native() ?? null, params, y));
    return y;
  }

  /**
   * True when this projection can run on a {@link DeviceQueue} with its input already on the device (no host-side
   * step: not act-order GPTQ, whose inputs are permuted on the host, and not float8 with a dynamic activation
   * scale, which is computed from x on the host).
   * @internal
   */
  _queueable(): boolean {
    if (this.#emulated) return true;
    const p = this.#plan;
    return p !== null && p.perm === null && !(p.kind === KIND.fp8 && p.fp8InputScale === null);
  }

  /**
   * Enqueues `y [M, N] = x [M, K] @ W + bias` on `q` (device arrays); see {@link ResidentProjection._queueable}.
   * @internal
   */
  async _enqueue(q: DeviceQueue, x: QBuf, M: number, y: QBuf): Promise<void> {
    const { K, N } = this;
    if (this.#emulated) {
      const out = await emulatedForward(this.#emulated.source, this.#emulated.bias, (x.host as Float32Array).slice(0, M * K), M, K, N);
      (y.host as Float32Array).set(out);
      return;
    }
    const p = this.#plan;
    if (!p || !this._queueable()) throw new InvalidArgumentError('Expected device weights that run on a device queue (see _queueable)');
    let params = p.params;
    if (p.kind === KIND.fp8) {
      params = p.params.slice();
      params[0] = p.fp8InputScale as number;
    }
    q.dense(p.kind, x, M, N, K, p.w, p.scale, p.zero, p.bias, params, y);
  }

  /** Frees the device memory (idempotent). Buffers still read by a running forward are freed by their finalizers. */
  dispose(): void {
    this.#plan = null;
    this.#emulated = null;
    for (const b of this.#buffers) {
      try {
        b.dispose();
      } catch {
        /* a forward still reads it: the FinalizationRegistry frees it later */
      }
    }
    this.#buffers = [];
  }
}

/** The emulated device: the CPU kernels on the uploaded copies. */
async function emulatedForward(s: ResidentSource, bias: Float32Array | null, x: Float32Array, M: number, K: number, N: number): Promise<Float32Array> {
  const xt = new Tensor('float32', [M, K], x);
  if (s.format === 'gptq') {
    const xp = s.perm ? new Tensor('float32', [M, K], permuteColumns(x, M, K, s.perm)) : xt;
    return (await denseGptq(xp, { bits: s.bits, kernel: s.kernel, scale: s.scale, zero: s.zero, groupSize: s.groupSize }, N, bias)).data;
  }
  let w: DenseWeights;
  let activation: ActivationQuant | null = null;
  let inputScale: number | undefined;
  switch (s.format) {
    case 'float32':
      w = s;
      break;
    case 'int8':
    case 'int4':
      w = { format: s.format, kernel: s.kernel as Int8Array, scale: s.scale };
      activation = s.activation;
      break;
    case 'int4-grouped':
      w = s;
      break;
    default:
      w = { format: 'float8', kernel: s.kernel, scale: s.scale };
      inputScale = s.inputScale ?? undefined;
  }
  return (await denseForward(xt, w, N, bias, { activation, inputScale })).data;
}
