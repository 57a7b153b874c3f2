// quantkit — element-wise device kernels: Keras int4/int2 pack/unpack on the [outer, len, inner] view and
// float32 <-> fp8 (e4m3fn, e5m2), with host-pointer launchers (qk_cuda.h). The element math is the CPU
// reference's own (qk/quant_math.h, qk/fp_convert.h, compiled __host__ __device__), so results are
// bit-identical to qk::ref::pack_int4 / unpack_int4 / pack_int2 / unpack_int2 / f32_to_fp8 / fp8_to_f32.
// One thread per output element in a grid-stride loop.
#include <cuda_runtime.h>

#include <cstdint>

#include "launch_util.cuh"
#include "qk/fp_convert.h"
#include "qk/quant_math.h"

namespace {

namespace cl = qk::cuda_launch;

__device__ __forceinline__ uint8_t at_or_zero(const uint8_t* src, int64_t o, int64_t l, int64_t len, int64_t inner,
                                              int64_t i) {
  return l < len ? src[(o * len + l) * inner + i] : 0;
}

// op: QK_CUDA_PACK_* / UNPACK_*; per = 2 (int4) or 4 (int2) elements per byte.
__global__ void __launch_bounds__(256) pack_kernel(int op, const uint8_t* __restrict__ src, int64_t outer,
                                                   int64_t len, int64_t inner, uint8_t* __restrict__ dst) {
  const bool int4 = op <= QK_CUDA_UNPACK_INT4_SIGNED;
  const int per = int4 ? 2 : 4;
  const bool pack = op == QK_CUDA_PACK_INT4 || op == QK_CUDA_PACK_INT2;
  const bool is_signed = op == QK_CUDA_UNPACK_INT4_SIGNED || op == QK_CUDA_UNPACK_INT2_SIGNED;
  const int64_t plen = (len + per - 1) / per;
  const int64_t total = outer * (pack ? plen : len) * inner;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = idx % inner, rest = idx / inner;
    if (pack) {
      const int64_t k = rest % plen, o = rest / plen;
      dst[idx] = int4 ? qk::qk_pack_nibbles(at_or_zero(src, o, 2 * k, len, inner, i),
                                            at_or_zero(src, o, 2 * k + 1, len, inner, i))
                      : qk::qk_pack_crumbs(at_or_zero(src, o, 4 * k, len, inner, i),
                                           at_or_zero(src, o, 4 * k + 1, len, inner, i),
                                           at_or_zero(src, o, 4 * k + 2, len, inner, i),
                                           at_or_zero(src, o, 4 * k + 3, len, inner, i));
    } else {
      const int64_t l = rest % len, o = rest / len;
      const uint8_t byte = src[(o * plen + l / per) * inner + i];
      dst[idx] = int4 ? qk::qk_unpack_nibble(byte, static_cast<int>(l % 2), is_signed)
                      : qk::qk_unpack_crumb(byte, static_cast<int>(l % 4), is_signed);
    }
  }
}

__global__ void __launch_bounds__(256) to_fp8_kernel(const float* __restrict__ src, uint8_t* __restrict__ dst,
                                                     int64_t n, int fmt) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[k] = fmt == 0 ? qk::fp::f32_to_e4m3fn_one(src[k]) : qk::fp::f32_to_e5m2_one(src[k]);
  }
}

__global__ void __launch_bounds__(256) from_fp8_kernel(const uint8_t* __restrict__ src, float* __restrict__ dst,
                                                       int64_t n, int fmt) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[k] = fmt == 0 ? qk::fp::e4m3fn_to_f32_one(src[k]) : qk::fp::e5m2_to_f32_one(src[k]);
  }
}

unsigned grid_for(int64_t n) {
  const int64_t b = (n + 255) / 256;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65536 ? 65536 : b));
}

}  // namespace

