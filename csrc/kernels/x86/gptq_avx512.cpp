// quantkit — AVX-512 variant of the GPTQ core (qk::avx512; contracts in qk/gptq.h, design in
// docs/gptq-native.md). Bit-identical to the scalar reference (csrc/kernels/ref/gptq_ref.cpp).
//
// Structure: the O(n^3) parts (Hessian accumulation, Cholesky trailing update, triangular inverse, the lazy
// GPTQ block update) run through one register-blocked micro-kernel per precision on packed operands:
// float64 tiles of 8 x 24 (24 zmm accumulators), float32 tiles of 8 x 48. The tile is loaded from C, every
// k adds one FMA in ascending k order, and the tile is stored back; this keeps the per-entry operation
// sequence of the reference. The element-wise GPTQ column step (quantize, error, in-block update) is
// vectorized over output channels. Compiled with -mavx512f/bw/vl (+ AVX2/FMA) and -ffp-contract=off.
#include "avx512_intrin.h"

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
namespace avx512 {
namespace {

constexpr int64_t kGptqBlock = 128;  // GPTQ lazy-update block (columns), as the paper and Keras
constexpr int64_t kMRd = 8, kNRd = 24;  // float64 micro tile
constexpr int64_t kMRf = 8, kNRf = 48;  // float32 micro tile

// acc[kMRd][kNRd] (row-major, 64-byte aligned) -/+= sum_t Ap[t][ii] * B[t][jj]; B rows are ldb apart.
template <bool SUB>
inline void micro_d(int64_t K, const double* Ap, const double* Bp, int64_t ldb, double* acc) {
  __m512d c[kMRd][3];
#pragma GCC unroll 8
  for (int ii = 0; ii < kMRd; ++ii)
#pragma GCC unroll 3
    for (int v = 0; v < 3; ++v) c[ii][v] = _mm512_load_pd(acc + ii * kNRd + v * 8);
  for (int64_t t = 0; t < K; ++t) {
    const __m512d b0 = _mm512_loadu_pd(Bp + t * ldb);
    const __m512d b1 = _mm512_loadu_pd(Bp + t * ldb + 8);
    const __m512d b2 = _mm512_loadu_pd(Bp + t * ldb + 16);
    const double* a = Ap + t * kMRd;
#pragma GCC unroll 8
    for (int ii = 0; ii < kMRd; ++ii) {
      const __m512d av = _mm512_set1_pd(a[ii]);
      if (SUB) {
        c[ii][0] = _mm512_fnmadd_pd(av, b0, c[ii][0]);
        c[ii][1] = _mm512_fnmadd_pd(av, b1, c[ii][1]);
        c[ii][2] = _mm512_fnmadd_pd(av, b2, c[ii][2]);
      } else {
        c[ii][0] = _mm512_fmadd_pd(av, b0, c[ii][0]);
        c[ii][1] = _mm512_fmadd_pd(av, b1, c[ii][1]);
        c[ii][2] = _mm512_fmadd_pd(av, b2, c[ii][2]);
      }
    }
  }
#pragma GCC unroll 8
  for (int ii = 0; ii < kMRd; ++ii)
#pragma GCC unroll 3
    for (int v = 0; v < 3; ++v) _mm512_store_pd(acc + ii * kNRd + v * 8, c[ii][v]);
}

template <bool SUB>
inline void micro_f(int64_t K, const float* Ap, const float* Bp, int64_t ldb, float* acc) {
  __m512 c[kMRf][3];
#pragma GCC unroll 8
  for (int ii = 0; ii < kMRf; ++ii)
#pragma GCC unroll 3
    for (int v = 0; v < 3; ++v) c[ii][v] = _mm512_load_ps(acc + ii * kNRf + v * 16);
  for (int64_t t = 0; t < K; ++t) {
    const __m512 b0 = _mm512_loadu_ps(Bp + t * ldb);
    const __m512 b1 = _mm512_loadu_ps(Bp + t * ldb + 16);
    const __m512 b2 = _mm512_loadu_ps(Bp + t * ldb + 32);
    const float* a = Ap + t * kMRf;
#pragma GCC unroll 8
    for (int ii = 0; ii < kMRf; ++ii) {
      const __m512 av = _mm512_set1_ps(a[ii]);
      if (SUB) {
        c[ii][0] = _mm512_fnmadd_ps(av, b0, c[ii][0]);
        c[ii][1] = _mm512_fnmadd_ps(av, b1, c[ii][1]);
        c[ii][2] = _mm512_fnmadd_ps(av, b2, c[ii][2]);
      } else {
        c[ii][0] = _mm512_fmadd_ps(av, b0, c[ii][0]);
        c[ii][1] = _mm512_fmadd_ps(av, b1, c[ii][1]);
        c[ii][2] = _mm512_fmadd_ps(av, b2, c[ii][2]);
      }
    }
  }
#pragma GCC unroll 8
  for (int ii = 0; ii < kMRf; ++ii)
#pragma GCC unroll 3
    for (int v = 0; v < 3; ++v) _mm512_store_ps(acc + ii * kNRf + v * 16, c[ii][v]);
}

// One GPTQ column over n outputs: lv = clamp(rne(w/s + z), 0, maxq); dq = s*(lv - z); e = (w - dq)/d.
// Lane-wise the same operations as gptq_quantize_level (max/min with the constant second = the scalar clamp).
inline void quant_cols(const float* w, const float* s, const float* z, float maxq, float d, float* e,
                       uint8_t* ql, float* dq, int64_t n) {
  const __m512 vmax = _mm512_set1_ps(maxq), vzero = _mm512_setzero_ps(), vd = _mm512_set1_ps(d);
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t o = 0; o < n; o += 16) {
    const __mmask16 m = n - o >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - o)) - 1u);
    const __m512 vw = _mm512_maskz_loadu_ps(m, w + o);
    const __m512 vs = _mm512_mask_loadu_ps(one, m, s + o);
    const __m512 vz = _mm512_maskz_loadu_ps(m, z + o);
    __m512 t = _mm512_add_ps(_mm512_div_ps(vw, vs), vz);
    t = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    t = _mm512_min_ps(_mm512_max_ps(t, vzero), vmax);
    const __m512 vdq = _mm512_mul_ps(vs, _mm512_sub_ps(t, vz));
    const __m512 ve = _mm512_div_ps(_mm512_sub_ps(vw, vdq), vd);
    _mm512_mask_storeu_ps(e + o, m, ve);
    if (dq) _mm512_mask_storeu_ps(dq + o, m, vdq);
    _mm_mask_storeu_epi8(ql + o, m, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(t)));
  }
}

// w[o] = fma(-u, e[o], w[o]).
inline void axpy_sub(float* w, float u, const float* e, int64_t n) {
  const __m512 vu = _mm512_set1_ps(u);
  for (int64_t o = 0; o < n; o += 16) {
    const __mmask16 m = n - o >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - o)) - 1u);
    const __m512 vw = _mm512_maskz_loadu_ps(m, w + o);
    const __m512 ve = _mm512_maskz_loadu_ps(m, e + o);
    _mm512_mask_storeu_ps(w + o, m, _mm512_fnmadd_ps(vu, ve, vw));
  }
}

#include "gptq_common.inc"  // the ISA-independent part (same text for every ISA)
}  // namespace avx512
}  // namespace qk
