// quantkit — CUDA abs-max reduction and Keras abs-max quantization, with their C-ABI launchers (qk_cuda.h).
//
// Semantics are those of qk::ref::absmax / absmax_quantize (qk/kernels.h) on the [outer, len, inner] view,
// bit for bit. How the work is cut into tiles is in absmax_index.cuh; the element math is qk/quant_math.h, the
// same inline functions the CPU reference uses (compiled here as __host__ __device__).
//
// Reduction: a max of |x| is an unsigned max of the float bits with the sign cleared (abs_bits below: the
// integer form of qk_absmax_step, as explained in quant_math.h), so partial results combine exactly in any
// order: per thread, then per warp (__reduce_max_sync on sm_80+, a
// __shfl_xor_sync butterfly before), then per block through shared memory, then, when `len` is split over
// several tiles, across blocks with atomicMax on the output bits.
//
// Quantization runs three kernels on one stream: the abs-max reduction into the `scale` buffer, an in-place
// amax -> scale pass over [outer, inner], and an element-wise quantize pass that walks the same tiles as the
// reduction (so each thread finds its scale without a 64-bit division per element).
#include <cuda_runtime.h>

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cmath>

#include "absmax_index.cuh"
#include "qk/quant_math.h"
#include "qk_cuda.h"

namespace {

namespace ix = qk::cuda_index;

// ---- device helpers -----------------------------------------------------------------------------------------

// |x| as raw bits. For non-negative floats the IEEE bit patterns order like the values, and every NaN pattern
// (0x7F800001..0x7FFFFFFF once the sign is cleared) sorts above +inf (0x7F800000). So an unsigned max over these
// bits is max|x| with NaN propagation, exact and order-independent: it can be combined with warp shuffles,
// __reduce_max_sync and atomicMax in any order and still give one answer. Starting value 0 = +0.0f, the value
// of an empty reduction (as qk::ref::absmax).
__device__ __forceinline__ unsigned abs_bits(float x) { return __float_as_uint(x) & 0x7FFFFFFFu; }

// Final form of a max of abs_bits: any NaN becomes the canonical NaN (as qk_absmax_step gives on the CPU).
__device__ __forceinline__ unsigned canonical_amax_bits(unsigned m) {
  return m > 0x7F800000u ? qk::kQkCanonicalNanBits : m;
}

__device__ __forceinline__ unsigned warp_max(unsigned v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  return __reduce_max_sync(0xFFFFFFFFu, v);  // one REDUX instruction on Ampere and later
#else
  for (int offset = ix::kWarpSize / 2; offset > 0; offset >>= 1) {
    v = max(v, __shfl_xor_sync(0xFFFFFFFFu, v, offset));
  }
  return v;
#endif
}

__device__ __forceinline__ unsigned max_abs4(unsigned m, const float4 v) {
  return max(max(m, max(abs_bits(v.x), abs_bits(v.y))), max(abs_bits(v.z), abs_bits(v.w)));
}

// Stores a tile's result: a plain store when the tile covers the whole slice, else an atomic max into the
// zero-initialised output. `m` is already canonical, so the atomic max of canonical values stays canonical.
__device__ __forceinline__ void store_amax(unsigned* out, int64_t k, unsigned m, bool split) {
  if (split) {
    atomicMax(out + k, m);
  } else {
    out[k] = m;
  }
}

// ---- kernels --------------------------------------------------------------------------------------------

// ROWS (inner == 1). kWarpsPerTile warps serve one tile (see absmax_index.cuh). `vec`: x is 16-byte aligned,
// so the float4 body of each tile is aligned.
template <int kWarpsPerTile>
__global__ void __launch_bounds__(ix::kBlockThreads)
    absmax_rows_kernel(const float* __restrict__ x, const ix::AbsmaxPlan p, unsigned* __restrict__ out, bool vec) {
  __shared__ unsigned warp_partial[ix::kWarpsPerBlock];
  const int thread = static_cast<int>(threadIdx.x);
  const int lane = thread % ix::kWarpSize;
  const int warp = thread / ix::kWarpSize;
  const int rank = ix::rows_rank(p, thread);
  const int64_t group = ix::rows_group_threads(p);
  const int64_t stride = ix::tile_stride(p, gridDim.x);
  for (int64_t tile = ix::first_tile(p, blockIdx.x, thread); tile < p.num_tiles; tile += stride) {
    const ix::AbsmaxTile t = ix::absmax_tile(p, tile);
    const int64_t begin = ix::rows_begin(p, t), end = ix::rows_end(p, t);
    unsigned m = 0;
    if (vec) {
      const ix::RowsSplit s = ix::rows_split(begin, end);
      for (int64_t k = begin + rank; k < s.head_end; k += group) m = max(m, abs_bits(x[k]));
      const float4* x4 = reinterpret_cast<const float4*>(x);
#pragma unroll 4
      for (int64_t k = s.head_end / 4 + rank; k < s.body_end / 4; k += group) m = max_abs4(m, x4[k]);
      for (int64_t k = s.body_end + rank; k < end; k += group) m = max(m, abs_bits(x[k]));
    } else {
#pragma unroll 4
      for (int64_t k = begin + rank; k < end; k += group) m = max(m, abs_bits(x[k]));
    }
    m = warp_max(m);
    if (kWarpsPerTile == 1) {
      if (lane == 0) store_amax(out, t.o, canonical_amax_bits(m), p.split);
    } else {
      // The whole block serves this tile (tiles_per_block == 1, so the loop is block-uniform).
      if (lane == 0) warp_partial[warp] = m;
      __syncthreads();
      if (warp == 0) {
        m = warp_max(lane < kWarpsPerTile ? warp_partial[lane] : 0u);
        if (lane == 0) store_amax(out, t.o, canonical_amax_bits(m), p.split);
      }
      __syncthreads();  // warp_partial is reused by the next tile
    }
  }
}

// COLS (inner > 1): block 32 x 8; threadIdx.x = column within the tile, threadIdx.y strides over l.
__global__ void __launch_bounds__(ix::kBlockThreads)
    absmax_cols_kernel(const float* __restrict__ x, const ix::AbsmaxPlan p, unsigned* __restrict__ out) {
  __shared__ unsigned partial[ix::kColsBlockY][ix::kColsBlockX];
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  for (int64_t tile = blockIdx.x; tile < p.num_tiles; tile += gridDim.x) {
    const ix::AbsmaxTile t = ix::absmax_tile(p, tile);
    const int64_t i = ix::cols_column(t, tx);
    unsigned m = 0;
    if (i < p.inner) {
      int64_t k = ix::flat_index(p, t.o, t.l_begin + ty, i);
      const int64_t step = ix::kColsBlockY * p.inner;
#pragma unroll 4
      for (int64_t l = t.l_begin + ty; l < t.l_end; l += ix::kColsBlockY, k += step) m = max(m, abs_bits(x[k]));
    }
    partial[ty][tx] = m;
    __syncthreads();
    if (ty == 0) {
#pragma unroll
      for (int r = 1; r < ix::kColsBlockY; ++r) m = max(m, partial[r][tx]);
      if (i < p.inner) store_amax(out, t.o * p.inner + i, canonical_amax_bits(m), p.split);
    }
    __syncthreads();  // partial is reused by the next tile
  }
}

// In place over n = outer * inner: amax bits -> scale = hi / (amax + eps).
__global__ void __launch_bounds__(ix::kBlockThreads)
    absmax_scale_kernel(float* __restrict__ amax_to_scale, int64_t n, float hi, float eps) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    amax_to_scale[k] = qk::qk_absmax_scale(amax_to_scale[k], hi, eps);
  }
}

