// quantkit — float32 GEMM, AVX-512 variant (see sgemm_common.h for the blocking, packing and threading).
//
// Micro-kernel: 14 rows x 32 columns, in sgemm_avx512_kernels.h (shared with dense_float_avx512.cpp).
// M == 1 (GEMV) streams four rows of B at a time through a column strip of C held in L1/L2.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "qk/kernels.h"
#include "qk/packed.h"
#include "qk/threadpool.h"
#include "sgemm_avx512_kernels.h"
#include "sgemm_common.h"

namespace qk {
namespace avx512 {
namespace {

// The blocking constants and the 14 x 32 micro-kernel come from sgemm_avx512_kernels.h (shared with
// dense_float_avx512.cpp); the packing copy and the GEMV are sgemm-specific.
struct Policy : SgemmTile {
  static void copy_nr(float* dst, const float* src) {
    _mm512_store_ps(dst, _mm512_loadu_ps(src));
    _mm512_store_ps(dst + 16, _mm512_loadu_ps(src + 16));
  }

  // c[0..n) = sum_k a[k] * B[k][0..n), B row k at b + k * ldb. Each element is one FMA chain in ascending k.
  // Columns are processed in strips of up to 16384 (<= 64 KB of C, in L1/L2; the driver's tasks are at most that
  // wide, so a task reads whole rows: rows k..k+3 are four consecutive runs and the next four follow them, one
  // contiguous stream for the hardware prefetcher).
  static void gemv(int64_t K, const float* a, const float* b, int64_t ldb, float* c, int64_t n) {
    constexpr int64_t kStrip = 16384;
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

static_assert(Policy::NR == kPackedF32Nr, "the packed fp32 layout (qk/packed.h) is the micro-kernel's panel");

// Pre-packed B (qk/packed.h, kAvx512F32). Tasks own runs of 64 rows of B: each reads its rows front to back
// (contiguous) and writes 64 x NR floats (8 KiB, contiguous) into every panel.
void pack_f32_weights(int64_t K, int64_t N, const float* w, float* dst, ThreadPool* pool) {
  constexpr int64_t NR = Policy::NR, kRows = 64;
  const int64_t panels = sgemm_common::ceil_div(N, NR);
  const auto rows = [&](int64_t t0, int64_t t1) {
    for (int64_t k = t0 * kRows; k < std::min(K, t1 * kRows); ++k) {
      const float* src = w + k * N;
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t cols = std::min(NR, N - p * NR);
        float* d = dst + (p * K + k) * NR;
        if (cols == NR) {
          Policy::copy_nr(d, src + p * NR);
        } else {
          const __mmask16 m0 = static_cast<__mmask16>(cols >= 16 ? 0xFFFF : (1u << cols) - 1u);
          const __mmask16 m1 = static_cast<__mmask16>(cols <= 16 ? 0 : (1u << (cols - 16)) - 1u);
          _mm512_store_ps(d, _mm512_maskz_loadu_ps(m0, src + p * NR));
          _mm512_store_ps(d + 16, _mm512_maskz_loadu_ps(m1, src + p * NR + 16));
        }
      }
    }
  };
  const int64_t tasks = sgemm_common::ceil_div(K, kRows);
  if (pool == nullptr) {
    rows(0, tasks);
  } else {
    pool->parallel_for(tasks, 1, rows);
  }
}

Status sgemm_packed(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* Bp, float* C,
                    int64_t ldc, ThreadPool* pool) {
  return sgemm_common::sgemm_driver<Policy>(M, N, K, A, lda, nullptr, N, C, ldc, pool, Bp);
}

}  // namespace avx512
}  // namespace qk
