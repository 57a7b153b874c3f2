/* quantkit — the C ABI of the CUDA backend (the .cu files of cuda/, built into the static library qk_cuda).
 *
 * Plain C: no napi, no CUDA types (streams are void*, CUDA error codes are int), so the N-API glue can include
 * it without the CUDA headers. The addon only calls these when it was built with QK_WITH_CUDA=1.
 *
 * Contract shared by every function here:
 *  - Nothing fails at load time and nothing crashes without a driver or a GPU: the CUDA runtime is linked
 *    statically and finds the driver (libcuda) at the first call. No driver / no device means "0 devices".
 *  - Functions returning qk_status write a human-readable message into err[0..err_len) (always
 *    NUL-terminated, truncated to fit) whenever they return something other than QK_STATUS_OK. err may be
 *    NULL or err_len 0 when the caller does not want the text.
 *  - Error mapping: cudaErrorMemoryAllocation -> QK_STATUS_OUT_OF_MEMORY; a device index that does not exist,
 *    no driver, no device, or a device this build has no code for (compute capability < 7.5) ->
 *    QK_STATUS_UNSUPPORTED; any other CUDA error -> QK_STATUS_DEVICE with the CUDA error name and string.
 *  - Thread safety: every function may be called from any thread. Launchers make `device` current on the
 *    calling thread (cudaSetDevice) and do not restore the previous one.
 *  - Tensor views are those of qk/kernels.h: a row-major tensor reduced along one axis is seen as
 *    [outer, len, inner]; element (o, l, i) is at x[(o * len + l) * inner + i]; per-slice results are
 *    [outer, inner]. Results are bit-identical to the CPU kernels (qk::ref::absmax / absmax_quantize).
 */
#ifndef QK_CUDA_H_
#define QK_CUDA_H_

#include <stddef.h>
#include <stdint.h>

#include "qk/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- runtime, driver and devices (cuda/device.cu) -------------------------------------------------------- */

/* Number of CUDA devices usable by this process. Never fails: a missing driver, an old driver, no GPU, or
 * CUDA_VISIBLE_DEVICES hiding them all gives *count = 0 and QK_STATUS_OK; then `why` (if given) receives the
 * reason (the CUDA error, e.g. "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA
 * runtime version"); otherwise why[0] = 0. Returns QK_STATUS_INVALID_ARGUMENT only when count is NULL. */
qk_status qk_cuda_device_count(int* count, char* why, size_t why_len);

typedef struct qk_cuda_device_info {
  char name[256];             /* e.g. "NVIDIA A100-SXM4-80GB" */
  int cc_major, cc_minor;     /* compute capability */
  int sm_count;               /* streaming multiprocessors */
  int supported;              /* 1 if this build has code the device can run (SASS or PTX JIT), else 0 */
  uint64_t total_memory;      /* bytes of global memory */
} qk_cuda_device_info;

/* Properties of device `device` (0-based). QK_STATUS_UNSUPPORTED if the index does not name a usable device. */
qk_status qk_cuda_device_get_info(int device, qk_cuda_device_info* info, char* err, size_t err_len);

/* CUDA runtime version this addon was linked with (e.g. 13000 for 13.0). Works without a driver. */
int qk_cuda_runtime_version(void);
/* Latest CUDA version the installed driver supports (e.g. 13000), or 0 when there is no driver. */
int qk_cuda_driver_version(void);

/* The GPU code this build contains, as "sm_75 sm_80 sm_86 sm_89 sm_90 compute_90" (sm_XY = SASS for that
 * compute capability, compute_XY = PTX the driver can JIT for newer GPUs). Static string. */
const char* qk_cuda_compiled_archs(void);

/* Lowest compute capability (major * 10 + minor) this build can run on: 75 (0 if the list is not numeric,
 * e.g. a developer build with QK_CUDA_ARCHITECTURES=native). */
int qk_cuda_min_compute_capability(void);