// ROWS quantize: same tiles and element order as absmax_rows_kernel; one scale per tile. `vec`: x is 16-byte
// and q 4-byte aligned (float4 in, char4 out).
template <int kWarpsPerTile>
__global__ void __launch_bounds__(ix::kBlockThreads)
    quantize_rows_kernel(const float* __restrict__ x, const ix::AbsmaxPlan p, const float* __restrict__ scale,
                         float lo, float hi, int8_t* __restrict__ q, bool vec) {
  const int thread = static_cast<int>(threadIdx.x);
  const int rank = ix::rows_rank(p, thread);
  const int64_t group = ix::rows_group_threads(p);
  const int64_t stride = ix::tile_stride(p, gridDim.x);
  for (int64_t tile = ix::first_tile(p, blockIdx.x, thread); tile < p.num_tiles; tile += stride) {
    const ix::AbsmaxTile t = ix::absmax_tile(p, tile);
    const int64_t begin = ix::rows_begin(p, t), end = ix::rows_end(p, t);
    const float s = scale[t.o];
    if (vec) {
      const ix::RowsSplit sp = ix::rows_split(begin, end);
      for (int64_t k = begin + rank; k < sp.head_end; k += group) q[k] = qk::qk_quantize_clip(x[k], s, lo, hi);
      const float4* x4 = reinterpret_cast<const float4*>(x);
      char4* q4 = reinterpret_cast<char4*>(q);
#pragma unroll 2
      for (int64_t k = sp.head_end / 4 + rank; k < sp.body_end / 4; k += group) {
        const float4 v = x4[k];
        q4[k] = make_char4(qk::qk_quantize_clip(v.x, s, lo, hi), qk::qk_quantize_clip(v.y, s, lo, hi),
                           qk::qk_quantize_clip(v.z, s, lo, hi), qk::qk_quantize_clip(v.w, s, lo, hi));
      }
      for (int64_t k = sp.body_end + rank; k < end; k += group) q[k] = qk::qk_quantize_clip(x[k], s, lo, hi);
    } else {
      for (int64_t k = begin + rank; k < end; k += group) q[k] = qk::qk_quantize_clip(x[k], s, lo, hi);
    }
  }
}

