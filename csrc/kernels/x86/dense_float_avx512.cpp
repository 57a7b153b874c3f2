// quantkit — weight-only quantized Dense forwards, AVX-512 variant (dense_w8, dense_w4, dense_w4g, dense_fp8).
// The blocking, threading and the two paths (M >= 2 dequantize-into-packed-panel GEMM, M == 1 streaming GEMV)
// are in dense_float_common.h; the 14 x 32 micro-kernel is sgemm's (sgemm_avx512_kernels.h). This file
// supplies, per weight format, the in-register expansion of 16/32 stored weights into float lanes.
//
// Expansion tricks (all exact):
//   int8   vpmovsxbd + vcvtdq2ps.
//   int4   the byte of columns (2c, 2c+1), sign-extended to a dword v: high nibble q = v >> 4 (arithmetic),
//          low nibble q = (v << 28) >> 28. In the GEMV, the two results are NOT re-interleaved: the L1 strip
//          keeps even and odd columns in separate arrays ("E"/"O", 16 of each per 32 columns) and the order is
//          restored once per output; the nibble -> float conversion there is a 16-entry vpermps table lookup
//          (vpermps only reads the low 4 bits of each index lane, so the byte itself and byte >> 4 index it).
//          The packed GEMM panel needs column order, so there the halves are interleaved with vpermt2d.
//   int4g  as int4, then q - z (exact small integers), then (q - z) * s in the packed panel (the reference's
//          float). The GEMV instead sums t_j = sum_k x_k * (q_kj - z_gj) over the K rows of one group in the
//          strip and adds s_gj * t_j at the group's end (one multiply per group and column, not per weight).
//   e4m3fn sign-extend the byte to 16 bits, h = (v << 7) & 0xBF80 is an IEEE half whose value is 2^-8 times the
//          e4m3fn value for every normal AND subnormal code (same mantissa width offset, exponent bias 15 vs 7);
//          vcvtph2ps converts it exactly. The NaN codes 0x7F/0xFF (which the trick would turn into 480/256) are
//          replaced by a half NaN under a byte compare mask. Both the packed panel and the GEMV keep the 2^-8
//          factor and the driver multiplies the finished sums by 256 (kUnscale; exact, see dense_float_common.h).
#include "avx512_intrin.h"

#include <type_traits>

#include "dense_float_common.h"
#include "qk/kernels.h"
#include "sgemm_avx512_kernels.h"

namespace qk {
namespace avx512 {
namespace {

using dense_float::Epilogue;
using sgemm_common::ceil_div;

// The float32 GEMM micro-kernel and blocking constants: the same 14 x 32 register tile as sgemm, from
// sgemm_avx512_kernels.h.
using Policy = SgemmTile;

constexpr int64_t kStrip = 2048;  // GEMV column strip: its accumulators stay in L1

inline __mmask16 mask16(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }
inline __mmask32 mask32(int64_t n) { return n >= 32 ? __mmask32(0xFFFFFFFFu) : __mmask32((1u << n) - 1u); }

// Sets up R rows of a GEMV pass: row pointers and broadcast activations.
template <int R, class T>
inline void row_setup(const T* base, int64_t ld, int64_t k, const float* x, const T** rows, __m512* xs) {
  for (int r = 0; r < R; ++r) {
    rows[r] = base + (k + r) * ld;
    xs[r] = _mm512_set1_ps(x[k + r]);
  }
}

// Runs step<4>(k) over [k0, k1) in fours, then step<1>(k) for the rest.
template <class Step>
inline void for_rows(int64_t k0, int64_t k1, const Step& step) {
  int64_t k = k0;
  for (; k + 4 <= k1; k += 4) step(std::integral_constant<int, 4>(), k);
  for (; k < k1; ++k) step(std::integral_constant<int, 1>(), k);
}

// ------------------------------------------------------------------------------------------------ int8
struct W8 {
  const int8_t* w;
  int64_t N;
  static constexpr int64_t kGemvTmpFloats = kStrip;
  static constexpr float kUnscale = 1.0f;

