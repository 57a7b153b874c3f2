/**
 * The typed description of everything the native addon (`quantkit.node`) exports. Internal: the public API
 * wraps these with validation and error mapping (`lib/ops/`). Ops return Promises that settle when the work,
 * run on a worker thread, is done; inputs are zero-copy and outputs are written into caller-provided arrays.
 * @internal
 * @packageDocumentation
 */

/** ISA names accepted by the optional `isa` argument (a testing hook; default = the active ISA). */
export type IsaName = 'ref' | 'avx2' | 'avx512';

/** Conversion kinds of `convert` / `convertSync`. */
export type ConversionKind =
  | 'f32_to_f16'
  | 'f16_to_f32'
  | 'f32_to_bf16'
  | 'bf16_to_f32'
  | 'f32_to_e4m3fn'
  | 'e4m3fn_to_f32'
  | 'f32_to_e5m2'
  | 'e5m2_to_f32';

/** CUDA facts reported by the addon. */
export interface NativeCudaInfo {
  compiled: boolean;
  archs: string[];
  runtimeVersion?: number;
  driverVersion?: number;
  error: string | null;
  devices: Array<{
    index: number;
    name: string;
    computeCapability: string;
    totalMemory: number;
    multiProcessorCount: number;
    /** True when this build has code the device can run (compute capability 7.5+). */
    supported: boolean;
  }>;
}

/** What `capabilities()` returns natively. */
export interface NativeCapabilities {
  isa: IsaName;
  bestIsa: IsaName;
  isasAvailable: IsaName[];
  isasCompiled: IsaName[];
  warning: string | null;
  threads: number;
  hardwareConcurrency: number;
  cpuFeatures: Record<string, boolean>;
  builtBy: string;
  napiVersion: number;
  cuda: NativeCudaInfo;
}

/** Bytes of an int8 or uint8 tensor. */
export type ByteArray = Int8Array | Uint8Array;

/** The addon's exports. */
export interface NativeBinding {
  capabilities(): NativeCapabilities;
  dtypeTable(): Array<{ id: number; name: string; bits: number; container: string }>;
  kernelImpls(op: string): IsaName[];

  absmax(x: Float32Array, outer: number, len: number, inner: number, out: Float32Array, isa?: IsaName): Promise<void>;
  absmaxQuantize(
    x: Float32Array,
    outer: number,
    len: number,
    inner: number,
    lo: number,
    hi: number,
    eps: number,
    q: Int8Array,
    scale: Float32Array,
    isa?: IsaName,
  ): Promise<void>;
  packInt4(src: ByteArray, outer: number, len: number, inner: number, dst: ByteArray, isa?: IsaName): Promise<void>;
  unpackInt4(
    src: ByteArray,
    outer: number,
    len: number,
    inner: number,
    signed: boolean,
    dst: ByteArray,
    isa?: IsaName,
  ): Promise<void>;
  packInt2(src: ByteArray, outer: number, len: number, inner: number, dst: ByteArray, isa?: IsaName): Promise<void>;
  unpackInt2(
    src: ByteArray,
    outer: number,
    len: number,
    inner: number,
    signed: boolean,
    dst: ByteArray,
    isa?: IsaName,
  ): Promise<void>;
  convert(kind: ConversionKind, src: ArrayBufferView, dst: ArrayBufferView, isa?: IsaName): Promise<void>;
  convertSync(kind: ConversionKind, src: ArrayBufferView, dst: ArrayBufferView, isa?: IsaName): void;
  /**
   * `packed` (sgemm, igemm, denseF32, denseW8A8): an optional buffer from packWeights for the same K, N (validated;
   * a bad one -> QK_INVALID_ARGUMENT, another K/N -> QK_SHAPE_MISMATCH). Used for M > 16 (fp32) / M >= 2 (int8) when
   * the call's ISA reads its layout; otherwise the Keras-layout weights given as well are read.
   */
  sgemm(M: number, N: number, K: number, a: Float32Array, b: Float32Array, out: Float32Array, isa?: IsaName, packed?: ArrayBuffer | null): Promise<void>;
  igemm(M: number, N: number, K: number, a: Int8Array, b: Int8Array, out: Int32Array, isa?: IsaName, packed?: ArrayBuffer | null): Promise<void>;
  /** Bytes of the buffer packWeights fills for (kind, K, N) on `isa` (default: active); 0 = no packed layout there. */
  packWeightsBytes(kind: 'f32' | 'w8a8', K: number, N: number, isa?: IsaName): number;
  /** Packs w [K, N] into dst (packWeightsBytes bytes): payload first, the validated header last. */
  packWeights(kind: 'f32' | 'w8a8', K: number, N: number, w: Float32Array | Int8Array, dst: ArrayBuffer, isa?: IsaName): Promise<void>;