// COLS quantize: same tiles as absmax_cols_kernel; each thread keeps its column's scale.
__global__ void __launch_bounds__(ix::kBlockThreads)
    quantize_cols_kernel(const float* __restrict__ x, const ix::AbsmaxPlan p, const float* __restrict__ scale,
                         float lo, float hi, int8_t* __restrict__ q) {
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  for (int64_t tile = blockIdx.x; tile < p.num_tiles; tile += gridDim.x) {
    const ix::AbsmaxTile t = ix::absmax_tile(p, tile);
    const int64_t i = ix::cols_column(t, tx);
    if (i >= p.inner) continue;  // no barrier in this loop, so threads may leave early
    const float s = scale[t.o * p.inner + i];
    int64_t k = ix::flat_index(p, t.o, t.l_begin + ty, i);
    const int64_t step = ix::kColsBlockY * p.inner;
#pragma unroll 4
    for (int64_t l = t.l_begin + ty; l < t.l_end; l += ix::kColsBlockY, k += step) {
      q[k] = qk::qk_quantize_clip(x[k], s, lo, hi);
    }
  }
}

// ---- host side ------------------------------------------------------------------------------------------

void write_msg(char* buf, size_t len, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
void write_msg(char* buf, size_t len, const char* fmt, ...) {
  if (buf == nullptr || len == 0) return;
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, len, fmt, ap);
  va_end(ap);
}

qk_status cuda_status(cudaError_t e, const char* what, char* err, size_t err_len) {
  if (e == cudaSuccess) return QK_STATUS_OK;
  (void)cudaGetLastError();  // clear a non-sticky error so that it is not reported twice
  return qk_cuda_status_from_error(static_cast<int>(e), what, err, err_len);
}

#define QK_CUDA_TRY(call, what)                                       \
  do {                                                                \
    const qk_status qk_try_status_ = cuda_status((call), what, err, err_len); \
    if (qk_try_status_ != QK_STATUS_OK) return qk_try_status_;         \
  } while (0)

