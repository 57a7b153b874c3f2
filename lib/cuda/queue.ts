/**
 * A queue of device operations on float32 / int32 device arrays, for work that keeps its activations on the device
 * (the Llama decode of `LlamaCausalLM` on a CUDA device). The native queue enqueues every kernel on the JS
 * thread's CUDA stream without waiting (each call checks its buffers first and returns at once); only
 * {@link DeviceQueue.download} waits, on a worker thread, for everything queued so far. With `QK_CUDA_EMULATE=1`
 * the same interface runs on host arrays with the CPU ops (plumbing coverage of the code that drives the queue, not
 * of the CUDA kernels).
 * @packageDocumentation
 */
import type { NativeCudaBuffer } from '../native/binding';
import { loadNative } from '../native/load';
import { attentionDecode, kvCacheWrite, rmsNorm, rope, siluMul } from '../ops/llama';
import { callNative } from '../ops/call';
import { DeviceBuffer } from './device-buffer';
import { cudaEmulated } from './resident';

/** A device array of 4-byte elements (float32, or int32 positions). */
export class QBuf {
  /** @internal */
  constructor(
    readonly length: number,
    /** The device memory (native queue). */
    readonly dev: DeviceBuffer | null,
    /** The emulated device's memory. */
    readonly host: Float32Array | null,
  ) {}

  /** @internal */
  _native(): NativeCudaBuffer {
    return (this.dev as DeviceBuffer)._native();
  }
}

const OP = { rmsnorm: 1, rope: 2, kvWrite: 3, attention: 4, siluMul: 5, add: 6, dense: 7 } as const;

/**
 * Device ops in issue order (see the module description).
 * @example
 * ```ts
 * const q = DeviceQueue.open(0);
 * const x = q.alloc(4); q.upload(x, new Float32Array([1, 2, 3, 4]));
 * await q.add(x, x, 4);
 * const out = new Float32Array(4); await q.download(x, out); // [2, 4, 6, 8]
 * q.free(x);
 * ```
 */
export class DeviceQueue {
  #stream: unknown;

  private constructor(
    readonly device: number,
    readonly emulated: boolean,
    stream: unknown,
  ) {
    this.#stream = stream;
  }

  /** A queue on CUDA device `device` (the emulated one under `QK_CUDA_EMULATE=1`). */
  static open(device: number): DeviceQueue {
    if (cudaEmulated()) return new DeviceQueue(device, true, null);
    return new DeviceQueue(device, false, loadNative().cudaQueueStream(device));
  }

  private n() {
    return loadNative();
  }