  denseF32(
    M: number, N: number, K: number, x: Float32Array, w: Float32Array, bias: Float32Array | null, y: Float32Array, isa?: IsaName,
    packed?: ArrayBuffer | null,
  ): Promise<void>;
  denseW8A8(
    M: number, N: number, K: number, x: Float32Array, w: Int8Array, wScale: Float32Array, bias: Float32Array | null,
    actLo: number, actHi: number, actEps: number, y: Float32Array, isa?: IsaName, packed?: ArrayBuffer | null,
  ): Promise<void>;
  denseW4A8(
    M: number, N: number, K: number, x: Float32Array, w4: ByteArray, wScale: Float32Array, bias: Float32Array | null,
    actLo: number, actHi: number, actEps: number, y: Float32Array, isa?: IsaName,
  ): Promise<void>;
  denseW8(M: number, N: number, K: number, x: Float32Array, w: Int8Array, wScale: Float32Array, bias: Float32Array | null, y: Float32Array, isa?: IsaName): Promise<void>;
  denseW4(M: number, N: number, K: number, x: Float32Array, w4: ByteArray, wScale: Float32Array, bias: Float32Array | null, y: Float32Array, isa?: IsaName): Promise<void>;
  denseW4G(
    M: number, N: number, K: number, x: Float32Array, w4: ByteArray, scale: Float32Array, zero: Int8Array, group: number,
    bias: Float32Array | null, y: Float32Array, isa?: IsaName,
  ): Promise<void>;
  denseFp8(
    M: number, N: number, K: number, x: Float32Array, xScale: number, w8: Uint8Array, wScale: number, bias: Float32Array | null,
    y: Float32Array, isa?: IsaName,
  ): Promise<void>;

  /** GPTQ calibration core (csrc/napi/gptq_ops.cc). Buffers are mutated by the worker. */
  gptqHessianAccumulate(X: Float32Array, rows: number, cols: number, H: Float64Array, count: Float64Array, isa?: IsaName, device?: number): Promise<void>;
  gptqHessianFinalize(H: Float64Array, cols: number, count: Float64Array, isa?: IsaName): Promise<void>;
  gptqQuantizeMatrix(
    W: Float32Array, inDim: number, outDim: number, H: Float64Array, bits: number, groupSize: number, symmetric: boolean,
    perChannel: boolean, actOrder: boolean, damp: number, maxDampTries: number, zeroDeadInputs: boolean,
    q: Uint8Array, scale: Float32Array, zero: Uint8Array, gIdx: Int32Array, wHat: Float32Array | null, result: Float64Array,
    isa?: IsaName, device?: number,
  ): Promise<void>;
  gptqCholeskyLower(A: Float64Array, n: number, isa?: IsaName): Promise<void>;
  gptqTriangularInverseLower(A: Float64Array, n: number, isa?: IsaName): Promise<void>;
  gptqCholeskyInverseUpper(H: Float64Array, n: number, damp: number, maxTries: number, result: Float64Array, isa?: IsaName): Promise<void>;