// a * b with overflow detection for non-negative operands.
bool mul_nonneg(int64_t a, int64_t b, int64_t* r) {
  if (a != 0 && b > INT64_MAX / a) return false;
  *r = a * b;
  return true;
}

// Validates the view and returns n = outer * len * inner and m = outer * inner. Element counts are capped
// so that byte sizes of float buffers fit in int64 as well.
qk_status check_dims(const char* op, int64_t outer, int64_t len, int64_t inner, int64_t* n, int64_t* m,
                     char* err, size_t err_len) {
  if (outer < 0 || len < 0 || inner < 0) {
    write_msg(err, err_len,
              "%s: expected non-negative dims for [outer, len, inner] but received [%lld, %lld, %lld]", op,
              static_cast<long long>(outer), static_cast<long long>(len), static_cast<long long>(inner));
    return QK_STATUS_INVALID_ARGUMENT;
  }
  int64_t ol = 0;
  if (!mul_nonneg(outer, len, &ol) || !mul_nonneg(ol, inner, n) || *n > INT64_MAX / 4 ||
      !mul_nonneg(outer, inner, m)) {
    write_msg(err, err_len, "%s: expected a tensor size below 2^61 elements but received [%lld, %lld, %lld]",
              op, static_cast<long long>(outer), static_cast<long long>(len), static_cast<long long>(inner));
    return QK_STATUS_INVALID_ARGUMENT;
  }
  return QK_STATUS_OK;
}

qk_status check_range(float lo, float hi, char* err, size_t err_len) {
  const bool ok = lo == std::rint(lo) && hi == std::rint(hi) && lo >= -128.0f && hi <= 127.0f && lo <= hi;
  if (!ok) {  // NaN fails every comparison above
    write_msg(err, err_len,
              "absmax_quantize: expected integer lo <= hi within [-128, 127] but received lo=%g, hi=%g",
              static_cast<double>(lo), static_cast<double>(hi));
    return QK_STATUS_INVALID_ARGUMENT;
  }
  return QK_STATUS_OK;
}

cudaStream_t as_stream(void* stream) {
  return stream == nullptr ? cudaStreamPerThread : static_cast<cudaStream_t>(stream);
}

