// quantkit — CUDA runtime, driver and device queries, and the CUDA error -> qk_status mapping (qk_cuda.h).
//
// Everything here must work on a machine without an NVIDIA driver: the runtime is linked statically
// (libcudart_static) and only dlopen()s libcuda at the first call, so a missing or old driver shows up as an
// error code from that call (cudaErrorInsufficientDriver, cudaErrorNoDevice, ...), which we turn into
// "0 devices" rather than a failure.
#include <cuda_runtime.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "qk_cuda.h"

// The CUDA_ARCHITECTURES list this file was built for, passed by cuda/cuda.cmake as a space-separated string
// ("75-real 80-real 86-real 89-real 90-real 90-virtual"). A build without it (a hand-run nvcc) assumes the
// default list of cuda.cmake.
#ifndef QK_CUDA_ARCH_LIST
#define QK_CUDA_ARCH_LIST "75-real 80-real 86-real 89-real 90-real 90-virtual"
#endif

namespace {

// snprintf into a caller's buffer that may be NULL / empty.
void write_msg(char* buf, size_t len, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
void write_msg(char* buf, size_t len, const char* fmt, ...) {
  if (buf == nullptr || len == 0) return;
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, len, fmt, ap);
  va_end(ap);
}

// CUDA errors meaning "this machine / device cannot serve the request" rather than "something broke".
bool is_unavailable_error(cudaError_t e) {
  switch (e) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
    case cudaErrorDevicesUnavailable:
      return true;
    default:
      return false;
  }
}

// The parsed QK_CUDA_ARCH_LIST: which compute capabilities have SASS, which have PTX.
struct ArchSet {
  int sass[32];
  int n_sass = 0;
  int ptx[32];
  int n_ptx = 0;
  bool parsed = true;  // false when an entry was not "NN", "NN-real" or "NN-virtual" (e.g. "native")
  char text[512] = {0};
};

ArchSet parse_arch_list(const char* list) {
  ArchSet s;
  size_t used = 0;
  const char* p = list;
  while (*p != 0) {
    while (*p == ' ' || *p == ';') ++p;
    if (*p == 0) break;
    const char* start = p;
    while (*p != 0 && *p != ' ' && *p != ';') ++p;
    char entry[64] = {0};
    const size_t n = static_cast<size_t>(p - start) < sizeof entry - 1 ? static_cast<size_t>(p - start)
                                                                        : sizeof entry - 1;
    std::memcpy(entry, start, n);
    char* end = nullptr;
    const long cc = std::strtol(entry, &end, 10);
    bool real = false, virt = false;
    if (end == entry || cc <= 0) {
      s.parsed = false;
    } else if (*end == 0) {
      real = virt = true;
    } else if (std::strcmp(end, "-real") == 0) {
      real = true;
    } else if (std::strcmp(end, "-virtual") == 0) {
      virt = true;
    } else {
      s.parsed = false;
    }
    char word[80];
    if (!real && !virt) {
      std::snprintf(word, sizeof word, "%s%s", used ? " " : "", entry);
    } else {
      word[0] = 0;
      if (real && s.n_sass < 32) s.sass[s.n_sass++] = static_cast<int>(cc);
      if (virt && s.n_ptx < 32) s.ptx[s.n_ptx++] = static_cast<int>(cc);
      if (real) std::snprintf(word, sizeof word, "%ssm_%ld", used ? " " : "", cc);
      if (virt) {
        const size_t w = std::strlen(word);
        std::snprintf(word + w, sizeof word - w, "%scompute_%ld", (used || w) ? " " : "", cc);
      }
    }
    const size_t wl = std::strlen(word);
    if (used + wl < sizeof s.text) {
      std::memcpy(s.text + used, word, wl + 1);
      used += wl;
    }
  }
  return s;
}

const ArchSet& compiled_archs() {
  static const ArchSet archs = parse_arch_list(QK_CUDA_ARCH_LIST);  // thread-safe one-time init
  return archs;
}

