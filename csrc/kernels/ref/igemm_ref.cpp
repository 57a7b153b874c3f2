// quantkit — scalar reference for the int8 GEMM (the specification of qk::*::igemm_s8s8s32).
//
// C[i][j] = sum_{k=0}^{K-1} A[i][k] * B[k][j] with int8 operands and int32 result. Every matrix is row-major
// with its own leading dimension (distance in elements between consecutive rows). K == 0 gives C = 0.
// No threads, no SIMD: the pool argument is ignored.
//
// Arithmetic is done modulo 2^32 (uint32_t), which is free of undefined behaviour and equals the exact sum
// whenever the exact sum fits in int32. The caller guarantees K <= 131072, so |sum| <= 131072 * 16384 = 2^31;
// the only value that does not fit is the single corner case K == 131072 with every product equal to
// (-128) * (-128), whose sum 2^31 wraps to INT32_MIN here. The optimised variants also compute modulo 2^32
// (their intermediate sums may wrap), so they agree with this reference bit for bit for every input.
#include <cstdint>

#include "qk/kernels.h"

namespace qk {
namespace ref {

Status igemm_s8s8s32(int64_t M, int64_t N, int64_t K, const int8_t* A, int64_t lda, const int8_t* B,
                     int64_t ldb, int32_t* C, int64_t ldc, ThreadPool* /*pool*/) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      uint32_t sum = 0;
      for (int64_t k = 0; k < K; ++k) {
        const int32_t prod = int32_t{A[i * lda + k]} * int32_t{B[k * ldb + j]};  // |prod| <= 16384
        sum += static_cast<uint32_t>(prod);
      }
      C[i * ldc + j] = static_cast<int32_t>(sum);  // modular conversion (GCC/Clang; defined in C++20)
    }
  }
  return kOk;
}

}  // namespace ref
}  // namespace qk