qk_status current_sm_count(int* sms, char* err, size_t err_len) {
  int dev = 0;
  QK_CUDA_TRY(cudaGetDevice(&dev), "cudaGetDevice");
  QK_CUDA_TRY(cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
  return QK_STATUS_OK;
}

bool aligned(const void* ptr, uintptr_t bytes) { return (reinterpret_cast<uintptr_t>(ptr) & (bytes - 1)) == 0; }

// Enqueues the reduction of x into out_bits ([outer, inner] floats seen as their bits).
qk_status enqueue_absmax(const float* x, const ix::AbsmaxPlan& p, unsigned* out_bits, cudaStream_t stream,
                         char* err, size_t err_len) {
  if (p.num_tiles == 0) return QK_STATUS_OK;
  if (p.split) {
    QK_CUDA_TRY(cudaMemsetAsync(out_bits, 0, static_cast<size_t>(p.outer * p.inner) * sizeof(unsigned), stream),
                "cudaMemsetAsync(amax)");
  }
  const dim3 grid(static_cast<unsigned>(p.grid));
  if (p.shape == ix::AbsmaxShape::kRows) {
    const bool vec = aligned(x, 16);
    if (p.warps_per_tile == 1) {
      absmax_rows_kernel<1><<<grid, ix::kBlockThreads, 0, stream>>>(x, p, out_bits, vec);
    } else {
      absmax_rows_kernel<ix::kWarpsPerBlock><<<grid, ix::kBlockThreads, 0, stream>>>(x, p, out_bits, vec);
    }
  } else {
    absmax_cols_kernel<<<grid, dim3(ix::kColsBlockX, ix::kColsBlockY), 0, stream>>>(x, p, out_bits);
  }
  QK_CUDA_TRY(cudaGetLastError(), "absmax kernel launch");
  return QK_STATUS_OK;
}

qk_status enqueue_quantize(const float* x, const ix::AbsmaxPlan& p, float lo, float hi, float eps, int8_t* q,
                           float* scale, int sms, cudaStream_t stream, char* err, size_t err_len) {
  const qk_status st = enqueue_absmax(x, p, reinterpret_cast<unsigned*>(scale), stream, err, err_len);
  if (st != QK_STATUS_OK) return st;
  const int64_t m = p.outer * p.inner;
  if (m == 0) return QK_STATUS_OK;
  absmax_scale_kernel<<<static_cast<unsigned>(ix::elementwise_grid(m, sms)), ix::kBlockThreads, 0, stream>>>(
      scale, m, hi, eps);
  QK_CUDA_TRY(cudaGetLastError(), "absmax scale kernel launch");
  if (p.len == 0) return QK_STATUS_OK;
  const dim3 grid(static_cast<unsigned>(p.grid));
  if (p.shape == ix::AbsmaxShape::kRows) {
    const bool vec = aligned(x, 16) && aligned(q, 4);
    if (p.warps_per_tile == 1) {
      quantize_rows_kernel<1><<<grid, ix::kBlockThreads, 0, stream>>>(x, p, scale, lo, hi, q, vec);
    } else {
      quantize_rows_kernel<ix::kWarpsPerBlock><<<grid, ix::kBlockThreads, 0, stream>>>(x, p, scale, lo, hi, q, vec);
    }
  } else {
    quantize_cols_kernel<<<grid, dim3(ix::kColsBlockX, ix::kColsBlockY), 0, stream>>>(x, p, scale, lo, hi, q);
  }
  QK_CUDA_TRY(cudaGetLastError(), "absmax quantize kernel launch");
  return QK_STATUS_OK;
}

// Makes `device` current after checking that it exists and that this build has code it can run.
qk_status use_device(int device, char* err, size_t err_len) {
  int count = 0;
  char why[256];
  qk_cuda_device_count(&count, why, sizeof why);
  if (device < 0 || device >= count) {
    write_msg(err, err_len, "CUDA device %d is not available (%d device%s%s%s)", device, count,
              count == 1 ? "" : "s", why[0] ? "; " : "", why);
    return QK_STATUS_UNSUPPORTED;
  }
  QK_CUDA_TRY(cudaSetDevice(device), "cudaSetDevice");
  // The runtime's own answer to "is there SASS or PTX in this binary for this device?".
  cudaFuncAttributes attr;
  const cudaError_t e = cudaFuncGetAttributes(&attr, absmax_cols_kernel);
  if (e == cudaErrorNoKernelImageForDevice || e == cudaErrorInvalidDeviceFunction) {
    (void)cudaGetLastError();
    int major = 0, minor = 0;
    (void)cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    (void)cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
    (void)cudaGetLastError();
    write_msg(err, err_len,
              "CUDA device %d has compute capability %d.%d, which this build cannot run (it contains %s)",
              device, major, minor, qk_cuda_compiled_archs());
    return QK_STATUS_UNSUPPORTED;
  }
  QK_CUDA_TRY(e, "cudaFuncGetAttributes");
  return QK_STATUS_OK;
}

// A device allocation freed on scope exit (the launchers' error paths return early).
struct DeviceBuffer {
  void* ptr = nullptr;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr != nullptr) {
      (void)cudaFree(ptr);
      (void)cudaGetLastError();
    }
  }
  qk_status alloc(size_t bytes, const char* what, char* err, size_t err_len) {
    if (bytes == 0) return QK_STATUS_OK;
    const cudaError_t e = cudaMalloc(&ptr, bytes);
    if (e != cudaSuccess) {
      ptr = nullptr;
      (void)cudaGetLastError();
      write_msg(err, err_len, "%s: cudaMalloc of %zu bytes failed: %s: %s", what, bytes, cudaGetErrorName(e),
                cudaGetErrorString(e));
      return e == cudaErrorMemoryAllocation ? QK_STATUS_OUT_OF_MEMORY : qk_cuda_status_from_error(e, what, nullptr, 0);
    }
    return QK_STATUS_OK;
  }
};