// Can a device of compute capability major.minor run this build? SASS for X.Y runs on X.Z with Z >= Y (same
// major); PTX for X.Y is JIT-compiled by the driver for any X'.Y' >= X.Y.
bool archs_support(const ArchSet& a, int major, int minor) {
  if (!a.parsed) return true;  // unknown list ("native", "all"): the launchers' kernel-image check decides
  const int cc = major * 10 + minor;
  for (int k = 0; k < a.n_sass; ++k) {
    if (a.sass[k] / 10 == major && a.sass[k] % 10 <= minor) return true;
  }
  for (int k = 0; k < a.n_ptx; ++k) {
    if (a.ptx[k] <= cc) return true;
  }
  return false;
}

}  // namespace

extern "C" {

qk_status qk_cuda_status_from_error(int cuda_error, const char* what, char* err, size_t err_len) {
  const cudaError_t e = static_cast<cudaError_t>(cuda_error);
  if (e == cudaSuccess) return QK_STATUS_OK;
  write_msg(err, err_len, "%s: %s: %s", what ? what : "CUDA", cudaGetErrorName(e), cudaGetErrorString(e));
  if (e == cudaErrorMemoryAllocation) return QK_STATUS_OUT_OF_MEMORY;
  if (is_unavailable_error(e)) return QK_STATUS_UNSUPPORTED;
  return QK_STATUS_DEVICE;
}

qk_status qk_cuda_check_last_error(const char* what, char* err, size_t err_len) {
  return qk_cuda_status_from_error(static_cast<int>(cudaGetLastError()), what, err, err_len);
}

qk_status qk_cuda_device_count(int* count, char* why, size_t why_len) {
  if (count == nullptr) {
    write_msg(why, why_len, "qk_cuda_device_count: count is NULL");
    return QK_STATUS_INVALID_ARGUMENT;
  }
  write_msg(why, why_len, "%s", "");
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // do not leave the error for an unrelated later cudaGetLastError()
    write_msg(why, why_len, "cudaGetDeviceCount: %s: %s", cudaGetErrorName(e), cudaGetErrorString(e));
    *count = 0;
    return QK_STATUS_OK;
  }
  *count = n < 0 ? 0 : n;
  if (*count == 0) write_msg(why, why_len, "no CUDA device is visible to this process");
  return QK_STATUS_OK;
}

qk_status qk_cuda_device_get_info(int device, qk_cuda_device_info* info, char* err, size_t err_len) {
  if (info == nullptr) {
    write_msg(err, err_len, "qk_cuda_device_get_info: info is NULL");
    return QK_STATUS_INVALID_ARGUMENT;
  }
  std::memset(info, 0, sizeof *info);
  int count = 0;
  char why[256];
  qk_cuda_device_count(&count, why, sizeof why);
  if (device < 0 || device >= count) {
    write_msg(err, err_len, "CUDA device %d is not available (%d device%s%s%s)", device, count,
              count == 1 ? "" : "s", why[0] ? "; " : "", why);
    return QK_STATUS_UNSUPPORTED;
  }
  cudaDeviceProp prop;
  const cudaError_t e = cudaGetDeviceProperties(&prop, device);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return qk_cuda_status_from_error(e, "cudaGetDeviceProperties", err, err_len);
  }
  std::snprintf(info->name, sizeof info->name, "%s", prop.name);
  info->cc_major = prop.major;
  info->cc_minor = prop.minor;
  info->sm_count = prop.multiProcessorCount;
  info->total_memory = static_cast<uint64_t>(prop.totalGlobalMem);
  info->supported = archs_support(compiled_archs(), prop.major, prop.minor) ? 1 : 0;
  return QK_STATUS_OK;
}

int qk_cuda_runtime_version(void) {
  int v = 0;
  if (cudaRuntimeGetVersion(&v) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return v;
}

int qk_cuda_driver_version(void) {
  int v = 0;  // cudaDriverGetVersion reports 0 (and success) when no driver is installed
  if (cudaDriverGetVersion(&v) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return v;
}

const char* qk_cuda_compiled_archs(void) { return compiled_archs().text; }

int qk_cuda_min_compute_capability(void) {
  const ArchSet& a = compiled_archs();
  int lo = 0;
  for (int k = 0; k < a.n_sass; ++k) lo = (lo == 0 || a.sass[k] < lo) ? a.sass[k] : lo;
  for (int k = 0; k < a.n_ptx; ++k) lo = (lo == 0 || a.ptx[k] < lo) ? a.ptx[k] : lo;
  return lo;
}

}  // extern "C"
