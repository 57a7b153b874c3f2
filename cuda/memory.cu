// quantkit — device memory and streams (qk_cuda.h): one caching allocator per device (caching_allocator.h over
// cudaMalloc / cudaFree), synchronous uploads/downloads on the calling thread's stream, and that stream: every
// thread (a libuv worker running an AsyncWorker) gets its own non-blocking stream per device, created at its
// first use and kept for the life of the process (the worker threads are as long-lived).
#include <cuda_runtime.h>

#include <atomic>
#include <memory>
#include <mutex>

#include "caching_allocator.h"
#include "launch_util.cuh"

namespace {

namespace cl = qk::cuda_launch;
namespace cm = qk::cuda_mem;

constexpr int kMaxDevices = 64;

struct DeviceCtx {
  int device;
};

qk_status backend_alloc(void* ctx, size_t bytes, void** ptr) {
  const int device = static_cast<DeviceCtx*>(ctx)->device;
  cudaError_t e = cudaSetDevice(device);
  if (e == cudaSuccess) e = cudaMalloc(ptr, bytes);
  if (e == cudaSuccess) return QK_STATUS_OK;
  (void)cudaGetLastError();
  return e == cudaErrorMemoryAllocation ? QK_STATUS_OUT_OF_MEMORY : QK_STATUS_DEVICE;
}

void backend_free(void* ctx, void* ptr) {
  if (cudaSetDevice(static_cast<DeviceCtx*>(ctx)->device) != cudaSuccess || cudaFree(ptr) != cudaSuccess) {
    (void)cudaGetLastError();
  }
}

struct Allocators {
  std::mutex mu;
  DeviceCtx ctx[kMaxDevices];
  std::unique_ptr<cm::CachingAllocator> per_device[kMaxDevices];
};

Allocators& allocators() {
  static Allocators* a = new Allocators();  // never destroyed: blocks may be freed during process exit
  return *a;
}

// Makes `device` current after checking that it exists and that this build has code for it. Devices that passed
// the check once are only made current later (g_device_ok). cudaGetDeviceProperties costs far more than a kernel launch, and the device queue of the Llama
// decode calls this once per enqueued kernel. A device cannot disappear or change within a process.
std::atomic<bool> g_device_ok[kMaxDevices];

qk_status use_device(int device, char* err, size_t err_len) {
  if (device >= 0 && device < kMaxDevices && g_device_ok[device].load(std::memory_order_acquire)) {
    QK_CU_TRY(cudaSetDevice(device), "cudaSetDevice");
    return QK_STATUS_OK;
  }
  int count = 0;
  char why[256];
  qk_cuda_device_count(&count, why, sizeof why);
  if (device < 0 || device >= count || device >= kMaxDevices) {
    cl::write_msg(err, err_len, "CUDA device %d is not available (%d device%s%s%s)", device, count,
                  count == 1 ? "" : "s", why[0] ? "; " : "", why);
    return QK_STATUS_UNSUPPORTED;
  }
  qk_cuda_device_info info;
  const qk_status st = qk_cuda_device_get_info(device, &info, err, err_len);
  if (st != QK_STATUS_OK) return st;
  if (!info.supported) {
    cl::write_msg(err, err_len, "CUDA device %d (%s, compute capability %d.%d) is not supported by this build (%s)",
                  device, info.name, info.cc_major, info.cc_minor, qk_cuda_compiled_archs());
    return QK_STATUS_UNSUPPORTED;
  }
  QK_CU_TRY(cudaSetDevice(device), "cudaSetDevice");
  g_device_ok[device].store(true, std::memory_order_release);
  return QK_STATUS_OK;
}

cm::CachingAllocator* allocator_for(int device) {
  Allocators& a = allocators();
  std::lock_guard<std::mutex> lock(a.mu);
  if (!a.per_device[device]) {
    a.ctx[device].device = device;
    a.per_device[device].reset(new cm::CachingAllocator(cm::Backend{backend_alloc, backend_free, &a.ctx[device]}));
  }
  return a.per_device[device].get();
}

}  // namespace