qk_status null_pointer(const char* op, const char* name, char* err, size_t err_len) {
  write_msg(err, err_len, "%s: expected a non-null pointer for %s but received NULL", op, name);
  return QK_STATUS_INVALID_ARGUMENT;
}

}  // namespace

extern "C" {

qk_status qk_cuda_absmax_dev(const float* x, int64_t outer, int64_t len, int64_t inner, float* out, void* stream,
                             char* err, size_t err_len) {
  int64_t n = 0, m = 0;
  qk_status st = check_dims("qk_cuda_absmax_dev", outer, len, inner, &n, &m, err, err_len);
  if (st != QK_STATUS_OK || m == 0) return st;
  if (n > 0 && x == nullptr) return null_pointer("qk_cuda_absmax_dev", "x", err, err_len);
  if (out == nullptr) return null_pointer("qk_cuda_absmax_dev", "out", err, err_len);
  int sms = 1;
  st = current_sm_count(&sms, err, err_len);
  if (st != QK_STATUS_OK) return st;
  const ix::AbsmaxPlan p = ix::make_absmax_plan(outer, len, inner, sms);
  return enqueue_absmax(x, p, reinterpret_cast<unsigned*>(out), as_stream(stream), err, err_len);
}

qk_status qk_cuda_absmax_quantize_dev(const float* x, int64_t outer, int64_t len, int64_t inner, float lo,
                                      float hi, float eps, int8_t* q, float* scale, void* stream, char* err,
                                      size_t err_len) {
  int64_t n = 0, m = 0;
  qk_status st = check_dims("qk_cuda_absmax_quantize_dev", outer, len, inner, &n, &m, err, err_len);
  if (st == QK_STATUS_OK) st = check_range(lo, hi, err, err_len);
  if (st != QK_STATUS_OK || m == 0) return st;
  if (n > 0 && x == nullptr) return null_pointer("qk_cuda_absmax_quantize_dev", "x", err, err_len);
  if (n > 0 && q == nullptr) return null_pointer("qk_cuda_absmax_quantize_dev", "q", err, err_len);
  if (scale == nullptr) return null_pointer("qk_cuda_absmax_quantize_dev", "scale", err, err_len);
  int sms = 1;
  st = current_sm_count(&sms, err, err_len);
  if (st != QK_STATUS_OK) return st;
  const ix::AbsmaxPlan p = ix::make_absmax_plan(outer, len, inner, sms);
  return enqueue_quantize(x, p, lo, hi, eps, q, scale, sms, as_stream(stream), err, err_len);
}

qk_status qk_cuda_absmax(int device, const float* host_x, int64_t outer, int64_t len, int64_t inner,
                         float* host_out, char* err, size_t err_len) {
  int64_t n = 0, m = 0;
  qk_status st = check_dims("qk_cuda_absmax", outer, len, inner, &n, &m, err, err_len);
  if (st != QK_STATUS_OK || m == 0) return st;
  if (n > 0 && host_x == nullptr) return null_pointer("qk_cuda_absmax", "x", err, err_len);
  if (host_out == nullptr) return null_pointer("qk_cuda_absmax", "out", err, err_len);
  st = use_device(device, err, err_len);
  if (st != QK_STATUS_OK) return st;

  const cudaStream_t stream = cudaStreamPerThread;
  const size_t x_bytes = static_cast<size_t>(n) * sizeof(float), out_bytes = static_cast<size_t>(m) * sizeof(float);
  DeviceBuffer dx, dout;
  if ((st = dx.alloc(x_bytes, "qk_cuda_absmax(x)", err, err_len)) != QK_STATUS_OK) return st;
  if ((st = dout.alloc(out_bytes, "qk_cuda_absmax(out)", err, err_len)) != QK_STATUS_OK) return st;
  if (x_bytes > 0) QK_CUDA_TRY(cudaMemcpyAsync(dx.ptr, host_x, x_bytes, cudaMemcpyHostToDevice, stream),
                               "cudaMemcpyAsync(x to device)");
  st = qk_cuda_absmax_dev(static_cast<const float*>(dx.ptr), outer, len, inner, static_cast<float*>(dout.ptr),
                          stream, err, err_len);
  if (st != QK_STATUS_OK) return st;
  QK_CUDA_TRY(cudaMemcpyAsync(host_out, dout.ptr, out_bytes, cudaMemcpyDeviceToHost, stream),
              "cudaMemcpyAsync(amax to host)");
  QK_CUDA_TRY(cudaStreamSynchronize(stream), "qk_cuda_absmax (kernel execution)");
  return QK_STATUS_OK;
}

qk_status qk_cuda_absmax_quantize(int device, const float* host_x, int64_t outer, int64_t len, int64_t inner,
                                  float lo, float hi, float eps, int8_t* host_q, float* host_scale, char* err,
                                  size_t err_len) {
  int64_t n = 0, m = 0;
  qk_status st = check_dims("qk_cuda_absmax_quantize", outer, len, inner, &n, &m, err, err_len);
  if (st == QK_STATUS_OK) st = check_range(lo, hi, err, err_len);
  if (st != QK_STATUS_OK || m == 0) return st;
  if (n > 0 && host_x == nullptr) return null_pointer("qk_cuda_absmax_quantize", "x", err, err_len);
  if (n > 0 && host_q == nullptr) return null_pointer("qk_cuda_absmax_quantize", "q", err, err_len);
  if (host_scale == nullptr) return null_pointer("qk_cuda_absmax_quantize", "scale", err, err_len);
  st = use_device(device, err, err_len);
  if (st != QK_STATUS_OK) return st;

  const cudaStream_t stream = cudaStreamPerThread;
  const size_t x_bytes = static_cast<size_t>(n) * sizeof(float), q_bytes = static_cast<size_t>(n);
  const size_t s_bytes = static_cast<size_t>(m) * sizeof(float);
  DeviceBuffer dx, dq, ds;
  if ((st = dx.alloc(x_bytes, "qk_cuda_absmax_quantize(x)", err, err_len)) != QK_STATUS_OK) return st;
  if ((st = dq.alloc(q_bytes, "qk_cuda_absmax_quantize(q)", err, err_len)) != QK_STATUS_OK) return st;
  if ((st = ds.alloc(s_bytes, "qk_cuda_absmax_quantize(scale)", err, err_len)) != QK_STATUS_OK) return st;
  if (x_bytes > 0) QK_CUDA_TRY(cudaMemcpyAsync(dx.ptr, host_x, x_bytes, cudaMemcpyHostToDevice, stream),
                               "cudaMemcpyAsync(x to device)");
  st = qk_cuda_absmax_quantize_dev(static_cast<const float*>(dx.ptr), outer, len, inner, lo, hi, eps,
                                   static_cast<int8_t*>(dq.ptr), static_cast<float*>(ds.ptr), stream, err, err_len);
  if (st != QK_STATUS_OK) return st;
  if (q_bytes > 0) QK_CUDA_TRY(cudaMemcpyAsync(host_q, dq.ptr, q_bytes, cudaMemcpyDeviceToHost, stream),
                               "cudaMemcpyAsync(q to host)");
  QK_CUDA_TRY(cudaMemcpyAsync(host_scale, ds.ptr, s_bytes, cudaMemcpyDeviceToHost, stream),
              "cudaMemcpyAsync(scale to host)");
  QK_CUDA_TRY(cudaStreamSynchronize(stream), "qk_cuda_absmax_quantize (kernel execution)");
  return QK_STATUS_OK;
}

}  // extern "C"
