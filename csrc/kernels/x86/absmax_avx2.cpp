// quantkit — AVX2 abs-max reduction and Keras abs_max_quantize; bit-exact with qk::ref (absmax_ref.cpp).
//
// Layout: x is [outer, len, inner], reduced along len (see kernels.h). Three shapes of the problem, each with
// its own loop so that every case streams through memory in address order:
//   * inner == 1: every slice is a contiguous run of len floats: a horizontal reduction of that run, then a
//     quantize pass over the same run with one broadcast scale.
//   * 1 < inner < 16: a slice (fixed o) is len*inner contiguous floats and its columns repeat with period
//     inner. Vector v of the slice (floats 8v .. 8v+7) holds columns (8v + j) % inner, which depends only on
//     v % inner, so `inner` accumulators (acc[v % inner]) collect the maxima without any gather; they are
//     folded per column at the end. The quantize pass uses `inner` scale vectors in the same pattern.
//   * inner >= 16: columns are vectorised directly. A slice is processed in column panels [len, P]: each row
//     of the panel is read contiguously into P/8 accumulators, then the scales are computed and the same panel
//     is quantized row by row. P = 512 floats (2 KiB contiguous per row, see kPanelFloats), so the second
//     pass mostly re-reads the panel from cache rather than memory.
//
// Exactness (see quant_math.h):
//   * the reduction is an unsigned integer max over (bits & 0x7FFFFFFF): equal to the IEEE max of |x| for
//     numbers, and every NaN sorts above +inf, so "ends above 0x7F800000" means "the slice had a NaN", which
//     is then replaced with the canonical NaN;
//   * scale = hi / (amax + eps) with the same two IEEE operations as the scalar code, NaN -> canonical NaN;
//   * q: one vmulps (no FMA, -ffp-contract=off), NaN lanes zeroed, clipped to [lo, hi], then vcvtps2dq (rounds
//     by MXCSR, half to even by default, like nearbyintf); clip-then-round equals round-then-clip because
//     lo and hi are integers. Tails shorter than a vector use the scalar helpers of quant_math.h.
// Loads of partial vectors use vmaskmovps, so nothing is read past the end of x.
#include <immintrin.h>

#include <algorithm>

#include "qk/kernels.h"
#include "qk/quant_math.h"

namespace qk {
namespace avx2 {
namespace {

constexpr int64_t kW = 8;                                // floats per __m256
// Column panel width for inner >= 16: 512 floats = 2 KiB per row. Measured on 4096x4096 and similar shapes,
// narrower panels (e.g. 64 floats, which keeps a 4096-row panel inside L2) lose more to short strided row
// segments (the hardware prefetchers barely engage and every row is another 4 KiB page) than they gain in
// locality; a [len, 512] panel still stays in L2 or L3 between the reduction and the quantize pass.
constexpr int64_t kPanelFloats = 512;
constexpr int64_t kPanelVecs = kPanelFloats / kW;
// inner below this uses the periodic-column loops (whole vectors only, no scalar tail per row).
constexpr int64_t kPeriodicMax = 2 * kW;

inline __m256i abs_bits(__m256 v) {
  return _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x7FFFFFFF));
}

// Lanes [0, n) set, n in [0, 8].
inline __m256i lanes_below(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline __m256i max_abs_masked(__m256i acc, const float* p, int64_t n) {
  return _mm256_max_epu32(acc, abs_bits(_mm256_maskload_ps(p, lanes_below(n))));  // masked lanes read as 0
}

// Reduced bits -> amax (canonical NaN when the bits are a NaN).
inline __m256 bits_to_amax(__m256i b) {
  const __m256i is_nan = _mm256_cmpgt_epi32(b, _mm256_set1_epi32(0x7F800000));  // b <= 0x7FFFFFFF: signed ok
  return _mm256_castsi256_ps(_mm256_blendv_epi8(b, _mm256_set1_epi32(static_cast<int>(kQkCanonicalNanBits)), is_nan));
}

inline float bits_to_amax(uint32_t b) { return b > 0x7F800000u ? qk_canonical_nan() : qk_bits_to_float(b); }

// Vector twin of qk_absmax_scale.
inline __m256 absmax_scale(__m256 amax, __m256 hi, __m256 eps) {
  const __m256 s = _mm256_div_ps(hi, _mm256_add_ps(amax, eps));
  const __m256 nan = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(kQkCanonicalNanBits)));
  return _mm256_blendv_ps(s, nan, _mm256_cmp_ps(s, s, _CMP_UNORD_Q));
}