  const void* row_ptr(int64_t k, int64_t j0) const { return w + k * N + j0; }
  int64_t row_bytes(int64_t width) const { return width; }

  void pack(int64_t k, int64_t j0, int64_t cols, float* dst) const {
    const int8_t* src = w + k * N + j0;
    __m128i b0, b1;
    if (cols == 32) {
      b0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
      b1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 16));
    } else {  // masked-off bytes are neither read nor faulted, and load as 0
      b0 = _mm_maskz_loadu_epi8(mask16(cols), src);
      b1 = _mm_maskz_loadu_epi8(mask16(cols > 16 ? cols - 16 : 0), src + 16);
    }
    _mm512_store_ps(dst, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b0)));
    _mm512_store_ps(dst + 16, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b1)));
  }

  // 16 columns per vector, in column order.
  template <int R, bool kTail>
  static void rows_pass(const int8_t* const* rows, const __m512* xs, float* a, int64_t chunks, __mmask16 tm) {
    for (int64_t c = 0; c < chunks; ++c) {
      __m512 acc = _mm512_load_ps(a + c * 16);
      for (int r = 0; r < R; ++r) {
        const __m128i b = kTail ? _mm_maskz_loadu_epi8(tm, rows[r] + c * 16)
                                : _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + c * 16));
        acc = _mm512_fmadd_ps(xs[r], _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)), acc);
      }
      _mm512_store_ps(a + c * 16, acc);
    }
  }

  void gemv(int64_t k0, int64_t k1, int64_t j0, int64_t j1, const float* x, float* acc, float* a) const {
    for (int64_t s0 = j0; s0 < j1; s0 += kStrip) {
      const int64_t sw = std::min(kStrip, j1 - s0);
      const int64_t full = sw / 16;
      const __mmask16 tm = mask16(sw - full * 16);
      std::memset(a, 0, static_cast<std::size_t>(ceil_div(sw, 16) * 16) * sizeof(float));
      for_rows(k0, k1, [&](auto rc, int64_t k) {
        constexpr int R = decltype(rc)::value;
        const int8_t* rows[R];
        __m512 xs[R];
        row_setup<R>(w + s0, N, k, x, rows, xs);
        rows_pass<R, false>(rows, xs, a, full, tm);
        if (tm != 0) {
          const int8_t* trows[R];
          for (int r = 0; r < R; ++r) trows[r] = rows[r] + full * 16;
          rows_pass<R, true>(trows, xs, a + full * 16, 1, tm);
        }
      });
      std::memcpy(acc + (s0 - j0), a, static_cast<std::size_t>(sw) * sizeof(float));
    }
  }
};

// ------------------------------------------------------------------------------------------------ int4
// Per-channel (kGrouped = false) and grouped (true) share the expansion.
template <bool kGrouped>
struct W4 {
  const uint8_t* w4;
  int64_t N, rb;         // rb = (N + 1) / 2 bytes per K row
  const float* scale;    // grouped: [G, N]
  const int8_t* zero;    // grouped: [G, N]
  int64_t group;         // grouped: rows per group
  static constexpr int64_t kHalf = kStrip / 2;
  // GEMV strip arrays (kHalf floats each): acc E/O, and for grouped t E/O, z E/O, s E/O.
  static constexpr int64_t kGemvTmpFloats = kGrouped ? 8 * kHalf : 2 * kHalf;
  static constexpr float kUnscale = 1.0f;

  const void* row_ptr(int64_t k, int64_t j0) const { return w4 + k * rb + j0 / 2; }
  int64_t row_bytes(int64_t width) const { return (width + 1) / 2; }

  // 16 bytes (32 columns) sign-extended into dwords, then split into (even, odd) column nibbles.
  static inline void split(__m128i b, __m512i* lo, __m512i* hi) {
    const __m512i v = _mm512_cvtepi8_epi32(b);
    *hi = _mm512_srai_epi32(v, 4);
    *lo = _mm512_srai_epi32(_mm512_slli_epi32(v, 28), 28);
  }