  private enqueue(op: number, bufs: Array<QBuf | NativeCudaBuffer | null>, nums: number[]): void {
    const handles = bufs.map((b) => (b instanceof QBuf ? b._native() : b));
    this.n().cudaEnqueue(this.#stream, op, handles, Float64Array.from(nums));
  }

  /** `n` elements of device memory. */
  alloc(n: number): QBuf {
    if (this.emulated) return new QBuf(n, null, new Float32Array(n));
    return new QBuf(n, DeviceBuffer.alloc(n * 4, this.device), null);
  }

  /** Returns the memory (after {@link download} has waited for the work that used it). */
  free(b: QBuf): void {
    b.dev?.dispose();
  }

  /** host -> b (from element 0); `host` may be reused at once. */
  upload(b: QBuf, host: Float32Array | Int32Array): void {
    if (b.host) {
      new Uint8Array(b.host.buffer, b.host.byteOffset, b.host.byteLength).set(new Uint8Array(host.buffer, host.byteOffset, host.byteLength));
      return;
    }
    this.n().cudaQueueUpload(this.#stream, b._native(), host);
  }

  /** Waits for everything queued; with `src`, then copies its first `host.length` elements into `host`. */
  async download(src: QBuf | null, host: Float32Array | null): Promise<void> {
    if (this.emulated) {
      if (src && host) host.set((src.host as Float32Array).subarray(0, host.length));
      return;
    }
    await callNative((n) => n.cudaQueueDownload(this.#stream, src ? src._native() : null, host));
  }

  /** y[rows, n] = rmsnorm(x) * w. */
  async rmsnorm(x: QBuf, w: QBuf, rows: number, n: number, eps: number, y: QBuf): Promise<void> {
    if (this.emulated) {
      await rmsNorm((x.host as Float32Array).subarray(0, rows * n), (w.host as Float32Array).subarray(0, n), eps, { out: (y.host as Float32Array).subarray(0, rows * n) });
      return;
    }
    this.enqueue(OP.rmsnorm, [x, w, y], [rows, n, eps]);
  }

  /** RoPE in place on x [rows, heads, headDim] at the int32 positions [rows]. */
  async rope(x: QBuf, positions: QBuf, rows: number, heads: number, headDim: number, theta: number): Promise<void> {
    if (this.emulated) {
      const pos = new Int32Array((positions.host as Float32Array).buffer, 0, rows);
      await rope((x.host as Float32Array).subarray(0, rows * heads * headDim), pos, { headDim, theta });
      return;
    }
    this.enqueue(OP.rope, [x, positions], [rows, heads, headDim, theta]);
  }

  /** Writes k, v [T, kvHeads, headDim] into the caches [kvHeads, maxSeq, headDim] at the positions. */
  async kvWrite(k: QBuf, v: QBuf, positions: QBuf, T: number, kvHeads: number, headDim: number, maxSeq: number, kc: QBuf, vc: QBuf): Promise<void> {
    if (this.emulated) {
      const pos = new Int32Array((positions.host as Float32Array).buffer, 0, T);
      const n = T * kvHeads * headDim;
      await kvCacheWrite({ k: kc.host as Float32Array, v: vc.host as Float32Array, kvHeads, maxSeq, headDim }, (k.host as Float32Array).subarray(0, n), (v.host as Float32Array).subarray(0, n), pos);
      return;
    }
    this.enqueue(OP.kvWrite, [k, v, positions, kc, vc], [T, kvHeads, headDim, maxSeq]);
  }

  /** Causal attention of q [T, heads, headDim] (rows at pos0 ..) over the caches; scratch: T * heads * (pos0 + T). */
  async attention(q: QBuf, kc: QBuf, vc: QBuf, out: QBuf, scratch: QBuf, T: number, heads: number, kvHeads: number, headDim: number, maxSeq: number, pos0: number): Promise<void> {
    if (this.emulated) {
      const n = T * heads * headDim;
      await attentionDecode((q.host as Float32Array).subarray(0, n), { k: kc.host as Float32Array, v: vc.host as Float32Array, kvHeads, maxSeq, headDim }, { heads, startPos: pos0, out: (out.host as Float32Array).subarray(0, n) });
      return;
    }
    this.enqueue(OP.attention, [q, kc, vc, out, scratch], [T, heads, kvHeads, headDim, maxSeq, pos0]);
  }

  /** out = silu(gate) * up over n elements (out may be gate). */
  async siluMul(gate: QBuf, up: QBuf, out: QBuf, n: number): Promise<void> {
    if (this.emulated) {
      await siluMul((gate.host as Float32Array).subarray(0, n), (up.host as Float32Array).subarray(0, n), { out: (out.host as Float32Array).subarray(0, n) });
      return;
    }
    this.enqueue(OP.siluMul, [gate, up, out], [n]);
  }

  /** y += x over n elements. */
  async add(y: QBuf, x: QBuf, n: number): Promise<void> {
    if (this.emulated) {
      const yd = y.host as Float32Array;
      const xd = x.host as Float32Array;
      for (let i = 0; i < n; i++) yd[i] += xd[i];
      return;
    }
    this.enqueue(OP.add, [y, x], [n]);
  }

  /**
   * A Dense kernel with resident weights (the kinds of `cudaDenseResident`): y [M, N] = x [M, K] @ W + bias.
   * @internal used by ResidentProjection._enqueue
   */
  dense(kind: number, x: QBuf, M: number, N: number, K: number, w: DeviceBuffer, scale: DeviceBuffer | null, zero: DeviceBuffer | null, bias: DeviceBuffer | null, params: Float64Array, y: QBuf): void {
    this.enqueue(OP.dense, [x, w._native(), scale?._native() ?? null, zero?._native() ?? null, bias?._native() ?? null, y], [kind, M, N, K, params[0], params[1], params[2]]);
  }
}