/* Helpers for the CUDA error -> qk_status mapping above. `cuda_error` is a cudaError_t value; `what` names
 * the failed operation and prefixes the message ("cudaMalloc(x): cudaErrorMemoryAllocation: out of memory").
 * Returns QK_STATUS_OK (and leaves err alone) for cudaSuccess. */
qk_status qk_cuda_status_from_error(int cuda_error, const char* what, char* err, size_t err_len);
/* Fetches and clears the calling thread's last CUDA runtime error (cudaGetLastError) and maps it as above.
 * When the runtime failed to initialise (no driver), that error is permanent: this keeps returning it. */
qk_status qk_cuda_check_last_error(const char* what, char* err, size_t err_len);

/* ---- abs-max reduction and quantization (cuda/absmax.cu) ------------------------------------------------- */

/* out[o * inner + i] = max_l |x(o, l, i)| for the [outer, len, inner] view; NaN anywhere in a slice gives the
 * canonical quiet NaN 0x7FC00000; an empty slice (len == 0) gives +0. "Rows", "columns" and "whole tensor"
 * are views: [rows, cols] by row = (rows, cols, 1), by column = (1, rows, cols), whole = (1, n, 1).
 * Host pointers in and out: the launcher allocates device memory, copies, runs, copies back and frees.
 * Dims must be >= 0; x may be NULL only when outer*len*inner == 0, out only when outer*inner == 0.
 * Zero-sized outputs return QK_STATUS_OK without touching the GPU. */
qk_status qk_cuda_absmax(int device, const float* host_x, int64_t outer, int64_t len, int64_t inner,
                         float* host_out, char* err, size_t err_len);

/* Keras abs_max_quantize on the [outer, len, inner] view (same rules as qk::ref::absmax_quantize):
 *   amax = max_l |x|;  scale = hi / (amax + eps) in float32 (NaN scale -> 0x7FC00000);
 *   q = clip(round_half_even(x * scale), lo, hi), a NaN product quantizes to 0.
 * host_q is [outer, len, inner] int8, host_scale is [outer, inner] float32. lo <= hi must be integers within
 * [-128, 127] (QK_STATUS_INVALID_ARGUMENT otherwise). Host pointers, as qk_cuda_absmax. */
qk_status qk_cuda_absmax_quantize(int device, const float* host_x, int64_t outer, int64_t len, int64_t inner,
                                  float lo, float hi, float eps, int8_t* host_q, float* host_scale, char* err,
                                  size_t err_len);

/* The same two operations on device memory, enqueued on `stream` (a cudaStream_t; NULL = the per-thread
 * default stream) of the current device, without synchronizing. Pointers must be device (or managed)
 * memory of the documented sizes; `out` and `scale` need no initialization (quantize uses `scale` as its
 * amax scratch first). Errors reported here are launch errors only; execution errors surface at the
 * caller's next synchronization. Argument rules as for the host versions (zero sizes enqueue nothing). */
qk_status qk_cuda_absmax_dev(const float* x, int64_t outer, int64_t len, int64_t inner, float* out,
                             void* stream, char* err, size_t err_len);
qk_status qk_cuda_absmax_quantize_dev(const float* x, int64_t outer, int64_t len, int64_t inner, float lo,
                                      float hi, float eps, int8_t* q, float* scale, void* stream, char* err,
                                      size_t err_len);

/* ---- device memory and streams (cuda/memory.cu) ---------------------------------------------------------- */

/* Checks that `device` exists and that this build has code for it, then makes it current on this thread. */
qk_status qk_cuda_use_device(int device, char* err, size_t err_len);

/* The calling thread's own stream on `device` (a non-blocking cudaStream_t created at first use and kept for
 * the life of the thread): "one stream per worker". Also makes `device` current. */
qk_status qk_cuda_worker_stream(int device, void** stream, char* err, size_t err_len);

/* Device memory from the caching allocator of `device` (cuda/caching_allocator.h): freed blocks are cached
 * and reused; on cudaErrorMemoryAllocation the cache is released and the allocation retried once, then
 * QK_STATUS_OUT_OF_MEMORY (with the free/total bytes in err). bytes == 0 gives a valid distinct pointer.
 * qk_cuda_free(NULL) is a no-op; a pointer not from qk_cuda_malloc of that device -> INVALID_ARGUMENT. The
 * caller must make sure no queued work still uses a block it frees. */
