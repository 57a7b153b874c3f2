// quantkit — float32 GEMM, AVX-512 variant (see sgemm_common.h for the blocking, packing and threading).
//
// Micro-kernel: 14 rows x 32 columns = 28 zmm accumulators, 2 zmm for the B row, 1 for the broadcast A value
// (31 of the 32 zmm registers). Per k step: 2 aligned B loads, 14 broadcasts, 28 FMAs; with two 512-bit FMA
// ports that is 14 cycles of FMA work against 16 loads, so the kernel is FMA bound, and 28 independent
// accumulator chains cover the 4-cycle FMA latency many times over.
// M == 1 (GEMV) streams four rows of B at a time through a column strip of C held in L1.
#include <immintrin.h>

#include "qk/kernels.h"
#include "sgemm_common.h"

namespace qk {
namespace avx512 {
namespace {

using sgemm_common::KernelFn;

struct Policy {
  static constexpr int64_t MR = 14;
  static constexpr int64_t NR = 32;
  static constexpr int64_t KC = 384;
  static constexpr int64_t AS = KC + 16;  // 1600-byte row stride: the 14 rows fall in different L1 sets
  static constexpr int64_t NT_MAX = 512;  // packed B block <= 384 x 512 floats = 768 KB (L2 is 2 MB)

  // C[R x NR] (+)= A[R x kc] * B[kc x NR] (see KernelFn in sgemm_common.h).
  template <int R>
  static void kernel_rows(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
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
      const __m512 b0 = _mm512_load_ps(b);
      const __m512 b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 14
      for (int r = 0; r < R; ++r) {
        const __m512 av = _mm512_set1_ps(a[r * AS]);
        c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
        c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
      }
      a += 1;
      b += NR;
    }
#pragma GCC unroll 14
    for (int r = 0; r < R; ++r) {
      _mm512_storeu_ps(c + r * ldc, c0[r]);
      _mm512_storeu_ps(c + r * ldc + 16, c1[r]);
    }
  }

  static KernelFn kernel(int rows) {
    static constexpr KernelFn table[MR] = {
        kernel_rows<1>,  kernel_rows<2>,  kernel_rows<3>,  kernel_rows<4>,
        kernel_rows<5>,  kernel_rows<6>,  kernel_rows<7>,  kernel_rows<8>,
        kernel_rows<9>,  kernel_rows<10>, kernel_rows<11>, kernel_rows<12>,
        kernel_rows<13>, kernel_rows<14>};
    return table[rows - 1];
  }

  static void copy_nr(float* dst, const float* src) {
    _mm512_store_ps(dst, _mm512_loadu_ps(src));
    _mm512_store_ps(dst + 16, _mm512_loadu_ps(src + 16));
  }

  // c[0..n) = sum_k a[k] * B[k][0..n), B row k at b + k * ldb. Each element is one FMA chain in ascending k.
  // Columns are processed in strips of up to 1024 (4 KB of C, stays in L1); rows of B stream through four at a
  // time, so each pass reads four long contiguous runs (good for the hardware prefetcher).
  static void gemv(int64_t K, const float* a, const float* b, int64_t ldb, float* c, int64_t n) {
    constexpr int64_t kStrip = 1024;
    for (int64_t j0 = 0; j0 < n; j0 += kStrip) {
      const int64_t w = std::min(kStrip, n - j0);
      const int64_t wv = w & ~int64_t{15};
      const __mmask16 tail = static_cast<__mmask16>((1u << (w - wv)) - 1u);
      float* cs = c + j0;
      std::memset(cs, 0, static_cast<std::size_t>(w) * sizeof(float));
      int64_t k = 0;
      for (; k + 4 <= K; k += 4) {
        const float* r0 = b + k * ldb + j0;
        const float* r1 = r0 + ldb;
        const float* r2 = r1 + ldb;
        const float* r3 = r2 + ldb;
        const __m512 a0 = _mm512_set1_ps(a[k]), a1 = _mm512_set1_ps(a[k + 1]);
        const __m512 a2 = _mm512_set1_ps(a[k + 2]), a3 = _mm512_set1_ps(a[k + 3]);
        int64_t j = 0;
        for (; j < wv; j += 16) {
          __m512 acc = _mm512_loadu_ps(cs + j);
          acc = _mm512_fmadd_ps(a0, _mm512_loadu_ps(r0 + j), acc);
          acc = _mm512_fmadd_ps(a1, _mm512_loadu_ps(r1 + j), acc);
          acc = _mm512_fmadd_ps(a2, _mm512_loadu_ps(r2 + j), acc);
          acc = _mm512_fmadd_ps(a3, _mm512_loadu_ps(r3 + j), acc);
          _mm512_storeu_ps(cs + j, acc);
        }
        if (tail != 0) {
          __m512 acc = _mm512_maskz_loadu_ps(tail, cs + j);
          acc = _mm512_fmadd_ps(a0, _mm512_maskz_loadu_ps(tail, r0 + j), acc);
          acc = _mm512_fmadd_ps(a1, _mm512_maskz_loadu_ps(tail, r1 + j), acc);
          acc = _mm512_fmadd_ps(a2, _mm512_maskz_loadu_ps(tail, r2 + j), acc);
          acc = _mm512_fmadd_ps(a3, _mm512_maskz_loadu_ps(tail, r3 + j), acc);
          _mm512_mask_storeu_ps(cs + j, tail, acc);
        }
      }
      for (; k < K; ++k) {
        const float* r0 = b + k * ldb + j0;
        const __m512 a0 = _mm512_set1_ps(a[k]);
        int64_t j = 0;
        for (; j < wv; j += 16) {
          _mm512_storeu_ps(cs + j, _mm512_fmadd_ps(a0, _mm512_loadu_ps(r0 + j), _mm512_loadu_ps(cs + j)));
        }
        if (tail != 0) {
          const __m512 acc = _mm512_fmadd_ps(a0, _mm512_maskz_loadu_ps(tail, r0 + j), _mm512_maskz_loadu_ps(tail, cs + j));
          _mm512_mask_storeu_ps(cs + j, tail, acc);
        }
      }
    }
  }
};

}  // namespace

Status sgemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
             float* C, int64_t ldc, ThreadPool* pool) {
  return sgemm_common::sgemm_driver<Policy>(M, N, K, A, lda, B, ldb, C, ldc, pool);
}

}  // namespace avx512
}  // namespace qk
