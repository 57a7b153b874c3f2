// quantkit — AVX2 variant of the GPTQ core (qk::avx2; contracts in qk/gptq.h, design in
// docs/gptq-native.md). Bit-identical to the scalar reference (csrc/kernels/ref/gptq_ref.cpp).
//
// Same structure as gptq_avx512.cpp (the ISA-independent part below is the same text) with AVX2 micro-
// kernels: float64 tiles of 4 x 12 and float32 tiles of 4 x 24 (12 ymm accumulators each). The tile is loaded
// from C, every k adds one FMA in ascending k order, and the tile is stored back, which keeps the per-entry
// operation sequence of the reference. Compiled with -mavx2 -mfma -mf16c and -ffp-contract=off.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <new>
#include <numeric>
#include <vector>

#include "qk/gptq.h"
#include "qk/threadpool.h"

namespace qk {
namespace avx2 {
namespace {

constexpr int64_t kGptqBlock = 128;  // GPTQ lazy-update block (columns), as the paper and Keras
constexpr int64_t kMRd = 4, kNRd = 12;  // float64 micro tile
constexpr int64_t kMRf = 4, kNRf = 24;  // float32 micro tile

// acc[kMRd][kNRd] (row-major, 32-byte aligned) -/+= sum_t Ap[t][ii] * B[t][jj]; B rows are ldb apart.
template <bool SUB>
inline void micro_d(int64_t K, const double* Ap, const double* Bp, int64_t ldb, double* acc) {
  __m256d c[kMRd][3];
#pragma GCC unroll 4
  for (int ii = 0; ii < kMRd; ++ii)
#pragma GCC unroll 3
    for (int v = 0; v < 3; ++v) c[ii][v] = _mm256_load_pd(acc + ii * kNRd + v * 4);
  for (int64_t t = 0; t < K; ++t) {
    const __m256d b0 = _mm256_loadu_pd(Bp + t * ldb);
    const __m256d b1 = _mm256_loadu_pd(Bp + t * ldb + 4);
    const __m256d b2 = _mm256_loadu_pd(Bp + t * ldb + 8);
    const double* a = Ap + t * kMRd;
#pragma GCC unroll 4
    for (int ii = 0; ii < kMRd; ++ii) {
      const __m256d av = _mm256_broadcast_sd(a + ii);
      if (SUB) {
        c[ii][0] = _mm256_fnmadd_pd(av, b0, c[ii][0]);
        c[ii][1] = _mm256_fnmadd_pd(av, b1, c[ii][1]);
        c[ii][2] = _mm256_fnmadd_pd(av, b2, c[ii][2]);
      } else {
        c[ii][0] = _mm256_fmadd_pd(av, b0, c[ii][0]);
        c[ii][1] = _mm256_fmadd_pd(av, b1, c[ii][1]);
        c[ii][2] = _mm256_fmadd_pd(av, b2, c[ii][2]);
      }
    }
  }
#pragma GCC unroll 4
  for (int ii = 0; ii < kMRd; ++ii)
#pragma GCC unroll 3
    for (int v = 0; v < 3; ++v) _mm256_store_pd(acc + ii * kNRd + v * 4, c[ii][v]);
}

template <bool SUB>
inline void micro_f(int64_t K, const float* Ap, const float* Bp, int64_t ldb, float* acc) {
  __m256 c[kMRf][3];
#pragma GCC unroll 4
  for (int ii = 0; ii < kMRf; ++ii)
#pragma GCC unroll 3
    for (int v = 0; v < 3; ++v) c[ii][v] = _mm256_load_ps(acc + ii * kNRf + v * 8);
  for (int64_t t = 0; t < K; ++t) {
    const __m256 b0 = _mm256_loadu_ps(Bp + t * ldb);
    const __m256 b1 = _mm256_loadu_ps(Bp + t * ldb + 8);
    const __m256 b2 = _mm256_loadu_ps(Bp + t * ldb + 16);
    const float* a = Ap + t * kMRf;
#pragma GCC unroll 4
    for (int ii = 0; ii < kMRf; ++ii) {
      const __m256 av = _mm256_broadcast_ss(a + ii);
      if (SUB) {
        c[ii][0] = _mm256_fnmadd_ps(av, b0, c[ii][0]);
        c[ii][1] = _mm256_fnmadd_ps(av, b1, c[ii][1]);
        c[ii][2] = _mm256_fnmadd_ps(av, b2, c[ii][2]);
      } else {
        c[ii][0] = _mm256_fmadd_ps(av, b0, c[ii][0]);
        c[ii][1] = _mm256_fmadd_ps(av, b1, c[ii][1]);
        c[ii][2] = _mm256_fmadd_ps(av, b2, c[ii][2]);
      }
    }
  }
#pragma GCC unroll 4
  for (int ii = 0; ii < kMRf; ++ii)
#pragma GCC unroll 3
    for (int v = 0; v < 3; ++v) _mm256_store_ps(acc + ii * kNRf + v * 8, c[ii][v]);
}

// One GPTQ column over n outputs: lv = clamp(rne(w/s + z), 0, maxq); dq = s*(lv - z); e = (w - dq)/d.
// Lane-wise the same operations as gptq_quantize_level (max/min with the constant second = the scalar clamp);
// the tail (< 8 outputs) uses the scalar helper itself.
inline void quant_cols(const float* w, const float* s, const float* z, float maxq, float d, float* e,
                       uint8_t* ql, float* dq, int64_t n) {
  const __m256 vmax = _mm256_set1_ps(maxq), vzero = _mm256_setzero_ps(), vd = _mm256_set1_ps(d);
  int64_t o = 0;
  for (; o + 8 <= n; o += 8) {
    const __m256 vw = _mm256_loadu_ps(w + o), vs = _mm256_loadu_ps(s + o), vz = _mm256_loadu_ps(z + o);
    __m256 t = _mm256_add_ps(_mm256_div_ps(vw, vs), vz);
    t = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    t = _mm256_min_ps(_mm256_max_ps(t, vzero), vmax);
    const __m256 vdq = _mm256_mul_ps(vs, _mm256_sub_ps(t, vz));
    _mm256_storeu_ps(e + o, _mm256_div_ps(_mm256_sub_ps(vw, vdq), vd));
    if (dq) _mm256_storeu_ps(dq + o, vdq);
    const __m256i qi = _mm256_cvtps_epi32(t);  // 0..255
    const __m128i q16 = _mm_packus_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(ql + o), _mm_packus_epi16(q16, q16));
  }
  for (; o < n; ++o) {
    const float lv = gptq_quantize_level(w[o], s[o], z[o], maxq);
    const float v = s[o] * (lv - z[o]);
    e[o] = (w[o] - v) / d;
    if (dq) dq[o] = v;
    ql[o] = static_cast<uint8_t>(lv);
  }
}

// w[o] = fma(-u, e[o], w[o]).
inline void axpy_sub(float* w, float u, const float* e, int64_t n) {
  const __m256 vu = _mm256_set1_ps(u);
  int64_t o = 0;
  for (; o + 8 <= n; o += 8)
    _mm256_storeu_ps(w + o, _mm256_fnmadd_ps(vu, _mm256_loadu_ps(e + o), _mm256_loadu_ps(w + o)));
  for (; o < n; ++o) w[o] = std::fmaf(-u, e[o], w[o]);
}

// ---------------------------------------------------------------------------------------------------------
// ISA-independent part. Identical text in gptq_avx2.cpp and gptq_avx512.cpp (only the micro-kernels above
// differ); it is compiled once per ISA so that the inlined element-wise loops get that ISA's code.
// ---------------------------------------------------------------------------------------------------------

constexpr int64_t kNoDiag = INT64_MAX / 4;

template <typename T>
std::unique_ptr<T[]> alloc(int64_t n) {
  return std::unique_ptr<T[]>(new (std::nothrow) T[static_cast<size_t>(n > 0 ? n : 1)]);
}

int nthreads(ThreadPool* pool) { return pool ? pool->num_threads() : 1; }

// Runs f(task) for task in [0, n): on the pool when there is one with more than one thread, else inline.
template <class F>
void par(ThreadPool* pool, int64_t n, const F& f) {
  if (n <= 0) return;
  if (pool == nullptr || n == 1 || pool->num_threads() <= 1) {
    for (int64_t t = 0; t < n; ++t) f(t);
    return;
  }
  pool->run(n, [&](int64_t t) { f(t); });
}

// Contiguous ranges [begin, end) of [0, n), at least `grain` items each.
template <class F>
void par_range(ThreadPool* pool, int64_t n, int64_t grain, const F& f) {
  if (n <= 0) return;
  if (pool == nullptr || pool->num_threads() <= 1 || n <= grain) {
    f(int64_t{0}, n);
    return;
  }
  pool->parallel_for(n, grain, [&](int64_t b, int64_t e) { f(b, e); });
}

// Columns of row ii of a tile that may be written: jj < nr and, for a lower-triangle update whose tile origin
// is (i0, j0) with diag = i0 - j0, j0 + jj <= i0 + ii.
inline int64_t row_limit(int64_t ii, int64_t mr, int64_t nr, int64_t diag) {
  if (ii >= mr) return 0;
  int64_t lim = nr;
  if (diag != kNoDiag && ii + diag + 1 < lim) lim = ii + diag + 1;
  return lim < 0 ? 0 : lim;
}

// C[0:mr, 0:nr] (masked by row_limit) = C -/+ sum_{t<K} A(t, ii) B(t, jj), one FMA per t in ascending order
// starting from the stored C value. Ap: packed [K][kMRd]; B: rows of ldb doubles, kNRd used (zero padded).
template <bool SUB>
void dtile(int64_t K, const double* Ap, const double* Bp, int64_t ldb, double* C, int64_t ldc, int64_t mr,
           int64_t nr, int64_t diag) {
  alignas(64) double acc[kMRd * kNRd];
  for (int64_t ii = 0; ii < kMRd; ++ii) {
    const int64_t lim = row_limit(ii, mr, nr, diag);
    for (int64_t jj = 0; jj < kNRd; ++jj) acc[ii * kNRd + jj] = jj < lim ? C[ii * ldc + jj] : 0.0;
  }
  micro_d<SUB>(K, Ap, Bp, ldb, acc);
  for (int64_t ii = 0; ii < mr; ++ii) {
    const int64_t lim = row_limit(ii, mr, nr, diag);
    for (int64_t jj = 0; jj < lim; ++jj) C[ii * ldc + jj] = acc[ii * kNRd + jj];
  }
}

// float32 version (no triangle mask).
template <bool SUB>
void ftile(int64_t K, const float* Ap, const float* Bp, int64_t ldb, float* C, int64_t ldc, int64_t mr,
           int64_t nr) {
  alignas(64) float acc[kMRf * kNRf];
  for (int64_t ii = 0; ii < kMRf; ++ii)
    for (int64_t jj = 0; jj < kNRf; ++jj) acc[ii * kNRf + jj] = (ii < mr && jj < nr) ? C[ii * ldc + jj] : 0.0f;
  micro_f<SUB>(K, Ap, Bp, ldb, acc);
  for (int64_t ii = 0; ii < mr; ++ii)
    for (int64_t jj = 0; jj < nr; ++jj) C[ii * ldc + jj] = acc[ii * kNRf + jj];
}

// Lower triangle (incl. diagonal) of the n x n matrix C (leading dimension ldc):
//   C[i][j] = C[i][j] -/+ sum_{t<K} P(t, i) P(t, j)   for j <= i
// with P given twice, prepacked: Ap = kMRd-wide panels ([K][kMRd] each), Bp = kNRd-wide panels ([K][kNRd]).
// Tasks are blocks of 8 row tiles, the longest (bottom) rows first; inside a task the B panel is the outer
// loop so that it stays in L2 while the task's row tiles use it.
template <bool SUB>
void lower_update(int64_t n, int64_t K, const double* Ap, const double* Bp, double* C, int64_t ldc,
                  ThreadPool* pool) {
  constexpr int64_t kRB = kMRd * 8;
  const int64_t nrb = (n + kRB - 1) / kRB;
  par(pool, nrb, [&](int64_t task) {
    const int64_t i_lo = (nrb - 1 - task) * kRB, i_hi = std::min(n, i_lo + kRB);
    for (int64_t j0 = 0; j0 < i_hi; j0 += kNRd) {
      const double* Bt = Bp + (j0 / kNRd) * K * kNRd;
      for (int64_t i0 = i_lo; i0 < i_hi; i0 += kMRd) {
        if (j0 > i0 + kMRd - 1) continue;  // tile entirely above the diagonal
        dtile<SUB>(K, Ap + (i0 / kMRd) * K * kMRd, Bt, kNRd, C + i0 * ldc + j0, ldc, std::min(kMRd, n - i0),
                   std::min(kNRd, n - j0), i0 - j0);
      }
    }
  });
}

// Packs P(t, c) = get(t, c) for t < K, c < n into `width`-wide panels [n_panels][K][width], zero padded.
template <class Get>
void pack_panels(int64_t n, int64_t K, int64_t width, double* dst, const Get& get, int64_t p) {
  double* d = dst + p * K * width;
  const int64_t c0 = p * width;
  for (int64_t t = 0; t < K; ++t)
    for (int64_t w = 0; w < width; ++w) d[t * width + w] = c0 + w < n ? get(t, c0 + w) : 0.0;
}

// Symmetric permutation in place: A <- P A P^T, (P A P^T)[i][j] = A[perm[i]][perm[j]].
void permute_symmetric(double* A, int64_t n, const std::vector<int64_t>& perm, ThreadPool* pool) {
  std::vector<double> tmp(static_cast<size_t>(n));
  std::vector<char> done(static_cast<size_t>(n), 0);
  for (int64_t s = 0; s < n; ++s) {  // rows: follow each cycle with one row buffer
    if (done[s]) continue;
    std::memcpy(tmp.data(), A + s * n, sizeof(double) * n);
    int64_t i = s;
    while (true) {
      done[i] = 1;
      const int64_t src = perm[i];
      if (src == s) {
        std::memcpy(A + i * n, tmp.data(), sizeof(double) * n);
        break;
      }
      std::memcpy(A + i * n, A + src * n, sizeof(double) * n);
      i = src;
    }
  }
  par_range(pool, n, 16, [&](int64_t b, int64_t e) {  // then the entries of every row
    std::vector<double> row(static_cast<size_t>(n));
    for (int64_t i = b; i < e; ++i) {
      double* r = A + i * n;
      for (int64_t j = 0; j < n; ++j) row[j] = r[perm[j]];
      std::memcpy(r, row.data(), sizeof(double) * n);
    }
  });
}

// C[m][o] -= sum_{k<K} Uc[k*ldu + m] * E[k*N + o] for m < M, o < N (float32, one FMA per k in ascending
// order from the stored C): the lazy GPTQ update of later columns (Uc = the block's rows of U starting at the
// first later column, E = the block's scaled errors). Bpk: scratch of ceil(N/kNRf)*kNRf*K floats.
void gemm_sub_ut(int64_t M, int64_t N, int64_t K, const float* Uc, int64_t ldu, const float* E, float* Bpk,
                 float* C, int64_t ldc, ThreadPool* pool) {
  if (M <= 0 || N <= 0 || K <= 0) return;
  const int64_t nJ = (N + kNRf - 1) / kNRf;
  par(pool, nJ, [&](int64_t jt) {
    float* d = Bpk + jt * K * kNRf;
    const int64_t j0 = jt * kNRf, nr = std::min(kNRf, N - j0);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t jj = 0; jj < kNRf; ++jj) d[k * kNRf + jj] = jj < nr ? E[k * N + j0 + jj] : 0.0f;
  });
  constexpr int64_t kRB = kMRf * 8;
  const int64_t nrb = (M + kRB - 1) / kRB;
  par(pool, nrb, [&](int64_t rb) {
    alignas(64) float Apk[kRB * kGptqBlock];
    const int64_t m0 = rb * kRB, mb = std::min(kRB, M - m0);
    const int64_t nIt = (mb + kMRf - 1) / kMRf;
    for (int64_t it = 0; it < nIt; ++it)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t ii = 0; ii < kMRf; ++ii) {
          const int64_t m = it * kMRf + ii;
          Apk[(it * K + k) * kMRf + ii] = m < mb ? Uc[k * ldu + m0 + m] : 0.0f;
        }
    for (int64_t jt = 0; jt < nJ; ++jt) {
      const int64_t j0 = jt * kNRf, nr = std::min(kNRf, N - j0);
      for (int64_t it = 0; it < nIt; ++it)
        ftile<true>(K, Apk + it * K * kMRf, Bpk + jt * K * kNRf, kNRf, C + (m0 + it * kMRf) * ldc + j0, ldc,
                    std::min(kMRf, mb - it * kMRf), nr);
    }
  });
}

}  // namespace