qk_status qk_cuda_malloc(int device, size_t bytes, void** ptr, char* err, size_t err_len);
qk_status qk_cuda_free(int device, void* ptr, char* err, size_t err_len);
/* Returns every cached block of `device` to the driver. */
qk_status qk_cuda_empty_cache(int device, char* err, size_t err_len);

typedef struct qk_cuda_memory_stats {
  uint64_t in_use_bytes;    /* handed out (rounded sizes) */
  uint64_t cached_bytes;    /* freed, kept for reuse */
  uint64_t backend_allocs;  /* cudaMalloc calls that succeeded */
  uint64_t cache_hits;      /* allocations served from the cache */
} qk_cuda_memory_stats;
qk_status qk_cuda_get_memory_stats(int device, qk_cuda_memory_stats* out, char* err, size_t err_len);

/* Synchronous copies on the calling thread's worker stream (returns when the copy is complete). */
qk_status qk_cuda_memcpy_h2d(int device, void* dst, const void* host_src, size_t bytes, char* err, size_t err_len);
qk_status qk_cuda_memcpy_d2h(int device, void* host_dst, const void* src, size_t bytes, char* err, size_t err_len);

/* Waits for the work queued on the calling thread's worker stream of `device` (execution errors of earlier
 * launches surface here as QK_STATUS_DEVICE). */
qk_status qk_cuda_worker_sync(int device, char* err, size_t err_len);

/* Copy enqueued on `stream` (any stream of `device`, e.g. another thread's worker stream): to_device != 0 copies
 * host_or_dev src -> device dst, else device src -> host dst. Host memory: a pageable source is staged before this
 * returns; a download target must stay valid until the stream is synchronized (qk_cuda_stream_sync). */
qk_status qk_cuda_memcpy_async(int device, void* dst, const void* src, size_t bytes, int to_device, void* stream,
                               char* err, size_t err_len);
/* Waits for everything queued on `stream` of `device` (execution errors surface here). */
qk_status qk_cuda_stream_sync(int device, void* stream, char* err, size_t err_len);

/* The run-time capability predicate (cuda/arch.h): 1 if `device` exists, this build runs on it and its compute
 * capability has `feature`, else 0. */
enum {
  QK_CUDA_FEATURE_BASE = 0,          /* cc >= 7.5 */
  QK_CUDA_FEATURE_INT8_MMA = 1,      /* cc >= 7.5: int8 Tensor-Core GEMM (m8n8k16 on 7.5, m16n8k32 on 8.0+) */
  QK_CUDA_FEATURE_INT8_M16N8K32 = 2, /* cc >= 8.0 */
  QK_CUDA_FEATURE_CP_ASYNC = 3,      /* cc >= 8.0 */
  QK_CUDA_FEATURE_FP8_MMA = 4,       /* cc >= 8.9: float8 e4m3 Tensor-Core GEMM */
  QK_CUDA_FEATURE_F16_MMA = 5        /* cc >= 8.0: float16/bfloat16 mma.m16n8k16 (W4A16 / GPTQ Tensor-Core GEMM) */
};
int qk_cuda_device_has(int device, int feature);

/* ---- 8-bit Tensor-Core GEMMs (cuda/gemm_mma.cu) ------------------------------------------------------------
 * Weights go through a one-time repack into the NK64 layout (cuda/gemm_tiling.cuh): wt[n * Kp + k] = w[k * N + n]
 * for the Keras [K, N] byte matrix w (int8 values or e4m3fn codes), Kp = round_up(K, 64), zero padded; wt must
 * be 16-byte aligned (qk_cuda_malloc memory is). */
int64_t qk_cuda_nk64_padded_k(int64_t K);
qk_status qk_cuda_repack_nk64_dev(const uint8_t* w, int64_t K, int64_t N, uint8_t* wt, void* stream, char* err,
                                  size_t err_len);