extern "C" {

qk_status qk_cuda_pack(int device, int op, const uint8_t* src, int64_t outer, int64_t len, int64_t inner,
                       uint8_t* dst, char* err, size_t err_len) {
  if (op < QK_CUDA_PACK_INT4 || op > QK_CUDA_UNPACK_INT2_SIGNED) return cl::invalid(err, err_len, "qk_cuda_pack", "unknown op");
  if (outer < 0 || len < 0 || inner < 0 || outer > (int64_t{1} << 40) || len > (int64_t{1} << 40) ||
      inner > (int64_t{1} << 40)) {
    return cl::invalid(err, err_len, "qk_cuda_pack", "bad dims");
  }
  const int per = op <= QK_CUDA_UNPACK_INT4_SIGNED ? 2 : 4;
  const bool pack = op == QK_CUDA_PACK_INT4 || op == QK_CUDA_PACK_INT2;
  const int64_t full = outer * len * inner, packed = outer * ((len + per - 1) / per) * inner;
  const int64_t in_n = pack ? full : packed, out_n = pack ? packed : full;
  if (out_n == 0) return QK_STATUS_OK;
  if (src == nullptr || dst == nullptr) return cl::invalid(err, err_len, "qk_cuda_pack", "NULL pointer");
  void* sv = nullptr;
  QK_ST_TRY(qk_cuda_worker_stream(device, &sv, err, err_len));
  const cudaStream_t st = static_cast<cudaStream_t>(sv);
  cl::Scratch ds(device, st), dd(device, st);
  QK_ST_TRY(cl::upload(ds, src, static_cast<size_t>(in_n), st, "upload src", err, err_len));
  QK_ST_TRY(dd.alloc(static_cast<size_t>(out_n), err, err_len));
  pack_kernel<<<grid_for(out_n), 256, 0, st>>>(op, ds.as<uint8_t>(), outer, len, inner, dd.as<uint8_t>());
  QK_CU_TRY(cudaGetLastError(), "pack kernel launch");
  QK_CU_TRY(cudaMemcpyAsync(dst, dd.get(), static_cast<size_t>(out_n), cudaMemcpyDeviceToHost, st), "download");
  QK_CU_TRY(cudaStreamSynchronize(st), "pack (kernel execution)");
  return QK_STATUS_OK;
}

qk_status qk_cuda_f32_to_fp8(int device, const float* src, uint8_t* dst, int64_t n, int fmt, char* err,
                             size_t err_len) {
  if (n < 0 || n > (int64_t{1} << 40) || (fmt != 0 && fmt != 1)) return cl::invalid(err, err_len, "qk_cuda_f32_to_fp8", "bad arguments");
  if (n == 0) return QK_STATUS_OK;
  if (src == nullptr || dst == nullptr) return cl::invalid(err, err_len, "qk_cuda_f32_to_fp8", "NULL pointer");
  void* sv = nullptr;
  QK_ST_TRY(qk_cuda_worker_stream(device, &sv, err, err_len));
  const cudaStream_t st = static_cast<cudaStream_t>(sv);
  cl::Scratch ds(device, st), dd(device, st);
  QK_ST_TRY(cl::upload(ds, src, static_cast<size_t>(n) * 4, st, "upload src", err, err_len));
  QK_ST_TRY(dd.alloc(static_cast<size_t>(n), err, err_len));
  to_fp8_kernel<<<grid_for(n), 256, 0, st>>>(ds.as<float>(), dd.as<uint8_t>(), n, fmt);
  QK_CU_TRY(cudaGetLastError(), "fp8 kernel launch");
  QK_CU_TRY(cudaMemcpyAsync(dst, dd.get(), static_cast<size_t>(n), cudaMemcpyDeviceToHost, st), "download");
  QK_CU_TRY(cudaStreamSynchronize(st), "f32_to_fp8 (kernel execution)");
  return QK_STATUS_OK;
}

qk_status qk_cuda_fp8_to_f32(int device, const uint8_t* src, float* dst, int64_t n, int fmt, char* err,
                             size_t err_len) {
  if (n < 0 || n > (int64_t{1} << 40) || (fmt != 0 && fmt != 1)) return cl::invalid(err, err_len, "qk_cuda_fp8_to_f32", "bad arguments");
  if (n == 0) return QK_STATUS_OK;
  if (src == nullptr || dst == nullptr) return cl::invalid(err, err_len, "qk_cuda_fp8_to_f32", "NULL pointer");
  void* sv = nullptr;
  QK_ST_TRY(qk_cuda_worker_stream(device, &sv, err, err_len));
  const cudaStream_t st = static_cast<cudaStream_t>(sv);
  cl::Scratch ds(device, st), dd(device, st);
  QK_ST_TRY(cl::upload(ds, src, static_cast<size_t>(n), st, "upload src", err, err_len));
  QK_ST_TRY(dd.alloc(static_cast<size_t>(n) * 4, err, err_len));
  from_fp8_kernel<<<grid_for(n), 256, 0, st>>>(ds.as<uint8_t>(), dd.as<float>(), n, fmt);
  QK_CU_TRY(cudaGetLastError(), "fp8 kernel launch");
  QK_CU_TRY(cudaMemcpyAsync(dst, dd.get(), static_cast<size_t>(n) * 4, cudaMemcpyDeviceToHost, st), "download");
  QK_CU_TRY(cudaStreamSynchronize(st), "fp8_to_f32 (kernel execution)");
  return QK_STATUS_OK;
}

}  // extern "C"
