// quantkit — fused dequantize GEMM / decode GEMV for the weight-only formats (GPTQ 2/3/4/8-bit runtime layout and
// Keras grouped int4), float32 / float16 / bfloat16 activations, with its C-ABI launchers (qk_cuda.h).
//
// No float copy of the weight is ever made: each thread loads the `bits` bytes holding its 8 columns of a row,
// dequantizes them in registers with the group's scale/zero and accumulates kRows activation rows at once. A
// block = 8 warps x 32 lanes covers 256 columns; the warps split K into 8 contiguous slices and their partial
// sums are added in warp order through shared memory. Rows are processed kRows at a time (grid.y strides over
// them), so for M = 1 (decode) this is a GEMV reading the packed weight exactly once.
// CUDA cores: for large M the weight is re-read once per kRows rows, so with float16/bfloat16 activations on sm_80+
// the launcher hands M >= 16 to the Tensor-Core GEMM of wq_mma.cu instead. Rows may address their group through
// g_idx (wq_layout.cuh: group_index).
// The per-thread loop is qk::wq::accumulate (wq_layout.cuh), the code the host test runs against
// qk::ref::dense_gptq / dense_w4g.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "launch_util.cuh"
#include "wq_layout.cuh"
#include "wq_mma_layout.cuh"

namespace qk {
namespace wqmma {
qk_status launch_mma(int dtype, const void* x, const wq::Problem& p, const float* bias, void* y, cudaStream_t st,
                     char* err, size_t err_len);  // wq_mma.cu
}  // namespace wqmma
}  // namespace qk

namespace {

namespace w = qk::wq;
namespace cl = qk::cuda_launch;

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <typename T>
struct XLoad {
  const T* x;
  int64_t K;
  __device__ __forceinline__ float operator()(int64_t i, int64_t k) const { return to_f32(__ldg(x + i * K + k)); }
};

constexpr int kPartial = w::kRows * w::kCols * 32;  // floats per warp in shared memory

template <typename T>
__global__ void __launch_bounds__(w::kThreads) wq_gemm_kernel(const T* __restrict__ x, const w::Problem p,
                                                              const float* __restrict__ bias, T* __restrict__ y) {
  __shared__ float part[w::kWarps * kPartial];  // [warp][r * kCols + t][lane]: 32 KiB
  const int tid = static_cast<int>(threadIdx.x);
  const int lane = tid & 31, warp = tid >> 5;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * 32 + lane;
  const int64_t kb = w::k_begin(p.K, warp), ke = w::k_end(p.K, warp);
  const XLoad<T> xload{x, p.K};
  for (int64_t m0 = static_cast<int64_t>(blockIdx.y) * w::kRows; m0 < p.M;
       m0 += static_cast<int64_t>(gridDim.y) * w::kRows) {
    float acc[w::kRows][w::kCols];
#pragma unroll
    for (int r = 0; r < w::kRows; ++r)
#pragma unroll
      for (int t = 0; t < w::kCols; ++t) acc[r][t] = 0.0f;
    if (c * w::kCols < p.N) w::accumulate(p, xload, m0, c, kb, ke, acc);
#pragma unroll
    for (int r = 0; r < w::kRows; ++r)
#pragma unroll
      for (int t = 0; t < w::kCols; ++t) part[warp * kPartial + (r * w::kCols + t) * 32 + lane] = acc[r][t];
    __syncthreads();
    // Output (m0 + r, (blockIdx.x * 32 + l) * 8 + t): t fastest, so consecutive threads store consecutive columns.
    for (int idx = tid; idx < kPartial; idx += w::kThreads) {
      const int r = idx / (32 * w::kCols), l = (idx / w::kCols) % 32, t = idx % w::kCols;
      const int64_t row = m0 + r, col = (static_cast<int64_t>(blockIdx.x) * 32 + l) * w::kCols + t;
      if (row < p.M && col < p.N) {
        y[row * p.N + col] = from_f32<T>(w::finish(&part[(r * w::kCols + t) * 32 + l], kPartial, bias, col));
      }
    }
    __syncthreads();
  }
}

template <typename T>
qk_status launch(const void* x, const w::Problem& p, const float* bias, void* y, cudaStream_t st, char* err,
                 size_t err_len) {
  const int64_t gx = (p.N + w::kBlockCols - 1) / w::kBlockCols;
  int64_t gy = (p.M + w::kRows - 1) / w::kRows;
  gy = gy > 65535 ? 65535 : gy;
  wq_gemm_kernel<T><<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), w::kThreads, 0, st>>>(
      static_cast<const T*>(x), p, bias, static_cast<T*>(y));
  QK_CU_TRY(cudaGetLastError(), "dense_wq kernel launch");
  return QK_STATUS_OK;
}