// Vector twin of qk_quantize_clip, result as int32 lanes in [lo, hi].
inline __m256i quantize_i32(__m256 x, __m256 s, __m256 lo, __m256 hi) {
  __m256 p = _mm256_mul_ps(x, s);
  p = _mm256_and_ps(p, _mm256_cmp_ps(p, p, _CMP_ORD_Q));  // NaN -> +0 (which quantizes to 0)
  p = _mm256_min_ps(_mm256_max_ps(p, lo), hi);
  return _mm256_cvtps_epi32(p);
}

// 8 int32 lanes in int8 range -> 8 bytes (low half of the result).
inline __m128i narrow8(__m256i v) {
  const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  return _mm_packs_epi16(w, w);
}

// 4 x 8 int32 lanes in int8 range -> 32 bytes in order. The in-lane packs leave 4-byte groups in the order
// a0 b0 c0 d0 | a1 b1 c1 d1 (x0 = lanes 0-3 of x, x1 = lanes 4-7); one dword permute restores a0 a1 b0 b1 ...
inline __m256i narrow32(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i r = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
  return _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

inline uint32_t hmax(__m256i v) {
  __m128i m = _mm_max_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(1, 0, 3, 2)));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(2, 3, 0, 1)));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(m));
}

// ---- inner == 1 -------------------------------------------------------------------------------------------

// max over (bits & 0x7FFFFFFF) of n contiguous floats; 0 for n == 0.
uint32_t reduce_run(const float* x, int64_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 4 * kW <= n; i += 4 * kW) {
    a0 = _mm256_max_epu32(a0, abs_bits(_mm256_loadu_ps(x + i)));
    a1 = _mm256_max_epu32(a1, abs_bits(_mm256_loadu_ps(x + i + kW)));
    a2 = _mm256_max_epu32(a2, abs_bits(_mm256_loadu_ps(x + i + 2 * kW)));
    a3 = _mm256_max_epu32(a3, abs_bits(_mm256_loadu_ps(x + i + 3 * kW)));
  }
  for (; i + kW <= n; i += kW) a0 = _mm256_max_epu32(a0, abs_bits(_mm256_loadu_ps(x + i)));
  if (i < n) a1 = max_abs_masked(a1, x + i, n - i);
  return hmax(_mm256_max_epu32(_mm256_max_epu32(a0, a1), _mm256_max_epu32(a2, a3)));
}

// q[0, n) = quantize(x[0, n), s).
void quantize_run(const float* x, int64_t n, float s, float lo, float hi, int8_t* q) {
  const __m256 vs = _mm256_set1_ps(s), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  int64_t i = 0;
  for (; i + 4 * kW <= n; i += 4 * kW) {
    const __m256i r = narrow32(quantize_i32(_mm256_loadu_ps(x + i), vs, vlo, vhi),
                               quantize_i32(_mm256_loadu_ps(x + i + kW), vs, vlo, vhi),
                               quantize_i32(_mm256_loadu_ps(x + i + 2 * kW), vs, vlo, vhi),
                               quantize_i32(_mm256_loadu_ps(x + i + 3 * kW), vs, vlo, vhi));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), r);
  }
  for (; i + kW <= n; i += kW) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), narrow8(quantize_i32(_mm256_loadu_ps(x + i), vs, vlo, vhi)));
  }
  for (; i < n; ++i) q[i] = qk_quantize_clip(x[i], s, lo, hi);
}

// ---- 1 < inner < 16: periodic columns ------------------------------------------------------------------------