  void pack(int64_t k, int64_t j0, int64_t cols, float* dst) const {
    const uint8_t* src = w4 + k * rb + j0 / 2;  // j0 is even
    const __m128i b = cols == 32 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(src))
                                 : _mm_maskz_loadu_epi8(mask16((cols + 1) / 2), src);
    __m512i lo, hi;
    split(b, &lo, &hi);
    // Interleave (lo0 hi0 lo1 hi1 ...): columns 0..15 and 16..31.
    const __m512i i0 = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i i1 = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    __m512i q0 = _mm512_permutex2var_epi32(lo, i0, hi);
    __m512i q1 = _mm512_permutex2var_epi32(lo, i1, hi);
    if (kGrouped) {
      const int64_t g = k / group;
      const int8_t* z = zero + g * N + j0;
      const float* s = scale + g * N + j0;
      const __mmask32 m = mask32(cols);
      const __m256i zb = _mm256_maskz_loadu_epi8(m, z);
      q0 = _mm512_sub_epi32(q0, _mm512_cvtepi8_epi32(_mm256_castsi256_si128(zb)));
      q1 = _mm512_sub_epi32(q1, _mm512_cvtepi8_epi32(_mm256_extracti128_si256(zb, 1)));
      const __m512 s0 = _mm512_maskz_loadu_ps(static_cast<__mmask16>(m), s);
      const __m512 s1 = _mm512_maskz_loadu_ps(static_cast<__mmask16>(m >> 16), s + 16);
      _mm512_store_ps(dst, _mm512_mul_ps(_mm512_cvtepi32_ps(q0), s0));
      _mm512_store_ps(dst + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(q1), s1));
    } else {
      _mm512_store_ps(dst, _mm512_cvtepi32_ps(q0));
      _mm512_store_ps(dst + 16, _mm512_cvtepi32_ps(q1));
    }
    // (Columns past `cols` hold finite garbage from the padding nibble / zero bytes; the driver discards them.)
  }

  // One GEMV pass of R rows over `chunks` chunks of 32 columns: E/O accumulate even/odd columns (16 each).
  // Grouped: the nibbles minus the zero points zE/zO (floats, per chunk).
  template <int R, bool kTail>
  static void rows_pass(const uint8_t* const* rows, const __m512* xs, float* e, float* o, const float* ze,
                        const float* zo, int64_t chunks, __mmask16 tm) {
    // Signed nibble value for each 4-bit index: 0..7 -> 0..7, 8..15 -> -8..-1.
    const __m512 tbl = _mm512_set_ps(-1, -2, -3, -4, -5, -6, -7, -8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (int64_t c = 0; c < chunks; ++c) {
      __m512 ae = _mm512_load_ps(e + c * 16), ao = _mm512_load_ps(o + c * 16);
      __m512 zev = _mm512_setzero_ps(), zov = _mm512_setzero_ps();
      if (kGrouped) {
        zev = _mm512_load_ps(ze + c * 16);
        zov = _mm512_load_ps(zo + c * 16);
      }
      for (int r = 0; r < R; ++r) {
        const __m128i b = kTail ? _mm_maskz_loadu_epi8(tm, rows[r] + c * 16)
                                : _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + c * 16));
        const __m512i v = _mm512_cvtepu8_epi32(b);
        __m512 qe = _mm512_permutexvar_ps(v, tbl);
        __m512 qo = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tbl);
        if (kGrouped) {
          qe = _mm512_sub_ps(qe, zev);
          qo = _mm512_sub_ps(qo, zov);
        }
        ae = _mm512_fmadd_ps(xs[r], qe, ae);
        ao = _mm512_fmadd_ps(xs[r], qo, ao);
      }
      _mm512_store_ps(e + c * 16, ae);
      _mm512_store_ps(o + c * 16, ao);
    }
  }

  // All rows [ka, kb) of the strip into (e, o).
  void strip_rows(int64_t ka, int64_t kb, int64_t s0, const float* x, float* e, float* o, const float* ze,
                  const float* zo, int64_t full, __mmask16 tm) const {
    for_rows(ka, kb, [&](auto rc, int64_t k) {
      constexpr int R = decltype(rc)::value;
      const uint8_t* rows[R];
      __m512 xs[R];
      row_setup<R>(w4 + s0 / 2, rb, k, x, rows, xs);
      rows_pass<R, false>(rows, xs, e, o, ze, zo, full, tm);
      if (tm != 0) {
        const uint8_t* trows[R];
        for (int r = 0; r < R; ++r) trows[r] = rows[r] + full * 16;
        const int64_t off = full * 16;
        rows_pass<R, true>(trows, xs, e + off, o + off, kGrouped ? ze + off : ze, kGrouped ? zo + off : zo, 1, tm);
      }
    });
  }

  void gemv(int64_t k0, int64_t k1, int64_t j0, int64_t j1, const float* x, float* acc, float* tmp) const {
    float* const ae = tmp;
    float* const ao = tmp + kHalf;
    for (int64_t s0 = j0; s0 < j1; s0 += kStrip) {
      const int64_t sw = std::min(kStrip, j1 - s0);
      const int64_t nbytes = (sw + 1) / 2;
      const int64_t full = nbytes / 16;
      const __mmask16 tm = mask16(nbytes - full * 16);
      const int64_t nchunks = ceil_div(nbytes, 16);
      const std::size_t half_bytes = static_cast<std::size_t>(nchunks * 16) * sizeof(float);
      std::memset(ae, 0, half_bytes);
      std::memset(ao, 0, half_bytes);
      if (!kGrouped) {
        strip_rows(k0, k1, s0, x, ae, ao, nullptr, nullptr, full, tm);
      } else {
        float* const te = tmp + 2 * kHalf;
        float* const to = tmp + 3 * kHalf;
        float* const ze = tmp + 4 * kHalf;
        float* const zo = tmp + 5 * kHalf;
        float* const se = tmp + 6 * kHalf;
        float* const so = tmp + 7 * kHalf;
        const __m512i ie = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        const __m512i io = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
        for (int64_t ka = k0; ka < k1;) {
          const int64_t g = ka / group;
          const int64_t kb = std::min(k1, (g + 1) * group);
          // This group's zero points and scales for the strip, split into even/odd columns.
          for (int64_t c = 0; c < nchunks; ++c) {
            const int64_t n = std::min<int64_t>(32, sw - c * 32);
            const __mmask32 m = mask32(n);
            const __m512i zw = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, zero + g * N + s0 + c * 32));
            _mm512_store_ps(ze + c * 16, _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(zw, 16), 16)));
            _mm512_store_ps(zo + c * 16, _mm512_cvtepi32_ps(_mm512_srai_epi32(zw, 16)));
            const float* s = scale + g * N + s0 + c * 32;
            const __m512 sa = _mm512_maskz_loadu_ps(static_cast<__mmask16>(m), s);
            const __m512 sb = _mm512_maskz_loadu_ps(static_cast<__mmask16>(m >> 16), s + 16);
            _mm512_store_ps(se + c * 16, _mm512_permutex2var_ps(sa, ie, sb));
            _mm512_store_ps(so + c * 16, _mm512_permutex2var_ps(sa, io, sb));
          }
          std::memset(te, 0, half_bytes);
          std::memset(to, 0, half_bytes);
          strip_rows(ka, kb, s0, x, te, to, ze, zo, full, tm);
          for (int64_t c = 0; c < nchunks * 16; c += 16) {  // acc += s * t
            _mm512_store_ps(ae + c, _mm512_fmadd_ps(_mm512_load_ps(se + c), _mm512_load_ps(te + c),
                                                    _mm512_load_ps(ae + c)));
            _mm512_store_ps(ao + c, _mm512_fmadd_ps(_mm512_load_ps(so + c), _mm512_load_ps(to + c),
                                                    _mm512_load_ps(ao + c)));
          }
          ka = kb;
        }
      }
      // Restore column order: column 32c + 2l + h is lane l of chunk c of (h ? O : E).
      float* out = acc + (s0 - j0);
      for (int64_t j = 0; j < sw; ++j) {
        const int64_t idx = (j >> 5) * 16 + ((j & 31) >> 1);
        out[j] = (j & 1) ? ao[idx] : ae[idx];
      }
    }
  }
};