/* y[M, N] = dense_w8a8 of qk/kernels.h, bit-exact with qk::ref::dense_w8a8: per-token abs-max quantization of
 * x (float32 [M, K]) fused into the GEMM's prologue, int8 x int8 -> int32 on Tensor Cores (mma.sync m16n8k32
 * on sm_80+, m8n8k16 on sm_75), descale + bias fused into the epilogue. K <= 131071, M <= 4194240.
 * bias may be NULL. Device pointers, enqueued on `stream` (NULL = per-thread default stream). */
qk_status qk_cuda_dense_w8a8_dev(const float* x, int64_t M, int64_t N, int64_t K, const uint8_t* wt_nk64,
                                 const float* w_scale, const float* bias, float act_lo, float act_hi, float act_eps,
                                 float* y, void* stream, char* err, size_t err_len);
/* y = dense_fp8 of qk/kernels.h (tolerance: Tensor-Core float32 accumulation order): x quantized to e4m3fn
 * with the per-tensor x_scale in the prologue, e4m3 x e4m3 -> f32 mma.sync m16n8k32, (x_scale * w_scale)
 * and bias in the epilogue. Needs compute capability 8.9+ (QK_STATUS_UNSUPPORTED below). */
qk_status qk_cuda_dense_fp8_dev(const float* x, int64_t M, int64_t N, int64_t K, float x_scale,
                                const uint8_t* wt_nk64, float w_scale, const float* bias, float* y, void* stream,
                                char* err, size_t err_len);
/* Host-pointer versions: w is the Keras [K, N] layout; upload, repack, run, download on the worker stream. */
qk_status qk_cuda_dense_w8a8(int device, const float* x, int64_t M, int64_t N, int64_t K, const int8_t* w,
                             const float* w_scale, const float* bias, float act_lo, float act_hi, float act_eps,
                             float* y, char* err, size_t err_len);
qk_status qk_cuda_dense_fp8(int device, const float* x, int64_t M, int64_t N, int64_t K, float x_scale,
                            const uint8_t* w8, float w_scale, const float* bias, float* y, char* err,
                            size_t err_len);

/* ---- float32 GEMM (cuda/gemm_f32.cu) ----------------------------------------------------------------------
 * y[M, N] = x[M, K] @ w[K, N] + bias (bias may be NULL), float32 row-major, w in the Keras [in, out] layout.
 * SIMT tiled GEMM (64 x 64 block tile, 4 x 4 outputs per thread, cuda/gemm_f32_tiling.cuh), every arch. Tolerance
 * vs the CPU sgemm: float32 rounding in another summation order (fmaf over k in increasing order). M <= 4194240.
 * Device pointers, enqueued on `stream` (NULL = per-thread default stream); the host version uploads, runs and
 * downloads on the worker stream. */
qk_status qk_cuda_dense_f32_dev(const float* x, int64_t M, int64_t N, int64_t K, const float* w, const float* bias,
                                float* y, void* stream, char* err, size_t err_len);
qk_status qk_cuda_dense_f32(int device, const float* x, int64_t M, int64_t N, int64_t K, const float* w,
                            const float* bias, float* y, char* err, size_t err_len);

/* ---- fused dequantize GEMM / GEMV for weight-only formats (cuda/wq_gemm.cu, cuda/wq_mma.cu) ---------------
 * y[M, N] = x[M, K] @ W_hat + bias with W_hat from the packed rows of cuda/wq_layout.cuh:
 *   is_signed = 0: GPTQ runtime layout (bits 2, 3, 4, 8), uint8 zero [G, N]  (qk::ref::dense_gptq)
 *   is_signed = 1: Keras grouped int4 w4 [K, (N+1)/2] (bits must be 4), int8 zero [G, N]  (qk::ref::dense_w4g)
 * scale float32 [G, N], zero [G, N], G = ceil(K / group), group >= 1. Row k uses group g = g_idx[k] when g_idx
 * (int32 [K], every entry in [0, G)) is given — GPTQ checkpoints with act-order keep their rows in input order
 * and address groups this way (g_idx[i] = position of input i in the act order / group) — else g = k / group.
 * x and y have dtype `dtype` (0 float32, 1 float16, 2 bfloat16); accumulation is float32.
 * path: QK_CUDA_WQ_AUTO picks the Tensor-Core GEMM (mma.m16n8k16, compute capability 8.0+, float16/bfloat16,
 * M >= 16) or else the CUDA-core GEMM/GEMV (decode: reads the packed weight once per 4 rows);
 * QK_CUDA_WQ_SIMT / QK_CUDA_WQ_MMA force one (MMA: QK_STATUS_UNSUPPORTED for float32 or below 8.0).
 * Tolerance vs the CPU reference: fmaf in another summation order (CUDA cores); the Tensor-Core path also rounds
 * every W_hat to the activation type (relative 2^-11 float16, 2^-8 bfloat16) before the float32-accumulating mma. */