// Per-column max bits of one slice of len*inner contiguous floats (see the file comment).
void reduce_periodic(const float* x, int64_t len, int64_t inner, uint32_t col_bits[kPeriodicMax]) {
  __m256i acc[kPeriodicMax];
  for (int64_t k = 0; k < inner; ++k) acc[k] = _mm256_setzero_si256();
  const int64_t n = len * inner;
  int64_t v = 0, k = 0;
  for (; (v + 1) * kW <= n; ++v) {
    acc[k] = _mm256_max_epu32(acc[k], abs_bits(_mm256_loadu_ps(x + v * kW)));
    if (++k == inner) k = 0;
  }
  if (v * kW < n) acc[k] = max_abs_masked(acc[k], x + v * kW, n - v * kW);
  for (int64_t c = 0; c < inner; ++c) col_bits[c] = 0;
  for (int64_t kk = 0; kk < inner; ++kk) {
    alignas(32) uint32_t lanes[kW];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc[kk]);
    for (int64_t j = 0; j < kW; ++j) {
      uint32_t& c = col_bits[(kk * kW + j) % inner];
      c = std::max(c, lanes[j]);
    }
  }
}

// Quantizes one slice of len*inner contiguous floats with per-column scales col_scale[0, inner).
void quantize_periodic(const float* x, int64_t len, int64_t inner, const float* col_scale, float lo, float hi,
                       int8_t* q) {
  __m256 sv[kPeriodicMax];
  for (int64_t k = 0; k < inner; ++k) {
    alignas(32) float lanes[kW];
    for (int64_t j = 0; j < kW; ++j) lanes[j] = col_scale[(k * kW + j) % inner];
    sv[k] = _mm256_load_ps(lanes);
  }
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  const int64_t n = len * inner;
  int64_t v = 0, k = 0;
  for (; (v + 1) * kW <= n; ++v) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + v * kW),
                     narrow8(quantize_i32(_mm256_loadu_ps(x + v * kW), sv[k], vlo, vhi)));
    if (++k == inner) k = 0;
  }
  for (int64_t p = v * kW; p < n; ++p) q[p] = qk_quantize_clip(x[p], col_scale[p % inner], lo, hi);
}

// ---- inner >= 16: column panels --------------------------------------------------------------------------------

// acc[0, ceil(pw/8)) = per-column max bits of columns [0, pw) of `len` rows starting at x, row stride `inner`.
void reduce_panel(const float* x, int64_t len, int64_t inner, int64_t pw, __m256i* acc) {
  const int64_t nfull = pw / kW, rem = pw % kW;
  const int64_t nv = nfull + (rem != 0);
  for (int64_t v = 0; v < nv; ++v) acc[v] = _mm256_setzero_si256();
  const __m256i tail = lanes_below(rem);
  for (int64_t l = 0; l < len; ++l) {
    const float* row = x + l * inner;
    for (int64_t v = 0; v < nfull; ++v) acc[v] = _mm256_max_epu32(acc[v], abs_bits(_mm256_loadu_ps(row + v * kW)));
    if (rem != 0) acc[nfull] = _mm256_max_epu32(acc[nfull], abs_bits(_mm256_maskload_ps(row + nfull * kW, tail)));
  }
}

// Quantizes columns [0, pw) of `len` rows (row stride inner for x and q) with per-column scales s[0, pw).
void quantize_panel(const float* x, int64_t len, int64_t inner, int64_t pw, const float* s, float lo, float hi,
                    int8_t* q) {
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  for (int64_t l = 0; l < len; ++l) {
    const float* xr = x + l * inner;
    int8_t* qr = q + l * inner;
    int64_t c = 0;
    for (; c + 4 * kW <= pw; c += 4 * kW) {
      const __m256i r = narrow32(quantize_i32(_mm256_loadu_ps(xr + c), _mm256_loadu_ps(s + c), vlo, vhi),
                                 quantize_i32(_mm256_loadu_ps(xr + c + kW), _mm256_loadu_ps(s + c + kW), vlo, vhi),
                                 quantize_i32(_mm256_loadu_ps(xr + c + 2 * kW), _mm256_loadu_ps(s + c + 2 * kW), vlo, vhi),
                                 quantize_i32(_mm256_loadu_ps(xr + c + 3 * kW), _mm256_loadu_ps(s + c + 3 * kW), vlo, vhi));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qr + c), r);
    }
    for (; c + kW <= pw; c += kW) {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(qr + c),
                       narrow8(quantize_i32(_mm256_loadu_ps(xr + c), _mm256_loadu_ps(s + c), vlo, vhi)));
    }
    for (; c < pw; ++c) qr[c] = qk_quantize_clip(xr[c], s[c], lo, hi);
  }
}