extern "C" {

qk_status qk_cuda_use_device(int device, char* err, size_t err_len) { return use_device(device, err, err_len); }

qk_status qk_cuda_worker_stream(int device, void** stream, char* err, size_t err_len) {
  thread_local cudaStream_t streams[kMaxDevices] = {};
  if (stream == nullptr) return cl::invalid(err, err_len, "qk_cuda_worker_stream", "stream is NULL");
  QK_ST_TRY(use_device(device, err, err_len));
  if (streams[device] == nullptr) {
    QK_CU_TRY(cudaStreamCreateWithFlags(&streams[device], cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  }
  *stream = streams[device];
  return QK_STATUS_OK;
}

qk_status qk_cuda_malloc(int device, size_t bytes, void** ptr, char* err, size_t err_len) {
  if (ptr == nullptr) return cl::invalid(err, err_len, "qk_cuda_malloc", "ptr is NULL");
  *ptr = nullptr;
  QK_ST_TRY(use_device(device, err, err_len));
  const qk_status st = allocator_for(device)->allocate(bytes, ptr);
  if (st == QK_STATUS_OUT_OF_MEMORY) {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) (void)cudaGetLastError();
    cl::write_msg(err, err_len,
                  "out of memory on CUDA device %d: could not allocate %zu bytes (%zu of %zu bytes free after "
                  "releasing the cache)", device, bytes, free_b, total_b);
  } else if (st != QK_STATUS_OK) {
    cl::write_msg(err, err_len, "cudaMalloc of %zu bytes on CUDA device %d failed", bytes, device);
  }
  return st;
}

qk_status qk_cuda_free(int device, void* ptr, char* err, size_t err_len) {
  if (ptr == nullptr) return QK_STATUS_OK;
  if (device < 0 || device >= kMaxDevices) return cl::invalid(err, err_len, "qk_cuda_free", "bad device index");
  if (allocator_for(device)->deallocate(ptr) != QK_STATUS_OK) {
    return cl::invalid(err, err_len, "qk_cuda_free", "pointer was not allocated by qk_cuda_malloc (or freed twice)");
  }
  return QK_STATUS_OK;
}

qk_status qk_cuda_empty_cache(int device, char* err, size_t err_len) {
  QK_ST_TRY(use_device(device, err, err_len));
  allocator_for(device)->empty_cache();
  return QK_STATUS_OK;
}

qk_status qk_cuda_get_memory_stats(int device, qk_cuda_memory_stats* out, char* err, size_t err_len) {
  if (out == nullptr) return cl::invalid(err, err_len, "qk_cuda_get_memory_stats", "out is NULL");
  QK_ST_TRY(use_device(device, err, err_len));
  const cm::Stats s = allocator_for(device)->stats();
  out->in_use_bytes = s.in_use_bytes;
  out->cached_bytes = s.cached_bytes;
  out->backend_allocs = s.backend_allocs;
  out->cache_hits = s.cache_hits;
  return QK_STATUS_OK;
}

qk_status qk_cuda_memcpy_h2d(int device, void* dst, const void* src, size_t bytes, char* err, size_t err_len) {
  if (bytes == 0) return QK_STATUS_OK;
  if (dst == nullptr || src == nullptr) return cl::invalid(err, err_len, "qk_cuda_memcpy_h2d", "NULL pointer");
  void* s = nullptr;
  QK_ST_TRY(qk_cuda_worker_stream(device, &s, err, err_len));
  const cudaStream_t st = static_cast<cudaStream_t>(s);
  QK_CU_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st), "cudaMemcpyAsync(host to device)");
  QK_CU_TRY(cudaStreamSynchronize(st), "cudaStreamSynchronize(upload)");
  return QK_STATUS_OK;
}

qk_status qk_cuda_memcpy_d2h(int device, void* dst, const void* src, size_t bytes, char* err, size_t err_len) {
  if (bytes == 0) return QK_STATUS_OK;
  if (dst == nullptr || src == nullptr) return cl::invalid(err, err_len, "qk_cuda_memcpy_d2h", "NULL pointer");
  void* s = nullptr;
  QK_ST_TRY(qk_cuda_worker_stream(device, &s, err, err_len));
  const cudaStream_t st = static_cast<cudaStream_t>(s);
  QK_CU_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync(device to host)");
  QK_CU_TRY(cudaStreamSynchronize(st), "cudaStreamSynchronize(download)");
  return QK_STATUS_OK;
}

qk_status qk_cuda_memcpy_async(int device, void* dst, const void* src, size_t bytes, int to_device, void* stream,
                               char* err, size_t err_len) {
  if (bytes == 0) return QK_STATUS_OK;
  if (dst == nullptr || src == nullptr) return cl::invalid(err, err_len, "qk_cuda_memcpy_async", "NULL pointer");
  QK_ST_TRY(qk_cuda_use_device(device, err, err_len));
  QK_CU_TRY(cudaMemcpyAsync(dst, src, bytes, to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost,
                            cl::as_stream(stream)),
            to_device ? "cudaMemcpyAsync(host to device)" : "cudaMemcpyAsync(device to host)");
  return QK_STATUS_OK;
}

qk_status qk_cuda_stream_sync(int device, void* stream, char* err, size_t err_len) {
  QK_ST_TRY(qk_cuda_use_device(device, err, err_len));
  QK_CU_TRY(cudaStreamSynchronize(cl::as_stream(stream)), "cudaStreamSynchronize");
  return QK_STATUS_OK;
}

qk_status qk_cuda_worker_sync(int device, char* err, size_t err_len) {
  void* s = nullptr;
  QK_ST_TRY(qk_cuda_worker_stream(device, &s, err, err_len));
  QK_CU_TRY(cudaStreamSynchronize(static_cast<cudaStream_t>(s)), "cudaStreamSynchronize(worker stream)");
  return QK_STATUS_OK;
}

int qk_cuda_device_has(int device, int feature) {
  qk_cuda_device_info info;
  if (qk_cuda_device_get_info(device, &info, nullptr, 0) != QK_STATUS_OK || !info.supported) return 0;
  return qk::cuda_arch::supports(info.cc_major * 10 + info.cc_minor, static_cast<qk::cuda_arch::Feature>(feature))
             ? 1
             : 0;
}

}  // extern "C"