qk_status check_wq(int dtype, int64_t M, int64_t N, int64_t K, int bits, int is_signed, int64_t group, int path,
                   char* err, size_t err_len) {
  const char* op = "qk_cuda_dense_wq";
  if (path < QK_CUDA_WQ_AUTO || path > QK_CUDA_WQ_MMA) return cl::invalid(err, err_len, op, "path must be 0, 1 or 2");
  if (M < 0 || N < 0 || K < 0) return cl::invalid(err, err_len, op, "expected non-negative M, N, K");
  if (dtype < QK_CUDA_F32 || dtype > QK_CUDA_BF16) return cl::invalid(err, err_len, op, "dtype must be 0, 1 or 2");
  if (!(bits == 2 || bits == 3 || bits == 4 || bits == 8)) return cl::invalid(err, err_len, op, "bits must be 2, 3, 4 or 8");
  if (is_signed && bits != 4) return cl::invalid(err, err_len, op, "signed (Keras int4) weights have 4 bits");
  if (group < 1) return cl::invalid(err, err_len, op, "group must be >= 1");
  if (N > (int64_t{1} << 40) || K > (int64_t{1} << 40) || M > (int64_t{1} << 40)) {
    return cl::invalid(err, err_len, op, "dims too large");
  }
  if ((N + w::kBlockCols - 1) / w::kBlockCols > 0x7FFFFFFF) return cl::invalid(err, err_len, op, "N too large");
  return QK_STATUS_OK;
}

size_t dtype_bytes(int dtype) { return dtype == QK_CUDA_F32 ? 4 : 2; }

}  // namespace