// ------------------------------------------------------------------------------------------------ fp8
struct Fp8 {
  const uint8_t* w8;
  int64_t N;
  static constexpr int64_t kGemvTmpFloats = kStrip;
  static constexpr float kUnscale = 256.0f;

  const void* row_ptr(int64_t k, int64_t j0) const { return w8 + k * N + j0; }
  int64_t row_bytes(int64_t width) const { return width; }

  // 32 e4m3fn codes -> two vectors of 2^-8 * value (see the file comment).
  static inline void decode_scaled(__m256i b, __m512* f0, __m512* f1) {
    const __mmask32 nan = _mm256_cmpeq_epi8_mask(_mm256_and_si256(b, _mm256_set1_epi8(0x7F)),
                                                 _mm256_set1_epi8(0x7F));
    __m512i h = _mm512_and_si512(_mm512_slli_epi16(_mm512_cvtepi8_epi16(b), 7), _mm512_set1_epi16(-16512));  // 0xBF80
    h = _mm512_mask_mov_epi16(h, nan, _mm512_set1_epi16(0x7E00));
    *f0 = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
    *f1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
  }

  void pack(int64_t k, int64_t j0, int64_t cols, float* dst) const {
    const uint8_t* src = w8 + k * N + j0;
    const __m256i b = cols == 32 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src))
                                 : _mm256_maskz_loadu_epi8(mask32(cols), src);
    __m512 f0, f1;
    decode_scaled(b, &f0, &f1);
    _mm512_store_ps(dst, f0);  // 2^-8 * value: the driver multiplies the sums by kUnscale = 256 (exact)
    _mm512_store_ps(dst + 16, f1);
  }

  template <int R, bool kTail>
  static void rows_pass(const uint8_t* const* rows, const __m512* xs, float* a, int64_t chunks, __mmask32 tm) {
    for (int64_t c = 0; c < chunks; ++c) {
      __m512 a0 = _mm512_load_ps(a + c * 32), a1 = _mm512_load_ps(a + c * 32 + 16);
      for (int r = 0; r < R; ++r) {
        const __m256i b = kTail ? _mm256_maskz_loadu_epi8(tm, rows[r] + c * 32)
                                : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r] + c * 32));
        __m512 f0, f1;
        decode_scaled(b, &f0, &f1);
        a0 = _mm512_fmadd_ps(xs[r], f0, a0);
        a1 = _mm512_fmadd_ps(xs[r], f1, a1);
      }
      _mm512_store_ps(a + c * 32, a0);
      _mm512_store_ps(a + c * 32 + 16, a1);
    }
  }

  void gemv(int64_t k0, int64_t k1, int64_t j0, int64_t j1, const float* x, float* acc, float* a) const {
    for (int64_t s0 = j0; s0 < j1; s0 += kStrip) {
      const int64_t sw = std::min(kStrip, j1 - s0);
      const int64_t full = sw / 32;
      const __mmask32 tm = mask32(sw - full * 32);
      std::memset(a, 0, static_cast<std::size_t>(ceil_div(sw, 32) * 32) * sizeof(float));
      for_rows(k0, k1, [&](auto rc, int64_t k) {
        constexpr int R = decltype(rc)::value;
        const uint8_t* rows[R];
        __m512 xs[R];
        row_setup<R>(w8 + s0, N, k, x, rows, xs);
        rows_pass<R, false>(rows, xs, a, full, tm);
        if (tm != 0) {
          const uint8_t* trows[R];
          for (int r = 0; r < R; ++r) trows[r] = rows[r] + full * 32;
          rows_pass<R, true>(trows, xs, a + full * 32, 1, tm);
        }
      });
      std::memcpy(acc + (s0 - j0), a, static_cast<std::size_t>(sw) * sizeof(float));
    }
  }
};

