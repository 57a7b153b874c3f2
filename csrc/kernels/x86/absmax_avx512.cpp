// quantkit — AVX-512 abs-max reduction and Keras abs_max_quantize; bit-exact with qk::ref (absmax_ref.cpp).
//
// Same structure as absmax_avx2.cpp (read its header comment for the three cases and the exactness argument),
// with 16-float vectors and AVX-512 masks, so that every partial vector, including the int8 stores, is a
// masked instruction and no scalar tail is needed:
//   * inner == 1: contiguous reduction of each slice, then a quantize pass with a broadcast scale;
//   * 1 < inner < 32: `inner` periodic accumulators over the contiguous slice (vector v holds columns
//     (16v + j) % inner, which depends only on v % inner);
//   * inner >= 32: column panels [len, 512 floats], reduced and then quantized while still in cache.
// NaN handling in the quantize step: vmaxps returns its second operand when either is NaN, so a NaN product
// becomes lo after the clip; the conversion is then zero-masked by the "product is ordered" mask, giving 0.
#include "avx512_intrin.h"

#include <algorithm>

#include "qk/kernels.h"
#include "qk/quant_math.h"

namespace qk {
namespace avx512 {
namespace {

constexpr int64_t kW = 16;                          // floats per __m512
// Column panel width for inner >= 32: 512 floats = 2 KiB per row. Measured on 4096x4096 and similar shapes,
// narrower panels (e.g. 64 floats, which keeps a 4096-row panel inside L2) lose more to short strided row
// segments (the hardware prefetchers barely engage and every row is another 4 KiB page) than they gain in
// locality; a [len, 512] panel still stays in L2 or L3 between the reduction and the quantize pass.
constexpr int64_t kPanelFloats = 512;
constexpr int64_t kPanelVecs = kPanelFloats / kW;
// inner below this uses the periodic-column loops (whole vectors only, no partial vector per row).
constexpr int64_t kPeriodicMax = 2 * kW;

inline __m512i abs_bits(__m512 v) {
  return _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF));
}

// Lanes [0, n) set, n in [0, 16].
inline __mmask16 lanes_below(int64_t n) {
  return _cvtu32_mask16(n >= kW ? 0xFFFFu : ((1u << n) - 1u));
}

inline __m512 bits_to_amax(__m512i b) {
  const __mmask16 is_nan = _mm512_cmpgt_epu32_mask(b, _mm512_set1_epi32(0x7F800000));
  return _mm512_castsi512_ps(_mm512_mask_blend_epi32(is_nan, b, _mm512_set1_epi32(static_cast<int>(kQkCanonicalNanBits))));
}

inline float bits_to_amax(uint32_t b) { return b > 0x7F800000u ? qk_canonical_nan() : qk_bits_to_float(b); }

// Vector twin of qk_absmax_scale.
inline __m512 absmax_scale(__m512 amax, __m512 hi, __m512 eps) {
  const __m512 s = _mm512_div_ps(hi, _mm512_add_ps(amax, eps));
  const __mmask16 is_nan = _mm512_cmp_ps_mask(s, s, _CMP_UNORD_Q);
  return _mm512_mask_blend_ps(is_nan, s, _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(kQkCanonicalNanBits))));
}

// Vector twin of qk_quantize_clip, result as int32 lanes in [lo, hi] (0 for NaN products).
inline __m512i quantize_i32(__m512 x, __m512 s, __m512 lo, __m512 hi) {
  const __m512 p = _mm512_mul_ps(x, s);
  const __mmask16 ordered = _mm512_cmp_ps_mask(p, p, _CMP_ORD_Q);
  return _mm512_maskz_cvtps_epi32(ordered, _mm512_min_ps(_mm512_max_ps(p, lo), hi));
}

// 4 x 16 int32 lanes in int8 range -> 64 bytes in order. After the in-lane packs, 128-bit lane L holds the
// dwords (a_L, b_L, c_L, d_L) where x_L = elements 4L..4L+3 of x; the permute puts dword 4L+m at 4m+L.
inline __m512i narrow64(__m512i a, __m512i b, __m512i c, __m512i d) {
  const __m512i r = _mm512_packs_epi16(_mm512_packs_epi32(a, b), _mm512_packs_epi32(c, d));
  return _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), r);
}

// ---- inner == 1 -------------------------------------------------------------------------------------------

uint32_t reduce_run(const float* x, int64_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 4 * kW <= n; i += 4 * kW) {
    a0 = _mm512_max_epu32(a0, abs_bits(_mm512_loadu_ps(x + i)));
    a1 = _mm512_max_epu32(a1, abs_bits(_mm512_loadu_ps(x + i + kW)));
    a2 = _mm512_max_epu32(a2, abs_bits(_mm512_loadu_ps(x + i + 2 * kW)));
    a3 = _mm512_max_epu32(a3, abs_bits(_mm512_loadu_ps(x + i + 3 * kW)));
  }
  for (; i < n; i += kW) a0 = _mm512_max_epu32(a0, abs_bits(_mm512_maskz_loadu_ps(lanes_below(n - i), x + i)));
  return static_cast<uint32_t>(
      _mm512_reduce_max_epu32(_mm512_max_epu32(_mm512_max_epu32(a0, a1), _mm512_max_epu32(a2, a3))));
}

