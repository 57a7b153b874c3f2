// quantkit — float32 SIMT tiled GEMM for the float Dense layers on the device: y[M, N] = x[M, K] @ w[K, N] + bias
// (row-major, w in the Keras [in, out] layout), register-blocked 4 x 4 outputs per thread, shared-memory tiles
// of 64 x 16 (A) and 16 x 64 (B). The tiling is cuda/gemm_f32_tiling.cuh (host-tested). No Tensor Cores: this is
// the portable float path (every supported arch), with fmaf accumulation in increasing k per output, so it
// matches the CPU sgemm to float32 rounding (a different summation order).
#include <cuda_runtime.h>

#include <cstdint>

#include "gemm_f32_tiling.cuh"
#include "launch_util.cuh"

namespace {

namespace sg = qk::sgemm;
namespace cl = qk::cuda_launch;

__global__ void __launch_bounds__(sg::kThreads) sgemm_f32_kernel(const float* __restrict__ x,
                                                                 const float* __restrict__ w,
                                                                 const float* __restrict__ bias,
                                                                 float* __restrict__ y, int64_t M, int64_t N,
                                                                 int64_t K) {
  __shared__ float as[sg::kSmemAFloats];
  __shared__ float bs[sg::kSmemBFloats];
  const int tid = static_cast<int>(threadIdx.x);
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * sg::kBM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * sg::kBN;
  float acc[sg::kTM][sg::kTN];
#pragma unroll
  for (int i = 0; i < sg::kTM; ++i) {
#pragma unroll
    for (int j = 0; j < sg::kTN; ++j) acc[i][j] = 0.0f;
  }
  for (int64_t k0 = 0; k0 < K; k0 += sg::kBK) {
#pragma unroll
    for (int r = 0; r < sg::kLoadsA; ++r) {
      const sg::RC e = sg::a_load(tid, r);
      const int64_t gm = m0 + e.row, gk = k0 + e.col;
      as[sg::a_smem(e.row, e.col)] = (gm < M && gk < K) ? __ldg(x + gm * K + gk) : 0.0f;
    }
#pragma unroll
    for (int r = 0; r < sg::kLoadsB; ++r) {
      const sg::RC e = sg::b_load(tid, r);
      const int64_t gk = k0 + e.row, gn = n0 + e.col;
      bs[sg::b_smem(e.row, e.col)] = (gk < K && gn < N) ? __ldg(w + gk * N + gn) : 0.0f;
    }
    __syncthreads();
    sg::mac_tile(as, bs, tid, acc);
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < sg::kTM; ++i) {
    const int64_t gm = m0 + sg::out_row(tid, i);
    if (gm >= M) continue;
#pragma unroll
    for (int j = 0; j < sg::kTN; ++j) {
      const int64_t gn = n0 + sg::out_col(tid, j);
      if (gn >= N) continue;
      y[gm * N + gn] = bias != nullptr ? acc[i][j] + __ldg(bias + gn) : acc[i][j];
    }
  }
}

qk_status check_f32(int64_t M, int64_t N, int64_t K, char* err, size_t err_len) {
  const char* op = "qk_cuda_dense_f32";
  if (M < 0 || N < 0 || K < 0) return cl::invalid(err, err_len, op, "expected non-negative M, N, K");
  if (sg::blocks_n(N) > 0x7FFFFFFF) return cl::invalid(err, err_len, op, "N too large");
  if (sg::blocks_m(M) > 65535) return cl::invalid(err, err_len, op, "M too large (at most 4194240 rows)");
  return QK_STATUS_OK;
}

}  // namespace

extern "C" {

qk_status qk_cuda_dense_f32_dev(const float* x, int64_t M, int64_t N, int64_t K, const float* w, const float* bias,
                                float* y, void* stream, char* err, size_t err_len) {
  QK_ST_TRY(check_f32(M, N, K, err, err_len));
  if (M == 0 || N == 0) return QK_STATUS_OK;
  if (y == nullptr || (K > 0 && (x == nullptr || w == nullptr))) {
    return cl::invalid(err, err_len, "qk_cuda_dense_f32", "NULL pointer");
  }
  const dim3 grid(static_cast<unsigned>(sg::blocks_n(N)), static_cast<unsigned>(sg::blocks_m(M)));
  sgemm_f32_kernel<<<grid, sg::kThreads, 0, cl::as_stream(stream)>>>(x, w, bias, y, M, N, K);
  QK_CU_TRY(cudaGetLastError(), "sgemm_f32_kernel launch");
  return QK_STATUS_OK;
}

qk_status qk_cuda_dense_f32(int device, const float* x, int64_t M, int64_t N, int64_t K, const float* w,
                            const float* bias, float* y, char* err, size_t err_len) {
  QK_ST_TRY(check_f32(M, N, K, err, err_len));
  if (M == 0 || N == 0) return QK_STATUS_OK;
  void* sv = nullptr;
  QK_ST_TRY(qk_cuda_worker_stream(device, &sv, err, err_len));
  const cudaStream_t st = static_cast<cudaStream_t>(sv);
  cl::Scratch dx(device, st), dw(device, st), db(device, st), dy(device, st);
  QK_ST_TRY(cl::upload(dx, x, static_cast<size_t>(M * K) * 4, st, "upload x", err, err_len));
  QK_ST_TRY(cl::upload(dw, w, static_cast<size_t>(K * N) * 4, st, "upload w", err, err_len));
  if (bias != nullptr) QK_ST_TRY(cl::upload(db, bias, static_cast<size_t>(N) * 4, st, "upload bias", err, err_len));
  QK_ST_TRY(dy.alloc(static_cast<size_t>(M * N) * 4, err, err_len));
  QK_ST_TRY(qk_cuda_dense_f32_dev(dx.as<float>(), M, N, K, dw.as<float>(), bias != nullptr ? db.as<float>() : nullptr,
                                  dy.as<float>(), st, err, err_len));
  QK_CU_TRY(cudaMemcpyAsync(y, dy.get(), static_cast<size_t>(M * N) * 4, cudaMemcpyDeviceToHost, st), "download y");
  QK_CU_TRY(cudaStreamSynchronize(st), "dense_f32 (kernel execution)");
  return QK_STATUS_OK;
}

}  // extern "C"