Status hessian_accumulate(const float* X, int64_t rows, int64_t cols, double* H, int64_t* n_seen,
                          ThreadPool* pool) {
  if (rows <= 0 || cols <= 0) {
    if (rows > 0) *n_seen += rows;
    return kOk;
  }
  // Rows are consumed in chunks of kKC; each chunk is converted to float64 and packed twice (kMRd- and
  // kNRd-wide column panels), then the lower triangle is updated tile by tile, each tile starting from the
  // stored sum and adding the chunk's rows in order (bit-identical to the reference's sequential sum).
  constexpr int64_t kKC = 256;
  const int64_t nA = (cols + kMRd - 1) / kMRd, nB = (cols + kNRd - 1) / kNRd;
  auto Ap = alloc<double>(nA * kMRd * kKC);
  auto Bp = alloc<double>(nB * kNRd * kKC);
  if (!Ap || !Bp) return QK_STATUS_OUT_OF_MEMORY;
  for (int64_t r0 = 0; r0 < rows; r0 += kKC) {
    const int64_t kc = std::min(kKC, rows - r0);
    const float* Xc = X + r0 * cols;
    auto get = [&](int64_t t, int64_t c) { return static_cast<double>(Xc[t * cols + c]); };
    par(pool, nA + nB, [&](int64_t p) {
      if (p < nA)
        pack_panels(cols, kc, kMRd, Ap.get(), get, p);
      else
        pack_panels(cols, kc, kNRd, Bp.get(), get, p - nA);
    });
    lower_update<false>(cols, kc, Ap.get(), Bp.get(), H, cols, pool);
  }
  *n_seen += rows;
  return kOk;
}