// Stores amax (as_scale = false) or the scale (as_scale = true) of acc[0, ceil(pw/8)) to out[0, pw).
void store_panel(const __m256i* acc, int64_t pw, bool as_scale, float hi, float eps, float* out) {
  const __m256 vhi = _mm256_set1_ps(hi), veps = _mm256_set1_ps(eps);
  for (int64_t c = 0, v = 0; c < pw; c += kW, ++v) {
    __m256 r = bits_to_amax(acc[v]);
    if (as_scale) r = absmax_scale(r, vhi, veps);
    if (c + kW <= pw) {
      _mm256_storeu_ps(out + c, r);
    } else {
      _mm256_maskstore_ps(out + c, lanes_below(pw - c), r);
    }
  }
}

}  // namespace

void absmax(const float* x, int64_t outer, int64_t len, int64_t inner, float* out) {
  if (outer <= 0 || inner <= 0) return;
  if (inner == 1) {
    for (int64_t o = 0; o < outer; ++o) out[o] = bits_to_amax(reduce_run(x + o * len, len));
    return;
  }
  if (inner < kPeriodicMax) {
    for (int64_t o = 0; o < outer; ++o) {
      uint32_t col_bits[kPeriodicMax];
      reduce_periodic(x + o * len * inner, len, inner, col_bits);
      for (int64_t i = 0; i < inner; ++i) out[o * inner + i] = bits_to_amax(col_bits[i]);
    }
    return;
  }
  __m256i acc[kPanelVecs];
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c0 = 0; c0 < inner; c0 += kPanelFloats) {
      const int64_t pw = std::min(kPanelFloats, inner - c0);
      reduce_panel(x + o * len * inner + c0, len, inner, pw, acc);
      store_panel(acc, pw, /*as_scale=*/false, 0.0f, 0.0f, out + o * inner + c0);
    }
  }
}

void absmax_quantize(const float* x, int64_t outer, int64_t len, int64_t inner, float lo, float hi, float eps,
                     int8_t* q, float* scale) {
  if (outer <= 0 || inner <= 0) return;
  if (inner == 1) {
    for (int64_t o = 0; o < outer; ++o) {
      const float s = qk_absmax_scale(bits_to_amax(reduce_run(x + o * len, len)), hi, eps);
      scale[o] = s;
      quantize_run(x + o * len, len, s, lo, hi, q + o * len);
    }
    return;
  }
  if (inner < kPeriodicMax) {
    for (int64_t o = 0; o < outer; ++o) {
      uint32_t col_bits[kPeriodicMax];
      reduce_periodic(x + o * len * inner, len, inner, col_bits);
      float* s = scale + o * inner;
      for (int64_t i = 0; i < inner; ++i) s[i] = qk_absmax_scale(bits_to_amax(col_bits[i]), hi, eps);
      quantize_periodic(x + o * len * inner, len, inner, s, lo, hi, q + o * len * inner);
    }
    return;
  }
  __m256i acc[kPanelVecs];
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c0 = 0; c0 < inner; c0 += kPanelFloats) {
      const int64_t pw = std::min(kPanelFloats, inner - c0);
      const int64_t base = o * len * inner + c0;
      float* s = scale + o * inner + c0;
      reduce_panel(x + base, len, inner, pw, acc);
      store_panel(acc, pw, /*as_scale=*/true, hi, eps, s);
      quantize_panel(x + base, len, inner, pw, s, lo, hi, q + base);
    }
  }
}

}  // namespace avx2
}  // namespace qk