extern "C" {

qk_status qk_cuda_dense_wq_dev(int dtype, const void* x, int64_t M, int64_t N, int64_t K, const uint8_t* wq,
                               int bits, int is_signed, const float* scale, const uint8_t* zero, int64_t group,
                               const int32_t* g_idx, const float* bias, void* y, int path, void* stream, char* err,
                               size_t err_len) {
  QK_ST_TRY(check_wq(dtype, M, N, K, bits, is_signed, group, path, err, err_len));
  if (M == 0 || N == 0) return QK_STATUS_OK;
  if (y == nullptr || (K > 0 && (x == nullptr || wq == nullptr || scale == nullptr || zero == nullptr))) {
    return cl::invalid(err, err_len, "qk_cuda_dense_wq", "NULL pointer");
  }
  const int64_t G = (K + group - 1) / group;
  const w::Problem p{M, N, K, wq, bits, is_signed != 0, scale, zero, group, g_idx, G};
  const cudaStream_t st = cl::as_stream(stream);
  bool mma = false;
  if (path != QK_CUDA_WQ_SIMT && dtype != QK_CUDA_F32) {
    int cc = 0;
    QK_ST_TRY(cl::current_cc(&cc, err, err_len));
    mma = qk::cuda_arch::supports(cc, qk::cuda_arch::Feature::kF16Mma) &&
          (path == QK_CUDA_WQ_MMA || M >= qk::wqmma::kMinRows);
  }
  if (path == QK_CUDA_WQ_MMA && !mma) {
    if (dtype == QK_CUDA_F32) {
      return cl::invalid(err, err_len, "qk_cuda_dense_wq", "the Tensor-Core path needs float16 or bfloat16 x");
    }
    QK_ST_TRY(cl::require(qk::cuda_arch::Feature::kF16Mma, err, err_len));
  }
  if (mma) return qk::wqmma::launch_mma(dtype, x, p, bias, y, st, err, err_len);
  switch (dtype) {
    case QK_CUDA_F16: return launch<__half>(x, p, bias, y, st, err, err_len);
    case QK_CUDA_BF16: return launch<__nv_bfloat16>(x, p, bias, y, st, err, err_len);
    default: return launch<float>(x, p, bias, y, st, err, err_len);
  }
}

qk_status qk_cuda_dense_wq(int device, int dtype, const void* x, int64_t M, int64_t N, int64_t K,
                           const uint8_t* wq, int bits, int is_signed, const float* scale, const uint8_t* zero,
                           int64_t group, const int32_t* g_idx, const float* bias, void* y, int path, char* err,
                           size_t err_len) {
  QK_ST_TRY(check_wq(dtype, M, N, K, bits, is_signed, group, path, err, err_len));
  const int64_t G = K == 0 ? 0 : (K + group - 1) / group;
  if (g_idx != nullptr) {
    for (int64_t k = 0; k < K; ++k) {
      if (g_idx[k] < 0 || g_idx[k] >= G) {
        cl::write_msg(err, err_len, "qk_cuda_dense_wq: g_idx[%lld] = %d is outside [0, %lld)",
                      static_cast<long long>(k), static_cast<int>(g_idx[k]), static_cast<long long>(G));
        return QK_STATUS_INVALID_ARGUMENT;
      }
    }
  }
  if (M == 0 || N == 0) return QK_STATUS_OK;
  void* sv = nullptr;
  QK_ST_TRY(qk_cuda_worker_stream(device, &sv, err, err_len));
  const cudaStream_t st = static_cast<cudaStream_t>(sv);
  const size_t eb = dtype_bytes(dtype);
  cl::Scratch dx(device, st), dw(device, st), ds(device, st), dz(device, st), dg(device, st), db(device, st),
      dy(device, st);
  QK_ST_TRY(cl::upload(dx, x, static_cast<size_t>(M * K) * eb, st, "upload x", err, err_len));
  QK_ST_TRY(cl::upload(dw, wq, static_cast<size_t>(K * w::row_bytes(N, bits)), st, "upload wq", err, err_len));
  QK_ST_TRY(cl::upload(ds, scale, static_cast<size_t>(G * N) * 4, st, "upload scale", err, err_len));
  QK_ST_TRY(cl::upload(dz, zero, static_cast<size_t>(G * N), st, "upload zero", err, err_len));
  if (g_idx != nullptr) QK_ST_TRY(cl::upload(dg, g_idx, static_cast<size_t>(K) * 4, st, "upload g_idx", err, err_len));
  if (bias != nullptr) QK_ST_TRY(cl::upload(db, bias, static_cast<size_t>(N) * 4, st, "upload bias", err, err_len));
  QK_ST_TRY(dy.alloc(static_cast<size_t>(M * N) * eb, err, err_len));
  QK_ST_TRY(qk_cuda_dense_wq_dev(dtype, dx.get(), M, N, K, dw.as<uint8_t>(), bits, is_signed, ds.as<float>(),
                                 dz.as<uint8_t>(), group, g_idx != nullptr ? dg.as<int32_t>() : nullptr,
                                 bias != nullptr ? db.as<float>() : nullptr, dy.get(), path, st, err, err_len));
  QK_CU_TRY(cudaMemcpyAsync(y, dy.get(), static_cast<size_t>(M * N) * eb, cudaMemcpyDeviceToHost, st), "download y");
  QK_CU_TRY(cudaStreamSynchronize(st), "dense_wq (kernel execution)");
  return QK_STATUS_OK;
}

}  // extern "C"