void quantize_run(const float* x, int64_t n, float s, float lo, float hi, int8_t* q) {
  const __m512 vs = _mm512_set1_ps(s), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  int64_t i = 0;
  for (; i + 4 * kW <= n; i += 4 * kW) {
    const __m512i r = narrow64(quantize_i32(_mm512_loadu_ps(x + i), vs, vlo, vhi),
                               quantize_i32(_mm512_loadu_ps(x + i + kW), vs, vlo, vhi),
                               quantize_i32(_mm512_loadu_ps(x + i + 2 * kW), vs, vlo, vhi),
                               quantize_i32(_mm512_loadu_ps(x + i + 3 * kW), vs, vlo, vhi));
    _mm512_storeu_si512(q + i, r);
  }
  for (; i < n; i += kW) {
    const __mmask16 m = lanes_below(n - i);
    _mm512_mask_cvtepi32_storeu_epi8(q + i, m, quantize_i32(_mm512_maskz_loadu_ps(m, x + i), vs, vlo, vhi));
  }
}

// ---- 1 < inner < 32: periodic columns ---------------------------------------------------------------------

void reduce_periodic(const float* x, int64_t len, int64_t inner, uint32_t col_bits[kPeriodicMax]) {
  __m512i acc[kPeriodicMax];
  for (int64_t k = 0; k < inner; ++k) acc[k] = _mm512_setzero_si512();
  const int64_t n = len * inner;
  int64_t k = 0;
  for (int64_t p = 0; p < n; p += kW) {
    acc[k] = _mm512_max_epu32(acc[k], abs_bits(_mm512_maskz_loadu_ps(lanes_below(n - p), x + p)));
    if (++k == inner) k = 0;
  }
  for (int64_t c = 0; c < inner; ++c) col_bits[c] = 0;
  for (int64_t kk = 0; kk < inner; ++kk) {
    alignas(64) uint32_t lanes[kW];
    _mm512_store_si512(lanes, acc[kk]);
    for (int64_t j = 0; j < kW; ++j) {
      uint32_t& c = col_bits[(kk * kW + j) % inner];
      c = std::max(c, lanes[j]);
    }
  }
}

void quantize_periodic(const float* x, int64_t len, int64_t inner, const float* col_scale, float lo, float hi,
                       int8_t* q) {
  __m512 sv[kPeriodicMax];
  for (int64_t k = 0; k < inner; ++k) {
    alignas(64) float lanes[kW];
    for (int64_t j = 0; j < kW; ++j) lanes[j] = col_scale[(k * kW + j) % inner];
    sv[k] = _mm512_load_ps(lanes);
  }
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  const int64_t n = len * inner;
  int64_t k = 0;
  for (int64_t p = 0; p < n; p += kW) {
    const __mmask16 m = lanes_below(n - p);
    _mm512_mask_cvtepi32_storeu_epi8(q + p, m, quantize_i32(_mm512_maskz_loadu_ps(m, x + p), sv[k], vlo, vhi));
    if (++k == inner) k = 0;
  }
}

// ---- inner >= 32: column panels ---------------------------------------------------------------------------

void reduce_panel(const float* x, int64_t len, int64_t inner, int64_t pw, __m512i* acc) {
  const int64_t nfull = pw / kW, rem = pw % kW;
  const int64_t nv = nfull + (rem != 0);
  for (int64_t v = 0; v < nv; ++v) acc[v] = _mm512_setzero_si512();
  const __mmask16 tail = lanes_below(rem);
  for (int64_t l = 0; l < len; ++l) {
    const float* row = x + l * inner;
    for (int64_t v = 0; v < nfull; ++v) acc[v] = _mm512_max_epu32(acc[v], abs_bits(_mm512_loadu_ps(row + v * kW)));
    if (rem != 0) acc[nfull] = _mm512_max_epu32(acc[nfull], abs_bits(_mm512_maskz_loadu_ps(tail, row + nfull * kW)));
  }
}

void quantize_panel(const float* x, int64_t len, int64_t inner, int64_t pw, const float* s, float lo, float hi,
                    int8_t* q) {
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  for (int64_t l = 0; l < len; ++l) {
    const float* xr = x + l * inner;
    int8_t* qr = q + l * inner;
    int64_t c = 0;
    for (; c + 4 * kW <= pw; c += 4 * kW) {
      const __m512i r = narrow64(quantize_i32(_mm512_loadu_ps(xr + c), _mm512_loadu_ps(s + c), vlo, vhi),
                                 quantize_i32(_mm512_loadu_ps(xr + c + kW), _mm512_loadu_ps(s + c + kW), vlo, vhi),
                                 quantize_i32(_mm512_loadu_ps(xr + c + 2 * kW), _mm512_loadu_ps(s + c + 2 * kW), vlo, vhi),
                                 quantize_i32(_mm512_loadu_ps(xr + c + 3 * kW), _mm512_loadu_ps(s + c + 3 * kW), vlo, vhi));
      _mm512_storeu_si512(qr + c, r);
    }
    for (; c < pw; c += kW) {
      const __mmask16 m = lanes_below(pw - c);
      _mm512_mask_cvtepi32_storeu_epi8(
          qr + c, m, quantize_i32(_mm512_maskz_loadu_ps(m, xr + c), _mm512_maskz_loadu_ps(m, s + c), vlo, vhi));
    }
  }
}

void store_panel(const __m512i* acc, int64_t pw, bool as_scale, float hi, float eps, float* out) {
  const __m512 vhi = _mm512_set1_ps(hi), veps = _mm512_set1_ps(eps);
  for (int64_t c = 0, v = 0; c < pw; c += kW, ++v) {
    __m512 r = bits_to_amax(acc[v]);
    if (as_scale) r = absmax_scale(r, vhi, veps);
    _mm512_mask_storeu_ps(out + c, lanes_below(pw - c), r);
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
  __m512i acc[kPanelVecs];
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
  __m512i acc[kPanelVecs];
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

}  // namespace avx512
}  // namespace qk
