// quantkit — int8 GEMM C[M,N] (int32) = A[M,K] (int8) * B[K,N] (int8), AVX2 (qk::avx2).
//
// The engine (int16 widening + vpmaddwd, B packing, A copy, 6x16 micro-kernel, blocked and threaded driver)
// lives in igemm_avx2_kernels.h, which dense_int8_avx2.cpp shares; read its header comment for the scheme
// and the exactness argument. This file runs the driver on the plain int8 B with no epilogue.
#include <cstdint>

#include "igemm_avx2_kernels.h"
#include "qk/kernels.h"
#include "qk/threadpool.h"

namespace qk {
namespace avx2 {

Status igemm_s8s8s32(int64_t M, int64_t N, int64_t K, const int8_t* A, int64_t lda, const int8_t* B,
                     int64_t ldb, int32_t* C, int64_t ldc, ThreadPool* pool) {
  if (M <= 0 || N <= 0) return kOk;
  if (K <= 0) {
    igemm_common::zero_c(M, N, C, ldc);
    return kOk;
  }
  return igemm_driver(M, N, K, A, lda, Int8Source{B, ldb}, C, ldc, pool, [](int64_t, int64_t, int64_t, int64_t) {});
}

}  // namespace avx2
}  // namespace qk