  /** GPTQ inference over the runtime layout (csrc/napi/gptq_dense_ops.cc); rowBytes = ceil(bits * N / 8). */
  denseGptq(
    M: number, N: number, K: number, x: Float32Array, wq: Uint8Array, bits: number, scale: Float32Array, zero: Uint8Array,
    group: number, bias: Float32Array | null, y: Float32Array, isa?: IsaName,
  ): Promise<void>;
  gptqRuntimePack(q: Uint8Array, N: number, K: number, perm: Int32Array | null, bits: number, dst: Uint8Array, isa?: IsaName): Promise<void>;
  gptqRuntimeUnpack(src: Uint8Array, N: number, K: number, bits: number, dst: Uint8Array, isa?: IsaName): Promise<void>;
  /** The int8-compute path of int4 grouped (kerasSigned, bits 4) and GPTQ weights (qk/lowbit_a8.h). */
  denseLowbitA8(
    M: number, N: number, K: number, x: Float32Array, w: ByteArray, bits: number, kerasSigned: boolean, scale: Float32Array,
    zero: Int8Array | Uint8Array, group: number, bias: Float32Array | null, y: Float32Array, isa?: IsaName,
  ): Promise<void>;
  /** Whether `isa`'s denseLowbitA8 is the fast VNNI variant (chosen automatically for M >= 16). */
  lowbitA8Fast(isa?: IsaName): boolean;
  /** Bytes of the packed-once decode GEMV layout (csrc/napi/lowbit_pack_ops.cc; kind 1 int4 grouped, 2 GPTQ, 3 int4 per-channel). */
  lowbitPackBytes(kind: number, bits: number, K: number, N: number, group: number): number;
  /** Packs int4 / GPTQ weights once into the decode GEMV layout (qk/lowbit_pack.h). */
  lowbitPack(
    kind: number, bits: number, K: number, N: number, group: number, w: ByteArray, scale: Float32Array, zero: Int8Array | Uint8Array | null,
    dst: Uint8Array,
  ): Promise<void>;
  /** The decode GEMV over a packed buffer (int8 activations per row; bit-exact with denseLowbitA8 / denseW4A8). */
  denseLowbitPacked(
    M: number, N: number, K: number, x: Float32Array, packed: Uint8Array, bias: Float32Array | null, actLo: number, actHi: number,
    actEps: number, y: Float32Array, isa?: IsaName,
  ): Promise<void>;

  /**
   * Llama float path (csrc/napi/llama_ops.cc; contracts in qk/kernels.h QK_DECLARE_LLAMA_KERNELS). float32,
   * row-major; the KV caches are [kvHeads, maxSeq, headDim]; rope, softmaxRows work in place.
   */
  rmsnorm(x: Float32Array, weight: Float32Array, rows: number, n: number, eps: number, y: Float32Array, isa?: IsaName): Promise<void>;
  rope(x: Float32Array, rows: number, heads: number, headDim: number, positions: Int32Array, theta: number, isa?: IsaName): Promise<void>;
  softmaxRows(x: Float32Array, rows: number, n: number, isa?: IsaName): Promise<void>;
  siluMul(gate: Float32Array, up: Float32Array, out: Float32Array, isa?: IsaName): Promise<void>;
  kvCacheWrite(
    k: Float32Array, v: Float32Array, T: number, kvHeads: number, headDim: number, positions: Int32Array,
    kCache: Float32Array, vCache: Float32Array, maxSeq: number, isa?: IsaName,
  ): Promise<void>;
  attentionDecode(
    q: Float32Array, T: number, heads: number, kvHeads: number, headDim: number, kCache: Float32Array,
    vCache: Float32Array, maxSeq: number, pos0: number, out: Float32Array, isa?: IsaName,
  ): Promise<void>;

  cudaAbsmax(device: number, x: Float32Array, outer: number, len: number, inner: number, out: Float32Array): Promise<void>;
  cudaAbsmaxQuantize(
    device: number,
    x: Float32Array,
    outer: number,
    len: number,
    inner: number,
    lo: number,
    hi: number,
    eps: number,
    q: Int8Array,
    scale: Float32Array,
  ): Promise<void>;

