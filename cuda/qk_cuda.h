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

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* QK_CUDA_H_ */
