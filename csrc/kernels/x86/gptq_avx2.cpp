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

#include "gptq_common.inc"  // the ISA-independent part (same text for every ISA)
}  // namespace avx2
}  // namespace qk