  // CUDA dense ops, packing and fp8 (lib/ops/cuda-dense.ts), device buffers (lib/cuda/device-buffer.ts).
  cudaDenseW8A8(
    device: number, x: Float32Array, M: number, N: number, K: number, w: Int8Array, wScale: Float32Array,
    bias: Float32Array | null, lo: number, hi: number, eps: number, y: Float32Array,
  ): Promise<void>;
  cudaDenseFp8(
    device: number, x: Float32Array, M: number, N: number, K: number, xScale: number, w8: Uint8Array, wScale: number,
    bias: Float32Array | null, y: Float32Array,
  ): Promise<void>;
  cudaDenseWq(
    device: number, dtype: 0 | 1 | 2, x: Float32Array | Uint16Array, M: number, N: number, K: number, wq: Uint8Array,
    bits: number, isSigned: boolean, scale: Float32Array, zero: Uint8Array | Int8Array, group: number,
    bias: Float32Array | null, y: Float32Array | Uint16Array, gIdx?: Int32Array | null, path?: 0 | 1 | 2,
  ): Promise<void>;
  cudaLlama(
    device: number, op: 0 | 1 | 2 | 3 | 4, a: Float32Array, b: Float32Array | null, c: Float32Array | null,
    positions: Int32Array | null, dims: Float64Array, eps: number, theta: number, out: Float32Array,
  ): Promise<void>;
  cudaPack(device: number, op: number, src: Uint8Array | Int8Array, outer: number, len: number, inner: number, dst: Uint8Array | Int8Array): Promise<void>;
  cudaFp8(device: number, toFp8: boolean, fmt: 0 | 1, src: Float32Array | Uint8Array, dst: Uint8Array | Float32Array): Promise<void>;
  cudaBufferAlloc(device: number, bytes: number): NativeCudaBuffer;
  cudaBufferFree(buffer: NativeCudaBuffer): void;
  cudaBufferCopy(buffer: NativeCudaBuffer, toDevice: boolean, host: ArrayBufferView, byteOffset: number): Promise<void>;
  cudaMemoryStats(device: number): { inUseBytes: number; cachedBytes: number; backendAllocs: number; cacheHits: number };
  cudaEmptyCache(device: number): void;
  cudaDeviceHas(device: number, feature: number): boolean;
  // A queue of device ops on the JS thread's stream (lib/cuda/queue.ts).
  cudaQueueStream(device: number): unknown;
  cudaEnqueue(queue: unknown, op: number, buffers: Array<NativeCudaBuffer | null>, nums: Float64Array): void;
  cudaQueueUpload(queue: unknown, dst: NativeCudaBuffer, host: Float32Array | Int32Array): void;
  cudaQueueDownload(queue: unknown, src: NativeCudaBuffer | null, host: Float32Array | null): Promise<void>;
  // Float32 GEMM (host arrays) and Dense forwards with device-resident weights (lib/cuda/resident.ts).
  cudaDenseF32(device: number, x: Float32Array, M: number, N: number, K: number, w: Float32Array, bias: Float32Array | null, y: Float32Array): Promise<void>;
  cudaRepackNk64(src: NativeCudaBuffer, K: number, N: number, dst: NativeCudaBuffer): Promise<void>;
  cudaDenseResident(
    device: number, kind: number, x: Float32Array, M: number, N: number, K: number, w: NativeCudaBuffer,
    scale: NativeCudaBuffer | null, zero: NativeCudaBuffer | null, gIdx: NativeCudaBuffer | null, bias: NativeCudaBuffer | null,
    params: Float64Array, y: Float32Array,
  ): Promise<void>;
}

/** Opaque handle of a device allocation (a native External). */
export type NativeCudaBuffer = { readonly __nativeCudaBuffer: unique symbol };