void hessian_finalize(double* H, int64_t cols, int64_t n_seen) {
  const double f = n_seen > 0 ? 2.0 / static_cast<double>(n_seen) : 1.0;
  // Blocked so that the mirrored (column) writes stay within a few cache lines per block row.
  constexpr int64_t kT = 64;
  for (int64_t ib = 0; ib < cols; ib += kT)
    for (int64_t jb = 0; jb <= ib; jb += kT)
      for (int64_t i = ib; i < std::min(cols, ib + kT); ++i)
        for (int64_t j = jb; j < std::min(i + 1, jb + kT); ++j) {
          const double v = H[i * cols + j] * f;
          H[i * cols + j] = v;
          H[j * cols + i] = v;
        }
}

Status cholesky_lower(double* A, int64_t n, ThreadPool* pool) {
  if (n <= 0) return kOk;
  // Right-looking blocked Cholesky, block kNB: (a) factor the diagonal block, (b) solve the panel below it
  // (transposed into PT so that the solve runs along contiguous rows), (c) subtract the panel's outer
  // product from the trailing lower triangle. Every entry sees the same fma sequence as the reference.
  constexpr int64_t kNB = 128;
  const int64_t mmax = std::max<int64_t>(n - 1, 1);
  auto PT = alloc<double>(kNB * mmax);
  auto Ap = alloc<double>(((mmax + kMRd - 1) / kMRd) * kMRd * kNB);
  auto Bp = alloc<double>(((mmax + kNRd - 1) / kNRd) * kNRd * kNB);
  if (!PT || !Ap || !Bp) return QK_STATUS_OUT_OF_MEMORY;
  for (int64_t k0 = 0; k0 < n; k0 += kNB) {
    const int64_t k1 = std::min(n, k0 + kNB), kb = k1 - k0, m = n - k1;
    for (int64_t j = k0; j < k1; ++j) {  // (a)
      double* rj = A + j * n;
      double s = rj[j];
      for (int64_t k = k0; k < j; ++k) s = std::fma(-rj[k], rj[k], s);
      if (!(s > 0.0) || !std::isfinite(s)) return QK_STATUS_INVALID_ARGUMENT;
      const double d = std::sqrt(s);
      rj[j] = d;
      for (int64_t i = j + 1; i < k1; ++i) {
        double* ri = A + i * n;
        double v = ri[j];
        for (int64_t k = k0; k < j; ++k) v = std::fma(-ri[k], rj[k], v);
        ri[j] = v / d;
      }
    }
    if (m == 0) break;
    double* pt = PT.get();
    par_range(pool, m, 64, [&](int64_t rb, int64_t re) {  // (b) rows [k1+rb, k1+re)
      for (int64_t r = rb; r < re; ++r)
        for (int64_t c = 0; c < kb; ++c) pt[c * m + r] = A[(k1 + r) * n + k0 + c];
      for (int64_t c = 0; c < kb; ++c) {
        const double* Lc = A + (k0 + c) * n + k0;
        double* pc = pt + c * m;
        for (int64_t k = 0; k < c; ++k) {
          const double l = -Lc[k];
          const double* pk = pt + k * m;
          for (int64_t r = rb; r < re; ++r) pc[r] = std::fma(l, pk[r], pc[r]);
        }
        const double d = Lc[c];
        for (int64_t r = rb; r < re; ++r) pc[r] = pc[r] / d;
      }
      for (int64_t r = rb; r < re; ++r)
        for (int64_t c = 0; c < kb; ++c) A[(k1 + r) * n + k0 + c] = pt[c * m + r];
    });
    const int64_t nA = (m + kMRd - 1) / kMRd, nB = (m + kNRd - 1) / kNRd;  // (c)
    auto get = [&](int64_t t, int64_t r) { return pt[t * m + r]; };
    par(pool, nA + nB, [&](int64_t p) {
      if (p < nA)
        pack_panels(m, kb, kMRd, Ap.get(), get, p);
      else
        pack_panels(m, kb, kNRd, Bp.get(), get, p - nA);
    });
    lower_update<true>(m, kb, Ap.get(), Bp.get(), A + k1 * n + k1, n, pool);
  }
  return kOk;
}