enum { QK_CUDA_F32 = 0, QK_CUDA_F16 = 1, QK_CUDA_BF16 = 2 };
enum { QK_CUDA_WQ_AUTO = 0, QK_CUDA_WQ_SIMT = 1, QK_CUDA_WQ_MMA = 2 };
qk_status qk_cuda_dense_wq_dev(int dtype, const void* x, int64_t M, int64_t N, int64_t K, const uint8_t* wq,
                               int bits, int is_signed, const float* scale, const uint8_t* zero, int64_t group,
                               const int32_t* g_idx, const float* bias, void* y, int path, void* stream, char* err,
                               size_t err_len);
/* Host pointers; g_idx entries are validated here (QK_STATUS_INVALID_ARGUMENT when outside [0, G)). */
qk_status qk_cuda_dense_wq(int device, int dtype, const void* x, int64_t M, int64_t N, int64_t K,
                           const uint8_t* wq, int bits, int is_signed, const float* scale, const uint8_t* zero,
                           int64_t group, const int32_t* g_idx, const float* bias, void* y, int path, char* err,
                           size_t err_len);

/* ---- GPTQ on the device (cuda/gptq.cu) ---------------------------------------------------------------------
 * The CPU GPTQ core of qk/gptq.h (hessian_accumulate, gptq_quantize_matrix with cholesky_inverse_upper inside), same
 * arguments and contracts, host pointers (upload, run on the worker stream, download). BIT-IDENTICAL to
 * qk::ref: the same correctly rounded operations in the same order per value (cuda/gptq_sweep.cuh). The device
 * version has no per_channel = false (one (scale, zero) per group for all outputs needs a grid-wide reduction):
 * callers use the CPU for that option. */
typedef struct qk_cuda_gptq_result {
  double damp_used;
  int damp_tries;
  int64_t dead_inputs;
  double loss;
} qk_cuda_gptq_result;
qk_status qk_cuda_gptq_hessian_accumulate(int device, const float* X, int64_t rows, int64_t cols, double* H,
                                          int64_t* n_seen, char* err, size_t err_len);
qk_status qk_cuda_gptq_quantize_matrix(int device, const float* W, int64_t in, int64_t out, double* H, int bits,
                                       int64_t group_size, int symmetric, int act_order, double damp,
                                       int max_damp_tries, int zero_dead_inputs, uint8_t* q, float* scale,
                                       uint8_t* zero, int32_t* g_idx, float* w_hat, qk_cuda_gptq_result* res,
                                       char* err, size_t err_len);

/* ---- the Llama float path (cuda/llama.cu) ------------------------------------------------------------------
 * rmsnorm / rope / softmax_rows / silu_mul / attention_decode / kv_cache_write of qk/kernels.h (same layouts and
 * contracts; the element math of qk/llama_math.h), float32 device pointers enqueued on `stream`. Tolerance vs the
 * CPU reference (parallel sums, CUDA's expf / cosf / sinf / powf); kv_cache_write is exact. attention_decode
 * needs `scratch`: T * heads * (pos0 + T) floats of device memory. */
qk_status qk_cuda_rmsnorm_dev(const float* x, const float* weight, int64_t rows, int64_t n, float eps, float* y,
                              void* stream, char* err, size_t err_len);
