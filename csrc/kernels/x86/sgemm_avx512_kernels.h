// quantkit — the AVX-512 float32 GEMM micro-kernel and its blocking constants, shared by sgemm_avx512.cpp
// (sgemm) and dense_float_avx512.cpp (dense_w8 / dense_w4 / dense_w4g / dense_fp8, which feed it dequantized
// weight panels). Include it only from translation units compiled with the qk::avx512 flags; everything lives
// in an anonymous namespace inside qk::avx512, so each including unit gets its own copy and nothing compiled
// with AVX-512 flags can be picked by the linker for another path (no ODR mixing across ISA flags).
//
// SgemmTile is the blocking part of the policy P that sgemm_common.h / dense_float_common.h expect (MR, NR,
// KC, AS, NT_MAX, kernel(rows)); sgemm_avx512.cpp extends it with copy_nr and gemv.
//
// Micro-kernel: 14 rows x 32 columns = 28 zmm accumulators, 2 zmm for the B row, 1 for the broadcast A value
// (31 of the 32 zmm registers). Per k step: 2 aligned B loads, 14 broadcasts, 28 FMAs; with two 512-bit FMA
// ports that is 14 cycles of FMA work against 16 loads, so the kernel is FMA bound, and 28 independent
// accumulator chains cover the 4-cycle FMA latency many times over.
#ifndef QK_KERNELS_X86_SGEMM_AVX512_KERNELS_H_
#define QK_KERNELS_X86_SGEMM_AVX512_KERNELS_H_

#if !defined(__AVX512F__)
#error "sgemm_avx512_kernels.h needs the qk::avx512 compile flags"
#endif

#include <immintrin.h>

#include <cstdint>

#include "sgemm_common.h"

namespace qk {
namespace avx512 {
namespace {

struct SgemmTile {
  static constexpr int64_t MR = 14;
  static constexpr int64_t NR = 32;
  static constexpr int64_t KC = 384;
  static constexpr int64_t AS = KC + 16;  // 1600-byte row stride: the 14 rows fall in different L1 sets
  static constexpr int64_t NT_MAX = 512;  // packed B block <= 384 x 512 floats = 768 KB (L2 is 2 MB)

  // C[R x NR] (+)= A[R x kc] * B[kc x NR] (see KernelFn in sgemm_common.h).
  // kPacked: b is a packed panel (kc rows of NR floats, 64-byte aligned, row stride NR); otherwise b points into
  // a row-major B in place (row stride ldb, unaligned; the small-M path of sgemm_common.h).
  template <int R, bool kPacked>
  static inline __attribute__((always_inline)) void kernel_any(int64_t kc, const float* a, const float* b, int64_t ldb,
                                                                float* c, int64_t ldc, bool accumulate,
                                                                const float* pf = nullptr, int64_t npf = 0) {
    __m512 c0[R], c1[R];
#pragma GCC unroll 14
    for (int r = 0; r < R; ++r) {
      if (accumulate) {
        c0[r] = _mm512_loadu_ps(c + r * ldc);
        c1[r] = _mm512_loadu_ps(c + r * ldc + 16);
      } else {
        c0[r] = _mm512_setzero_ps();
        c1[r] = _mm512_setzero_ps();
      }
    }
    for (int64_t k = 0; k < kc; ++k) {
      if (k < npf) _mm_prefetch(reinterpret_cast<const char*>(pf + 16 * k), _MM_HINT_T1);  // line k of pf
      const __m512 b0 = kPacked ? _mm512_load_ps(b) : _mm512_loadu_ps(b);
      const __m512 b1 = kPacked ? _mm512_load_ps(b + 16) : _mm512_loadu_ps(b + 16);
#pragma GCC unroll 14
      for (int r = 0; r < R; ++r) {
        const __m512 av = _mm512_set1_ps(a[r * AS]);
        c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
        c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
      }
      a += 1;
      b += kPacked ? NR : ldb;
    }
#pragma GCC unroll 14
    for (int r = 0; r < R; ++r) {
      _mm512_storeu_ps(c + r * ldc, c0[r]);
      _mm512_storeu_ps(c + r * ldc + 16, c1[r]);
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
    static constexpr sgemm_common::KernelFn table[MR] = {
        kernel_rows<1>,  kernel_rows<2>,  kernel_rows<3>,  kernel_rows<4>,  kernel_rows<5>,
        kernel_rows<6>,  kernel_rows<7>,  kernel_rows<8>,  kernel_rows<9>,  kernel_rows<10>,
        kernel_rows<11>, kernel_rows<12>, kernel_rows<13>, kernel_rows<14>};
    return table[rows - 1];
  }
  static sgemm_common::KernelLdFn kernel_ld(int rows) {
    static constexpr sgemm_common::KernelLdFn table[MR] = {kernel_rows_ld<1>, kernel_rows_ld<2>, kernel_rows_ld<3>, kernel_rows_ld<4>, kernel_rows_ld<5>, kernel_rows_ld<6>, kernel_rows_ld<7>, kernel_rows_ld<8>, kernel_rows_ld<9>, kernel_rows_ld<10>, kernel_rows_ld<11>, kernel_rows_ld<12>, kernel_rows_ld<13>, kernel_rows_ld<14>};
    return table[rows - 1];
  }
};

}  // namespace
}  // namespace avx512
}  // namespace qk

#endif  // QK_KERNELS_X86_SGEMM_AVX512_KERNELS_H_