Status triangular_inverse_lower(double* A, int64_t n, ThreadPool* pool) {
  if (n <= 0) return kOk;
  // Row blocks of kNB, top to bottom. For block rows r in [i0, i1) and columns c < r:
  //   Y[r][c] = -(sum_{t=c}^{r-1} L[r][t] Y[t][c]) / L[r][r]
  // The part t < i0 is a GEMM of the block's L rows with the finished rows of Y (column tiles in parallel,
  // each tile's B operand packed with zeros where t < c); the part t >= i0 is finished row by row, in
  // parallel over column chunks, from copies of the block's L (Lb, dL) since the rows are overwritten.
  constexpr int64_t kNB = 128, kCW = 256;
  const int64_t ntask_g = 4 * static_cast<int64_t>(nthreads(pool));
  auto Cacc = alloc<double>(kNB * n);
  auto Apk = alloc<double>((kNB / kMRd) * kMRd * n);
  auto Bbuf = alloc<double>(ntask_g * n * kNRd);
  auto Lb = alloc<double>(kNB * kNB);
  auto dL = alloc<double>(kNB);
  if (!Cacc || !Apk || !Bbuf || !Lb || !dL) return QK_STATUS_OUT_OF_MEMORY;
  for (int64_t i0 = 0; i0 < n; i0 += kNB) {
    const int64_t i1 = std::min(n, i0 + kNB), mb = i1 - i0;
    for (int64_t r = 0; r < mb; ++r) {
      dL[r] = A[(i0 + r) * n + i0 + r];
      for (int64_t t = 0; t < r; ++t) Lb[r * kNB + t] = A[(i0 + r) * n + i0 + t];
    }
    if (i0 > 0) {
      const int64_t nIt = (mb + kMRd - 1) / kMRd, nJt = (i0 + kNRd - 1) / kNRd;
      par(pool, nIt, [&](int64_t it) {
        double* d = Apk.get() + it * i0 * kMRd;
        for (int64_t t = 0; t < i0; ++t)
          for (int64_t ii = 0; ii < kMRd; ++ii) {
            const int64_t r = it * kMRd + ii;
            d[t * kMRd + ii] = r < mb ? A[(i0 + r) * n + t] : 0.0;
          }
      });
      std::fill(Cacc.get(), Cacc.get() + mb * i0, 0.0);
      const int64_t ntask = std::min(ntask_g, nJt);
      par(pool, ntask, [&](int64_t task) {
        double* Bt = Bbuf.get() + task * n * kNRd;
        for (int64_t jt = task; jt < nJt; jt += ntask) {  // round robin: tiles get shorter with jt
          const int64_t c0 = jt * kNRd, nr = std::min(kNRd, i0 - c0), K = i0 - c0;
          for (int64_t t = c0; t < i0; ++t)
            for (int64_t jj = 0; jj < kNRd; ++jj)
              Bt[(t - c0) * kNRd + jj] = (jj < nr && c0 + jj <= t) ? A[t * n + c0 + jj] : 0.0;
          for (int64_t it = 0; it < nIt; ++it)
            dtile<false>(K, Apk.get() + (it * i0 + c0) * kMRd, Bt, kNRd, Cacc.get() + it * kMRd * i0 + c0, i0,
                         std::min(kMRd, mb - it * kMRd), nr, kNoDiag);
        }
      });
    }
    const int64_t nchunk = (i1 + kCW - 1) / kCW;
    par(pool, nchunk, [&](int64_t ch) {
      const int64_t ca = ch * kCW, cb = std::min(i1, ca + kCW);
      double s[kCW];
      for (int64_t r = std::max(i0, ca); r < i1; ++r) {
        const int64_t rr = r - i0, cend = std::min(cb, r);
        for (int64_t c = ca; c < cend; ++c) s[c - ca] = c < i0 ? Cacc[rr * i0 + c] : 0.0;
        for (int64_t t = i0; t < r; ++t) {
          const double l = Lb[rr * kNB + (t - i0)];
          const double* yt = A + t * n;
          const int64_t cmax = std::min(cend, t + 1);
          for (int64_t c = ca; c < cmax; ++c) s[c - ca] = std::fma(l, yt[c], s[c - ca]);
        }
        for (int64_t c = ca; c < cend; ++c) A[r * n + c] = -s[c - ca] / dL[rr];
        if (ca <= r && r < cb) A[r * n + r] = 1.0 / dL[rr];
      }
    });
  }
  return kOk;
}