// dst[i] = dec(e4m3fn(clip(src[i] / x_scale, -448, 448))), bit-identical to dense_float::fp8_quantize_decode:
// the rounded value is produced directly as a float32 (the code itself is never needed):
//   |t| >= 2^-6 (e4m3fn normal): round-half-even to 3 mantissa bits on the bit pattern;
//   |t| <  2^-6 (subnormal):     round to a multiple of 2^-9 (vrndscaleps with 9 fraction bits, RNE);
//   NaN stays NaN (clip keeps it: max/min return their second operand when either is NaN).
void quantize_fp8(const float* src, int64_t n, float x_scale, float* dst) {
  const __m512 vs = _mm512_set1_ps(x_scale);
  const __m512 lo = _mm512_set1_ps(-448.0f), hi = _mm512_set1_ps(448.0f);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 t = _mm512_div_ps(_mm512_loadu_ps(src + i), vs);
    t = _mm512_min_ps(hi, _mm512_max_ps(lo, t));
    const __m512i bits = _mm512_castps_si512(t);
    const __m512i mag = _mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFFFF));
    const __mmask16 normal = _mm512_cmpge_epu32_mask(mag, _mm512_set1_epi32(0x3C800000));
    const __mmask16 nan = _mm512_cmp_ps_mask(t, t, _CMP_UNORD_Q);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 20), _mm512_set1_epi32(1));
    const __m512i rn = _mm512_and_si512(_mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7FFFF), lsb)),
                                        _mm512_set1_epi32(static_cast<int>(0xFFF00000u)));
    __m512 r = _mm512_roundscale_ps(t, (9 << 4) | _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm512_mask_mov_ps(r, normal, _mm512_castsi512_ps(rn));
    r = _mm512_mask_mov_ps(r, nan, t);
    _mm512_storeu_ps(dst + i, r);
  }
  for (; i < n; ++i) dst[i] = dense_float::fp8_quantize_decode(src[i], x_scale);
}

}  // namespace

