// quantkit — scalar reference for the float32 GEMM (the specification of qk::*::sgemm).
//
// C[i][j] = sum_{k=0}^{K-1} A[i][k] * B[k][j], accumulated in float in ascending k order, starting from 0.
// Every matrix is row-major with its own leading dimension (distance in elements between consecutive rows).
// K == 0 gives C = 0 (the empty sum). No threads, no SIMD: the pool argument is ignored.
// Compiled with -ffp-contract=off, so each step is a separately rounded multiply and add; the optimised
// variants use fused multiply-adds in the same k order and are compared against this by tolerance.
#include "qk/kernels.h"

namespace qk {
namespace ref {

Status sgemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
             float* C, int64_t ldc, ThreadPool* /*pool*/) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      float sum = 0.0f;
      for (int64_t k = 0; k < K; ++k) sum += A[i * lda + k] * B[k * ldb + j];
      C[i * ldc + j] = sum;
    }
  }
  return kOk;
}

}  // namespace ref
}  // namespace qk
