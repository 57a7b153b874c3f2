// quantkit — float32 GEMM, AVX2 + FMA variant (see sgemm_common.h for the blocking, packing and threading).
//
// Micro-kernel: 6 rows x 16 columns, in sgemm_avx2_kernels.h (shared with dense_float_avx2.cpp).
// M == 1 (GEMV) streams four rows of B at a time through a column strip of C held in L1/L2.
#include <immintrin.h>

#include <cmath>

#include "qk/kernels.h"
#include "sgemm_avx2_kernels.h"
#include "sgemm_common.h"

namespace qk {
namespace avx2 {
namespace {

// The blocking constants and the 6 x 16 micro-kernel come from sgemm_avx2_kernels.h (shared with
// dense_float_avx2.cpp); the packing copy and the GEMV are sgemm-specific.
struct Policy : SgemmTile {
  static void copy_nr(float* dst, const float* src) {
    _mm256_store_ps(dst, _mm256_loadu_ps(src));
    _mm256_store_ps(dst + 8, _mm256_loadu_ps(src + 8));
  }

  // c[0..n) = sum_k a[k] * B[k][0..n), B row k at b + k * ldb. Each element is one FMA chain in ascending k.
  // Column strips of up to 16384 floats of C (<= 64 KB, L1/L2) while rows of B stream through four at a time
  // (the driver's tasks are at most that wide, so a task reads whole rows: one contiguous stream).
  static void gemv(int64_t K, const float* a, const float* b, int64_t ldb, float* c, int64_t n) {
    constexpr int64_t kStrip = 16384;
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