qk_status qk_cuda_rope_dev(float* x, int64_t rows, int64_t heads, int64_t head_dim, const int32_t* positions,
                           float theta, void* stream, char* err, size_t err_len);
qk_status qk_cuda_softmax_rows_dev(float* x, int64_t rows, int64_t n, void* stream, char* err, size_t err_len);
qk_status qk_cuda_silu_mul_dev(const float* gate, const float* up, int64_t n, float* out, void* stream, char* err,
                               size_t err_len);
qk_status qk_cuda_attention_decode_dev(const float* q, int64_t T, int64_t heads, int64_t kv_heads, int64_t head_dim,
                                       const float* k_cache, const float* v_cache, int64_t max_seq, int64_t pos0,
                                       float* out, float* scratch, void* stream, char* err, size_t err_len);
qk_status qk_cuda_kv_cache_write_dev(const float* k, const float* v, int64_t T, int64_t kv_heads, int64_t head_dim,
                                     const int32_t* positions, int64_t max_seq, float* k_cache, float* v_cache,
                                     void* stream, char* err, size_t err_len);
/* y[i] += x[i] for i < n (the residual connections of a decoder block), float32 device pointers. */
qk_status qk_cuda_add_dev(float* y, const float* x, int64_t n, void* stream, char* err, size_t err_len);
/* Host-pointer version of the first five, for tests and one-off calls: op selects the kernel; inputs a, b, c and
 * positions as the op reads them (rmsnorm: a = x [rows, n], b = weight [n]; rope: a = x [rows, heads, head_dim],
 * positions [rows]; softmax: a = x [rows, n]; silu_mul: a = gate, b = up [n]; attention: a = q [T, heads,
 * head_dim], b = k_cache, c = v_cache [kv_heads, max_seq, head_dim]); the result goes to out (same shape as a). */
enum { QK_CUDA_LLAMA_RMSNORM = 0, QK_CUDA_LLAMA_ROPE = 1, QK_CUDA_LLAMA_SOFTMAX = 2, QK_CUDA_LLAMA_SILU_MUL = 3,
       QK_CUDA_LLAMA_ATTENTION = 4 };
typedef struct qk_cuda_llama_args {
  const float *a, *b, *c;
  const int32_t* positions;
  float* out;
  int64_t rows, n, heads, kv_heads, head_dim, max_seq, pos0, T;
  float eps, theta;
} qk_cuda_llama_args;
qk_status qk_cuda_llama(int device, int op, const qk_cuda_llama_args* args, char* err, size_t err_len);

/* ---- element-wise: sub-byte packing and fp8 conversion (cuda/convert.cu) -----------------------------------
 * Bit-exact with qk::ref::pack_int4 / unpack_int4 / pack_int2 / unpack_int2 / f32_to_fp8 / fp8_to_f32 (the same
 * element functions of qk/quant_math.h and qk/fp_convert.h). Host pointers. */
enum {
  QK_CUDA_PACK_INT4 = 0, QK_CUDA_UNPACK_INT4 = 1, QK_CUDA_UNPACK_INT4_SIGNED = 2,
  QK_CUDA_PACK_INT2 = 3, QK_CUDA_UNPACK_INT2 = 4, QK_CUDA_UNPACK_INT2_SIGNED = 5
};
/* [outer, len, inner] unpacked <-> [outer, ceil(len / 2 or 4), inner] packed; len is the unpacked length. */
qk_status qk_cuda_pack(int device, int op, const uint8_t* src, int64_t outer, int64_t len, int64_t inner,
                       uint8_t* dst, char* err, size_t err_len);
/* fmt: 0 = e4m3fn, 1 = e5m2 (qk::Fp8Format). */
qk_status qk_cuda_f32_to_fp8(int device, const float* src, uint8_t* dst, int64_t n, int fmt, char* err,
                             size_t err_len);
qk_status qk_cuda_fp8_to_f32(int device, const uint8_t* src, float* dst, int64_t n, int fmt, char* err,
                             size_t err_len);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* QK_CUDA_H_ */
