/**
 * Device memory for the CUDA backend. A {@link DeviceBuffer} owns one block from the per-device caching
 * allocator: `dispose()` returns it at once; a buffer that is dropped without `dispose()` is returned by a
 * FinalizationRegistry (and, as a last resort, by the native handle's own finalizer).
 * @packageDocumentation
 */
import { DisposedError, InvalidArgumentError, toQkError, UnsupportedError } from '../errors';
import type { NativeCudaBuffer } from '../native/binding';
import { loadNative } from '../native/load';
import { describe } from '../tensor';

const registry = new FinalizationRegistry<NativeCudaBuffer>((handle) => {
  try {
    loadNative().cudaBufferFree(handle);
  } catch {
    /* a copy may still be running; the native finalizer frees it later */
  }
});

function rethrow(err: unknown, site: Error): never {
  throw toQkError(err, site);
}

/**
 * A block of memory on a CUDA device.
 * @example
 * ```ts
 * const buf = DeviceBuffer.alloc(1024, 0);
 * await buf.upload(new Float32Array(256).fill(1));
 * const back = new Float32Array(256);
 * await buf.download(back);
 * buf.dispose();
 * ```
 */
export class DeviceBuffer {
  #handle: NativeCudaBuffer | null;
  /** Size in bytes. */
  readonly byteLength: number;
  /** Device index. */
  readonly device: number;

  private constructor(handle: NativeCudaBuffer, bytes: number, device: number) {
    this.#handle = handle;
    this.byteLength = bytes;
    this.device = device;
    registry.register(this, handle, this);
  }

  /**
   * Allocates `bytes` on `device`.
   * @throws UnsupportedError without CUDA or without that device; OutOfMemoryError when the device is full.
   */
  static alloc(bytes: number, device = 0): DeviceBuffer {
    if (!Number.isSafeInteger(bytes) || bytes < 0) {
      throw new InvalidArgumentError(`Expected a non-negative integer for bytes but received ${describe(bytes)}`);
    }
    if (!Number.isInteger(device) || device < 0) {
      throw new InvalidArgumentError(`Expected a non-negative integer for device but received ${describe(device)}`);
    }
    const native = loadNative();
    if (!native.capabilities().cuda.compiled) {
      throw new UnsupportedError('CUDA is not available: quantkit was built without CUDA');
    }
    const site = new Error();
    try {
      return new DeviceBuffer(native.cudaBufferAlloc(device, bytes), bytes, device);
    } catch (err) {
      return rethrow(err, site);
    }
  }

  /** True until {@link dispose} is called. */
  get alive(): boolean {
    return this.#handle !== null;
  }

  /**
   * The native handle, for the ops that read resident device memory (lib/cuda/resident.ts).
   * @internal
   * @throws DisposedError after {@link dispose}
   */
  _native(): NativeCudaBuffer {
    return this.handle();
  }

  private handle(): NativeCudaBuffer {
    if (this.#handle === null) throw new DisposedError('Expected a live DeviceBuffer but it was disposed');
    return this.#handle;
  }

  /** Copies `host` to the buffer at `byteOffset`. */
  async upload(host: ArrayBufferView, byteOffset = 0): Promise<void> {
    const site = new Error();
    try {
      await loadNative().cudaBufferCopy(this.handle(), true, host, byteOffset);
    } catch (err) {
      rethrow(err, site);
    }
  }

  /** Copies `host.byteLength` bytes at `byteOffset` of the buffer into `host`. */
  async download(host: ArrayBufferView, byteOffset = 0): Promise<void> {
    const site = new Error();
    try {
      await loadNative().cudaBufferCopy(this.handle(), false, host, byteOffset);
    } catch (err) {
      rethrow(err, site);
    }
  }

  /** Returns the memory to the device's cache. Idempotent; refused while a copy is running. */
  dispose(): void {
    if (this.#handle === null) return;
    const site = new Error();
    try {
      loadNative().cudaBufferFree(this.#handle);
    } catch (err) {
      rethrow(err, site);
    }
    registry.unregister(this);
    this.#handle = null;
  }
}

/**
 * Caching-allocator statistics of `device`.
 * @example
 * ```ts
 * const { inUseBytes, cachedBytes } = cudaMemoryStats(0);
 * ```
 */
export function cudaMemoryStats(device = 0): { inUseBytes: number; cachedBytes: number; backendAllocs: number; cacheHits: number } {
  const site = new Error();
  try {
    return loadNative().cudaMemoryStats(device);
  } catch (err) {
    return rethrow(err, site);
  }
}

/**
 * Returns every cached block of `device` to the driver.
 * @example
 * ```ts
 * cudaEmptyCache(0);
 * ```
 */
export function cudaEmptyCache(device = 0): void {
  const site = new Error();
  try {
    loadNative().cudaEmptyCache(device);
  } catch (err) {
    rethrow(err, site);
  }
}