Status cholesky_inverse_upper(double* H, int64_t n, double damp, int max_tries, double* damp_used, int* tries,
                              ThreadPool* pool) {
  if (max_tries < 1 || !(damp >= 0.0) || !std::isfinite(damp)) return QK_STATUS_INVALID_ARGUMENT;
  std::atomic<bool> finite{true};
  par_range(pool, n, 64, [&](int64_t b, int64_t e) {
    for (int64_t k = b * n; k < e * n; ++k)
      if (!std::isfinite(H[k])) {
        finite = false;
        return;
      }
  });
  if (!finite) return QK_STATUS_INVALID_ARGUMENT;
  std::vector<double> diag(static_cast<size_t>(n));
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    diag[i] = H[i * n + i];
    sum += diag[i];
  }
  const double mean = n > 0 ? sum / static_cast<double>(n) : 0.0;
  const int64_t total = n * n;
  auto rotate = [&]() {  // H <- J H J (180-degree rotation)
    par_range(pool, total / 2, 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t a = b; a < e; ++a) std::swap(H[a], H[total - 1 - a]);
    });
  };
  rotate();
  double cur = damp;
  for (int attempt = 1; attempt <= max_tries; ++attempt) {
    if (attempt > 1) {
      cur = cur > 0.0 ? cur * 10.0 : 1e-4;
      par_range(pool, n, 64, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          for (int64_t j = 0; j < i; ++j) H[i * n + j] = H[j * n + i];
      });
    }
    const double lambda = cur * mean;
    for (int64_t i = 0; i < n; ++i) H[i * n + i] = diag[n - 1 - i] + lambda;
    Status st = cholesky_lower(H, n, pool);
    if (st == QK_STATUS_INVALID_ARGUMENT) continue;
    if (st != kOk) return st;
    st = triangular_inverse_lower(H, n, pool);
    if (st != kOk) return st;
    rotate();
    par_range(pool, n, 64, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        for (int64_t j = 0; j < i; ++j) H[i * n + j] = 0.0;
    });
    if (damp_used) *damp_used = cur;
    if (tries) *tries = attempt;
    return kOk;
  }
  if (tries) *tries = max_tries;
  return QK_STATUS_INVALID_ARGUMENT;
}

