// quantkit — float32 GEMM, AVX2 + FMA variant (see sgemm_common.h for the blocking, packing and threading).
//
// Micro-kernel: 6 rows x 16 columns = 12 ymm accumulators, 2 ymm for the B row, 1 for the broadcast A value
// (15 of the 16 ymm registers). Per k step: 2 aligned B loads, 6 broadcasts, 12 FMAs (6 cycles on two FMA
// ports); 12 independent chains cover the FMA latency.
// M == 1 (GEMV) streams four rows of B at a time through a column strip of C held in L1.
#include <immintrin.h>

#include <cmath>

#include "qk/kernels.h"
#include "sgemm_common.h"

namespace qk {
namespace avx2 {
namespace {

using sgemm_common::KernelFn;

struct Policy {
  static constexpr int64_t MR = 6;
  static constexpr int64_t NR = 16;
  static constexpr int64_t KC = 384;
  static constexpr int64_t AS = KC + 16;  // 1600-byte row stride: the rows fall in different L1 sets
  static constexpr int64_t NT_MAX = 512;  // packed B block <= 384 x 512 floats = 768 KB

  // C[R x NR] (+)= A[R x kc] * B[kc x NR] (see KernelFn in sgemm_common.h).
  template <int R>
  static void kernel_rows(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
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
      const __m256 b0 = _mm256_load_ps(b);
      const __m256 b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r) {
        const __m256 av = _mm256_broadcast_ss(a + r * AS);
        c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
        c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
      }
      a += 1;
      b += NR;
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      _mm256_storeu_ps(c + r * ldc, c0[r]);
      _mm256_storeu_ps(c + r * ldc + 8, c1[r]);
    }
  }

  static KernelFn kernel(int rows) {
    static constexpr KernelFn table[MR] = {kernel_rows<1>, kernel_rows<2>, kernel_rows<3>,
                                           kernel_rows<4>, kernel_rows<5>, kernel_rows<6>};
    return table[rows - 1];
  }

  static void copy_nr(float* dst, const float* src) {
    _mm256_store_ps(dst, _mm256_loadu_ps(src));
    _mm256_store_ps(dst + 8, _mm256_loadu_ps(src + 8));
  }

  // c[0..n) = sum_k a[k] * B[k][0..n), B row k at b + k * ldb. Each element is one FMA chain in ascending k.
  // Column strips of up to 1024 floats of C stay in L1 while rows of B stream through four at a time.
  static void gemv(int64_t K, const float* a, const float* b, int64_t ldb, float* c, int64_t n) {
    constexpr int64_t kStrip = 1024;
    for (int64_t j0 = 0; j0 < n; j0 += kStrip) {
      const int64_t w = std::min(kStrip, n - j0);
      const int64_t wv = w & ~int64_t{7};
      float* cs = c + j0;
      std::memset(cs, 0, static_cast<std::size_t>(w) * sizeof(float));
      int64_t k = 0;
      for (; k + 4 <= K; k += 4) {
        const float* r0 = b + k * ldb + j0;
        const float* r1 = r0 + ldb;
        const float* r2 = r1 + ldb;
        const float* r3 = r2 + ldb;
        const __m256 a0 = _mm256_set1_ps(a[k]), a1 = _mm256_set1_ps(a[k + 1]);
        const __m256 a2 = _mm256_set1_ps(a[k + 2]), a3 = _mm256_set1_ps(a[k + 3]);
        int64_t j = 0;
        for (; j < wv; j += 8) {
          __m256 acc = _mm256_loadu_ps(cs + j);
          acc = _mm256_fmadd_ps(a0, _mm256_loadu_ps(r0 + j), acc);
          acc = _mm256_fmadd_ps(a1, _mm256_loadu_ps(r1 + j), acc);
          acc = _mm256_fmadd_ps(a2, _mm256_loadu_ps(r2 + j), acc);
          acc = _mm256_fmadd_ps(a3, _mm256_loadu_ps(r3 + j), acc);
          _mm256_storeu_ps(cs + j, acc);
        }
        for (; j < w; ++j) {
          float acc = cs[j];
          acc = std::fma(a[k], r0[j], acc);
          acc = std::fma(a[k + 1], r1[j], acc);
          acc = std::fma(a[k + 2], r2[j], acc);
          acc = std::fma(a[k + 3], r3[j], acc);
          cs[j] = acc;
        }
      }
      for (; k < K; ++k) {
        const float* r0 = b + k * ldb + j0;
        const __m256 a0 = _mm256_set1_ps(a[k]);
        int64_t j = 0;
        for (; j < wv; j += 8) {
          _mm256_storeu_ps(cs + j, _mm256_fmadd_ps(a0, _mm256_loadu_ps(r0 + j), _mm256_loadu_ps(cs + j)));
        }
        for (; j < w; ++j) cs[j] = std::fma(a[k], r0[j], cs[j]);
      }
    }
  }
};

}  // namespace

Status sgemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
             float* C, int64_t ldc, ThreadPool* pool) {
  return sgemm_common::sgemm_driver<Policy>(M, N, K, A, lda, B, ldb, C, ldc, pool);
}

}  // namespace avx2
}  // namespace qk
