// quantkit — int8 GEMM C[M,N] (int32) = A[M,K] (int8) * B[K,N] (int8), AVX-512 VNNI (qk::avx512).
//
// The engine (vpdpbusd with B shifted to u8 and a per-row compensation, B packing, A copy, 6x64
// micro-kernel, blocked and threaded driver) lives in igemm_avx512_kernels.h, which dense_int8_avx512.cpp
// shares; read its header comment for the layouts and the exactness argument. This file computes the row
// compensation 128 * rowsum(A) and runs the driver on the plain int8 B with no epilogue.
#include <algorithm>
#include <cstdint>

#include "igemm_avx512_kernels.h"
#include "qk/kernels.h"
#include "qk/packed.h"
#include "qk/threadpool.h"

namespace qk {
namespace avx512 {

namespace {

// C = A * B with B read through src, or pre-packed (packed != nullptr, see igemm_driver).
template <class Src>
Status igemm_any(int64_t M, int64_t N, int64_t K, const int8_t* A, int64_t lda, const Src& src, const uint8_t* packed,
                 int32_t* C, int64_t ldc, ThreadPool* pool) {
  if (M <= 0 || N <= 0) return kOk;
  if (K <= 0) {
    igemm_common::zero_c(M, N, C, ldc);
    return kOk;
  }
  igemm_common::Scratch comp_buf(static_cast<std::size_t>(M) * sizeof(int32_t));
  if (comp_buf.data() == nullptr) return QK_STATUS_OUT_OF_MEMORY;
  int32_t* comp = reinterpret_cast<int32_t*>(comp_buf.data());

  // Row compensation 128 * rowsum(A), in parallel over rows when worth it.
  const auto comp_rows = [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) comp[i] = row_comp(A + i * lda, K);
  };
  if (pool != nullptr && M * K >= (int64_t{1} << 18)) {
    pool->parallel_for(M, std::max<int64_t>(1, (int64_t{1} << 16) / K), comp_rows);
  } else {
    comp_rows(0, M);
  }
  return igemm_driver(M, N, K, A, lda, comp, src, C, ldc, pool, [](int64_t, int64_t, int64_t, int64_t) {}, packed);
}

}  // namespace

Status igemm_s8s8s32(int64_t M, int64_t N, int64_t K, const int8_t* A, int64_t lda, const int8_t* B,
                     int64_t ldb, int32_t* C, int64_t ldc, ThreadPool* pool) {
  return igemm_any(M, N, K, A, lda, Int8Source{B, ldb}, nullptr, C, ldc, pool);
}

Status igemm_packed(int64_t M, int64_t N, int64_t K, const int8_t* A, int64_t lda, const uint8_t* Bp, int32_t* C,
                    int64_t ldc, ThreadPool* pool) {
  return igemm_any(M, N, K, A, lda, Int8Source{nullptr, N}, Bp, C, ldc, pool);
}

}  // namespace avx512
}  // namespace qk