int64_t gptq_fix_dead_inputs(double* H, int64_t n, uint8_t* dead) {
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool d = H[i * n + i] == 0.0;
    if (d) {
      H[i * n + i] = 1.0;
      ++count;
    }
    if (dead) dead[i] = d ? 1 : 0;
  }
  return count;
}

Status gptq_quantize_matrix(const float* W, int64_t in, int64_t out, double* H, const GptqOptions* opt,
                            uint8_t* q, float* scale, uint8_t* zero, int32_t* g_idx, float* w_hat,
                            GptqResult* res, ThreadPool* pool) {
  const int bits = opt->bits;
  if (!(bits == 2 || bits == 3 || bits == 4 || bits == 8)) return QK_STATUS_INVALID_ARGUMENT;
  if (opt->group_size == 0 || opt->group_size < -1) return QK_STATUS_INVALID_ARGUMENT;
  if (!(opt->damp >= 0.0 && opt->damp <= 1.0) || opt->max_damp_tries < 1) return QK_STATUS_INVALID_ARGUMENT;
  {
    std::atomic<bool> finite{true};
    par_range(pool, in, 64, [&](int64_t b, int64_t e) {
      for (int64_t k = b * out; k < e * out; ++k)
        if (!std::isfinite(W[k])) {
          finite = false;
          return;
        }
    });
    if (!finite) return QK_STATUS_INVALID_ARGUMENT;
  }
  const float maxq = static_cast<float>((1 << bits) - 1);
  const int64_t G = gptq_num_groups(in, opt->group_size);
  const int64_t g = opt->group_size < 0 ? std::max<int64_t>(in, 1) : opt->group_size;
  constexpr int64_t kB = kGptqBlock;

  // Scratch first, so that OUT_OF_MEMORY leaves H untouched. tmp holds the pending-updated rows of a group
  // that starts inside a block and reaches past it (size: the largest such overhang).
  int64_t overhang = 0;
  if (opt->group_size > 0)
    for (int64_t gs = 0; gs < in; gs += g) {
      const int64_t b1 = std::min(in, gs - gs % kB + kB), ge = std::min(in, gs + g);
      if (gs % kB != 0 && ge > b1) overhang = std::max(overhang, ge - b1);
    }
  auto Wt = alloc<float>(in * out);
  auto Qt = alloc<uint8_t>(in * out);
  auto Uf = alloc<float>(kB * in);
  auto E = alloc<float>(kB * out);
  auto Bpk = alloc<float>(((out + kNRf - 1) / kNRf) * kNRf * kB);
  auto tmp = alloc<float>(overhang * out);
  auto s = alloc<float>(out);
  auto z = alloc<float>(out);
  auto mnv = alloc<float>(out);
  auto mxv = alloc<float>(out);
  if (!Wt || !Qt || !Uf || !E || !Bpk || !tmp || !s || !z || !mnv || !mxv) return QK_STATUS_OUT_OF_MEMORY;

  std::vector<uint8_t> dead(static_cast<size_t>(in));
  const int64_t n_dead = gptq_fix_dead_inputs(H, in, dead.data());
  std::vector<int64_t> perm(static_cast<size_t>(in));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  if (opt->act_order) {
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return H[a * in + a] > H[b * in + b]; });
    permute_symmetric(H, in, perm, pool);
  }
  double damp_used = 0.0;
  int tries = 0;
  Status st = cholesky_inverse_upper(H, in, opt->damp, opt->max_damp_tries, &damp_used, &tries, pool);
  if (st != kOk) return st;
  const double* U = H;

  par_range(pool, in, 16, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      float* dst = Wt.get() + j * out;
      if (opt->zero_dead_inputs && dead[perm[j]])
        std::fill(dst, dst + out, 0.0f);
      else if (out > 0)  // (W may be null when out == 0)
        std::memcpy(dst, W + perm[j] * out, sizeof(float) * out);
    }
  });
  if (in == 0 && G > 0) {
    for (int64_t o = 0; o < out; ++o) {
      float z0;
      gptq_group_params(0.0f, 0.0f, bits, opt->symmetric, &scale[o * G], &z0);
      zero[o * G] = static_cast<uint8_t>(z0);
    }
  }
  // Output rows are split into one contiguous chunk per thread for the column loop (columns are sequential,
  // outputs independent).
  const int64_t nth = nthreads(pool);
  const int64_t ochunk = std::max<int64_t>(64, ((out + nth - 1) / nth + 15) / 16 * 16);
  const int64_t nochunks = (out + ochunk - 1) / ochunk;

  double loss = 0.0;
  for (int64_t b0 = 0; b0 < in; b0 += kB) {
    const int64_t b1 = std::min(in, b0 + kB), bsz = b1 - b0;
    par(pool, bsz, [&](int64_t i) {
      const double* src = U + (b0 + i) * in;
      float* dst = Uf.get() + i * in;
      for (int64_t k = b0; k < in; ++k) dst[k] = static_cast<float>(src[k]);
    });
    int64_t i = 0;
    while (i < bsz) {
      const int64_t j = b0 + i;
      if (j % g == 0) {  // group parameters, once per group, from the weights as updated by columns < j
        const int64_t gi = j / g, ge = std::min(in, j + g), in_end = std::min(ge, b1);
        const float* beyond = nullptr;
        if (ge > b1) {
          if (i > 0) {  // rows past the block still lack this block's pending updates: apply them to a copy
            std::memcpy(tmp.get(), Wt.get() + b1 * out, sizeof(float) * (ge - b1) * out);
            gemm_sub_ut(ge - b1, out, i, Uf.get() + b1, in, E.get(), Bpk.get(), tmp.get(), out, pool);
            beyond = tmp.get();
          } else {
            beyond = Wt.get() + b1 * out;
          }
        }
        par_range(pool, out, 256, [&](int64_t oa, int64_t ob) {
          const float* r0 = Wt.get() + j * out;
          for (int64_t o = oa; o < ob; ++o) mnv[o] = mxv[o] = r0[o];
          auto fold = [&](const float* row) {
            for (int64_t o = oa; o < ob; ++o) {
              const float v = row[o];
              mnv[o] = v < mnv[o] ? v : mnv[o];
              mxv[o] = v > mxv[o] ? v : mxv[o];
            }
          };
          for (int64_t c = j + 1; c < in_end; ++c) fold(Wt.get() + c * out);
          if (beyond)
            for (int64_t c = b1; c < ge; ++c) fold(beyond + (c - b1) * out);
          if (opt->per_channel)
            for (int64_t o = oa; o < ob; ++o) gptq_group_params(mnv[o], mxv[o], bits, opt->symmetric, &s[o], &z[o]);
        });
        if (!opt->per_channel && out > 0) {
          float gmn = mnv[0], gmx = mxv[0];
          for (int64_t o = 1; o < out; ++o) {
            gmn = mnv[o] < gmn ? mnv[o] : gmn;
            gmx = mxv[o] > gmx ? mxv[o] : gmx;
          }
          float s0, z0;
          gptq_group_params(gmn, gmx, bits, opt->symmetric, &s0, &z0);
          std::fill(s.get(), s.get() + out, s0);
          std::fill(z.get(), z.get() + out, z0);
        }
        for (int64_t o = 0; o < out; ++o) {
          scale[o * G + gi] = s[o];
          zero[o * G + gi] = static_cast<uint8_t>(z[o]);
        }
      }
      const int64_t seg_end = std::min(bsz, (j / g + 1) * g - b0);  // up to the next group start
      par(pool, nochunks, [&](int64_t ch) {
        const int64_t oa = ch * ochunk, n = std::min(out, oa + ochunk) - oa;
        for (int64_t ii = i; ii < seg_end; ++ii) {
          const int64_t jj = b0 + ii;
          const float* urow = Uf.get() + ii * in;
          float* e = E.get() + ii * out + oa;
          quant_cols(Wt.get() + jj * out + oa, s.get() + oa, z.get() + oa, maxq, urow[jj], e,
                     Qt.get() + jj * out + oa, w_hat ? w_hat + perm[jj] * out + oa : nullptr, n);
          for (int64_t k = jj + 1; k < b1; ++k) axpy_sub(Wt.get() + k * out + oa, urow[k], e, n);
        }
      });
      i = seg_end;
    }
    for (int64_t ii = 0; ii < bsz; ++ii) {  // (column, output) order, as the reference
      const float* e = E.get() + ii * out;
      for (int64_t o = 0; o < out; ++o) loss += static_cast<double>(e[o]) * static_cast<double>(e[o]);
    }
    if (b1 < in) gemm_sub_ut(in - b1, out, bsz, Uf.get() + b1, in, E.get(), Bpk.get(), Wt.get() + b1 * out, out, pool);
  }
  // Levels back to [out, in] in the original input order (blocked transpose).
  constexpr int64_t kT = 64;
  par(pool, (out + kT - 1) / kT, [&](int64_t ob) {
    const int64_t oa = ob * kT, oe = std::min(out, oa + kT);
    for (int64_t ja = 0; ja < in; ja += kT)
      for (int64_t o = oa; o < oe; ++o)
        for (int64_t jj = ja; jj < std::min(in, ja + kT); ++jj) q[o * in + perm[jj]] = Qt[jj * out + o];
  });
  for (int64_t jj = 0; jj < in; ++jj) g_idx[perm[jj]] = static_cast<int32_t>(opt->group_size < 0 ? 0 : jj / g);
  if (res) {
    res->damp_used = damp_used;
    res->damp_tries = tries;
    res->dead_inputs = n_dead;
    res->loss = loss;
  }
  return kOk;
}

}  // namespace avx2
}  // namespace qk