Status dense_w8(int64_t M, int64_t N, int64_t K, const float* x, const int8_t* w, const float* w_scale,
                const float* bias, float* y, ThreadPool* pool) {
  const W8 fmt{w, N};
  const Epilogue epi{Epilogue::kDivide, w_scale, 1.0f, bias};
  return dense_float::dense_driver<Policy>(fmt, M, N, K, x, y, epi, pool);
}

Status dense_w4(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* w4, const float* w_scale,
                const float* bias, float* y, ThreadPool* pool) {
  const W4<false> fmt{w4, N, (N + 1) / 2, nullptr, nullptr, 1};
  const Epilogue epi{Epilogue::kDivide, w_scale, 1.0f, bias};
  return dense_float::dense_driver<Policy>(fmt, M, N, K, x, y, epi, pool);
}

Status dense_w4g(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* w4, const float* scale,
                 const int8_t* zero, int64_t group, const float* bias, float* y, ThreadPool* pool) {
  const W4<true> fmt{w4, N, (N + 1) / 2, scale, zero, group};
  const Epilogue epi{Epilogue::kNone, nullptr, 1.0f, bias};
  return dense_float::dense_driver<Policy>(fmt, M, N, K, x, y, epi, pool);
}

Status dense_fp8(int64_t M, int64_t N, int64_t K, const float* x, float x_scale, const uint8_t* w8,
                 float w_scale, const float* bias, float* y, ThreadPool* pool) {
  const Fp8 fmt{w8, N};
  const Epilogue epi{Epilogue::kMultiply, nullptr, x_scale * w_scale, bias};
  return dense_float::dense_fp8_driver<Policy>(fmt, M, N, K, x, x_scale, y, epi, pool, quantize_fp8);
}

}  // namespace avx512
}  // namespace qk
