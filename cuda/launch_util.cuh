// quantkit — shared host-side helpers of the CUDA launchers (private to cuda/*.cu): error text into the
// caller's buffer, CUDA error -> qk_status (qk_cuda_status_from_error), argument checks, and RAII scratch from
// the caching allocator (memory.cu). Header-only with internal linkage: each .cu gets its own copy.
#ifndef QK_CUDA_LAUNCH_UTIL_CUH_
#define QK_CUDA_LAUNCH_UTIL_CUH_

#include <cuda_runtime.h>

#include <cstdarg>
#include <cstdint>
#include <cstdio>

#include "arch.h"
#include "qk_cuda.h"

namespace qk {
namespace cuda_launch {
namespace {

__attribute__((format(printf, 3, 4))) inline void write_msg(char* buf, size_t len, const char* fmt, ...) {
  if (buf == nullptr || len == 0) return;
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, len, fmt, ap);
  va_end(ap);
}

inline qk_status cuda_status(cudaError_t e, const char* what, char* err, size_t err_len) {
  if (e == cudaSuccess) return QK_STATUS_OK;
  (void)cudaGetLastError();  // clear a non-sticky error so that it is not reported twice
  return qk_cuda_status_from_error(static_cast<int>(e), what, err, err_len);
}

#define QK_CU_TRY(call, what)                                                                    \
  do {                                                                                          \
    const qk_status qk_cu_st_ = ::qk::cuda_launch::cuda_status((call), (what), err, err_len);    \
    if (qk_cu_st_ != QK_STATUS_OK) return qk_cu_st_;                                            \
  } while (0)
#define QK_ST_TRY(expr)                                     \
  do {                                                      \
    const qk_status qk_st_ = (expr);                        \
    if (qk_st_ != QK_STATUS_OK) return qk_st_;              \
  } while (0)

inline cudaStream_t as_stream(void* s) { return s == nullptr ? cudaStreamPerThread : static_cast<cudaStream_t>(s); }

inline bool aligned(const void* p, uintptr_t bytes) { return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0; }

inline qk_status invalid(char* err, size_t err_len, const char* op, const char* what) {
  write_msg(err, err_len, "%s: %s", op, what);
  return QK_STATUS_INVALID_ARGUMENT;
}

// Compute capability of the current device, and whether it has `f` (QK_STATUS_UNSUPPORTED naming the
// feature, the device's and the required capability otherwise).
inline qk_status current_cc(int* cc, char* err, size_t err_len) {
  int dev = 0, major = 0, minor = 0;
  QK_CU_TRY(cudaGetDevice(&dev), "cudaGetDevice");
  QK_CU_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "cudaDeviceGetAttribute");
  QK_CU_TRY(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev), "cudaDeviceGetAttribute");
  *cc = major * 10 + minor;
  return QK_STATUS_OK;
}
inline qk_status require(cuda_arch::Feature f, char* err, size_t err_len) {
  int cc = 0;
  QK_ST_TRY(current_cc(&cc, err, err_len));
  if (!cuda_arch::supports(cc, f)) {
    write_msg(err, err_len, "%s needs a GPU of compute capability %d.%d or newer; this device is %d.%d",
              cuda_arch::feature_name(f), cuda_arch::min_cc(f) / 10, cuda_arch::min_cc(f) % 10, cc / 10, cc % 10);
    return QK_STATUS_UNSUPPORTED;
  }
  return QK_STATUS_OK;
}

// Device scratch from the caching allocator of `device`, returned to it on scope exit. The destructor first
// waits for `stream` (work still queued on an early error return must not touch a block the cache may hand
// to another thread).
class Scratch {
 public:
  Scratch(int device, cudaStream_t stream) : device_(device), stream_(stream) {}
  ~Scratch() {
    if (ptr_ == nullptr) return;
    if (cudaStreamSynchronize(stream_) != cudaSuccess) (void)cudaGetLastError();
    qk_cuda_free(device_, ptr_, nullptr, 0);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  qk_status alloc(size_t bytes, char* err, size_t err_len) { return qk_cuda_malloc(device_, bytes, &ptr_, err, err_len); }
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  void* get() const { return ptr_; }

 private:
  int device_;
  cudaStream_t stream_;
  void* ptr_ = nullptr;
};

// Host buffer (may be NULL when bytes == 0) -> fresh device scratch, on the worker stream.
inline qk_status upload(Scratch& s, const void* host, size_t bytes, cudaStream_t st, const char* what, char* err,
                        size_t err_len) {
  QK_ST_TRY(s.alloc(bytes, err, err_len));
  if (bytes > 0) QK_CU_TRY(cudaMemcpyAsync(s.get(), host, bytes, cudaMemcpyHostToDevice, st), what);
  return QK_STATUS_OK;
}

}  // namespace
}  // namespace cuda_launch
}  // namespace qk

#endif  // QK_CUDA_LAUNCH_UTIL_CUH_
