// quantkit — the AVX2 + FMA float32 GEMM micro-kernel and its blocking constants, shared by sgemm_avx2.cpp
// (sgemm) and dense_float_avx2.cpp (dense_w8 / dense_w4 / dense_w4g / dense_fp8, which feed it dequantized
// weight panels). Include it only from translation units compiled with the qk::avx2 flags; everything lives in
// an anonymous namespace inside qk::avx2, so each including unit gets its own copy (no ODR mixing across ISA
// flags).
//
// SgemmTile is the blocking part of the policy P that sgemm_common.h / dense_float_common.h expect (MR, NR,
// KC, AS, NT_MAX, kernel(rows)); sgemm_avx2.cpp extends it with copy_nr and gemv.
//
// Micro-kernel: 6 rows x 16 columns = 12 ymm accumulators, 2 ymm for the B row, 1 for the broadcast A value
// (15 of the 16 ymm registers). Per k step: 2 aligned B loads, 6 broadcasts, 12 FMAs (6 cycles on two FMA
// ports); 12 independent chains cover the FMA latency.
#ifndef QK_KERNELS_X86_SGEMM_AVX2_KERNELS_H_
#define QK_KERNELS_X86_SGEMM_AVX2_KERNELS_H_

#if !defined(__AVX2__) || !defined(__FMA__)
#error "sgemm_avx2_kernels.h needs the qk::avx2 compile flags"
#endif

#include <immintrin.h>

#include <cstdint>

#include "sgemm_common.h"

namespace qk {
namespace avx2 {
namespace {

struct SgemmTile {
  static constexpr int64_t MR = 6;
  static constexpr int64_t NR = 16;
  static constexpr int64_t KC = 384;
  static constexpr int64_t AS = KC + 16;  // 1600-byte row stride: the rows fall in different L1 sets
  static constexpr int64_t NT_MAX = 512;  // packed B block <= 384 x 512 floats = 768 KB

  // C[R x NR] (+)= A[R x kc] * B[kc x NR] (see KernelFn in sgemm_common.h).
  // kPacked: b is a packed panel (kc rows of NR floats, 64-byte aligned, row stride NR); otherwise b points into
  // a row-major B in place (row stride ldb, unaligned; the small-M path of sgemm_common.h).
  template <int R, bool kPacked>
  static inline __attribute__((always_inline)) void kernel_any(int64_t kc, const float* a, const float* b, int64_t ldb,
                                                                float* c, int64_t ldc, bool accumulate,
                                                                const float* pf = nullptr, int64_t npf = 0) {
    __m256 c0[R], c1[R];
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      if (accumulate) {
        c0[r] = _mm256_loadu_ps(c + r * ldc);
        c1[r] = _mm256_loadu_ps(c + r * ldc + 8);
      } else {
        c0[r] = _mm256_setzero_ps();
        c1[r] = _mm256_setzero_ps();
      }
    }
    for (int64_t k = 0; k < kc; ++k) {
      if (k < npf) _mm_prefetch(reinterpret_cast<const char*>(pf + 16 * k), _MM_HINT_T1);  // line k of pf
      const __m256 b0 = kPacked ? _mm256_load_ps(b) : _mm256_loadu_ps(b);
      const __m256 b1 = kPacked ? _mm256_load_ps(b + 8) : _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r) {
        const __m256 av = _mm256_broadcast_ss(a + r * AS);
        c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
        c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
      }
      a += 1;
      b += kPacked ? NR : ldb;
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      _mm256_storeu_ps(c + r * ldc, c0[r]);
      _mm256_storeu_ps(c + r * ldc + 8, c1[r]);
    }
  }

  template <int R>
  static void kernel_rows(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate,
                          const float* pf, int64_t npf) {
    kernel_any<R, true>(kc, a, b, NR, c, ldc, accumulate, pf, npf);
  }
  template <int R>
  static void kernel_rows_ld(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc,
                             bool accumulate) {
    kernel_any<R, false>(kc, a, b, ldb, c, ldc, accumulate);
  }

  static sgemm_common::KernelFn kernel(int rows) {
    static constexpr sgemm_common::KernelFn table[MR] = {kernel_rows<1>, kernel_rows<2>, kernel_rows<3>,
                                                         kernel_rows<4>, kernel_rows<5>, kernel_rows<6>};
    return table[rows - 1];
  }
  static sgemm_common::KernelLdFn kernel_ld(int rows) {
    static constexpr sgemm_common::KernelLdFn table[MR] = {kernel_rows_ld<1>, kernel_rows_ld<2>, kernel_rows_ld<3>, kernel_rows_ld<4>, kernel_rows_ld<5>, kernel_rows_ld<6>};
    return table[rows - 1];
  }
};

}  // namespace
}  // namespace avx2
}  // namespace qk

#endif  // QK_KERNELS_X86_SGEMM_AVX2_KERNELS_H_
