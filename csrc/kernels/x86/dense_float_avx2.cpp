// quantkit — weight-only quantized Dense forwards, AVX2 + FMA + F16C variant (dense_w8, dense_w4, dense_w4g,
// dense_fp8). Blocking, threading and the two paths are in dense_float_common.h; the 6 x 16 micro-kernel is
// sgemm's (sgemm_avx2_kernels.h). This file supplies the in-register expansion of each weight format. The
// tricks are those of dense_float_avx512.cpp (see there), at 8 lanes:
//   int8   vpmovsxbd + vcvtdq2ps;
//   int4   sign-extended byte v: high nibble v >> 4, low nibble (v << 28) >> 28 (arithmetic shifts); the GEMV
//          keeps even/odd columns in separate L1 strip arrays, the packed panel interleaves them;
//   int4g  q - z, then * s in the packed panel; per-group partial sums t and acc += s * t in the GEMV;
//   e4m3fn h = (sign-extended byte << 7) & 0xBF80 is a half equal to 2^-8 * value; NaN codes blended in.
// Partial chunks at the right edge are copied into a zero-padded local buffer, so nothing past a row is read.
#include <immintrin.h>

#include <type_traits>

#include "dense_float_common.h"
#include "qk/kernels.h"
#include "sgemm_avx2_kernels.h"

namespace qk {
namespace avx2 {
namespace {

using dense_float::Epilogue;
using sgemm_common::ceil_div;

// The float32 GEMM micro-kernel and blocking constants: the same 6 x 16 register tile as sgemm, from
// sgemm_avx2_kernels.h.
using Policy = SgemmTile;

constexpr int64_t kStrip = 2048;  // GEMV column strip: its accumulators stay in L1

// n (<= 16) bytes from p, zero padded to 16.
inline __m128i load_partial(const void* p, int64_t n) {
  alignas(16) uint8_t buf[16] = {};
  std::memcpy(buf, p, static_cast<std::size_t>(n));
  return _mm_load_si128(reinterpret_cast<const __m128i*>(buf));
}
inline __m128i load8(const void* p) { return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)); }
inline __m128i load16(const void* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

template <int R, class T>
inline void row_setup(const T* base, int64_t ld, int64_t k, const float* x, const T** rows, __m256* xs) {
  for (int r = 0; r < R; ++r) {
    rows[r] = base + (k + r) * ld;
    xs[r] = _mm256_set1_ps(x[k + r]);
  }
}

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
    const __m128i b = cols == 16 ? load16(src) : load_partial(src, cols);
    _mm256_store_ps(dst, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)));
    _mm256_store_ps(dst + 8, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8))));
  }

  // 8 columns per vector; chunk bytes come from load(row, c).
  template <int R, class Load>
  static void rows_pass(const int8_t* const* rows, const __m256* xs, float* a, int64_t chunks, const Load& load) {
    for (int64_t c = 0; c < chunks; ++c) {
      __m256 acc = _mm256_load_ps(a + c * 8);
      for (int r = 0; r < R; ++r) {
        acc = _mm256_fmadd_ps(xs[r], _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(load(rows[r] + c * 8))), acc);
      }
      _mm256_store_ps(a + c * 8, acc);
    }
  }

  void gemv(int64_t k0, int64_t k1, int64_t j0, int64_t j1, const float* x, float* acc, float* a) const {
    for (int64_t s0 = j0; s0 < j1; s0 += kStrip) {
      const int64_t sw = std::min(kStrip, j1 - s0);
      const int64_t full = sw / 8, rem = sw - full * 8;
      std::memset(a, 0, static_cast<std::size_t>(ceil_div(sw, 8) * 8) * sizeof(float));
      for_rows(k0, k1, [&](auto rc, int64_t k) {
        constexpr int R = decltype(rc)::value;
        const int8_t* rows[R];
        __m256 xs[R];
        row_setup<R>(w + s0, N, k, x, rows, xs);
        rows_pass<R>(rows, xs, a, full, [](const int8_t* p) { return load8(p); });
        if (rem != 0) {
          const int8_t* trows[R];
          for (int r = 0; r < R; ++r) trows[r] = rows[r] + full * 8;
          rows_pass<R>(trows, xs, a + full * 8, 1, [rem](const int8_t* p) { return load_partial(p, rem); });
        }
      });
      std::memcpy(acc + (s0 - j0), a, static_cast<std::size_t>(sw) * sizeof(float));
    }
  }
};

// ------------------------------------------------------------------------------------------------ int4
template <bool kGrouped>
struct W4 {
  const uint8_t* w4;
  int64_t N, rb;
  const float* scale;
  const int8_t* zero;
  int64_t group;
  static constexpr int64_t kHalf = kStrip / 2;
  static constexpr int64_t kGemvTmpFloats = kGrouped ? 8 * kHalf : 2 * kHalf;
  static constexpr float kUnscale = 1.0f;

  const void* row_ptr(int64_t k, int64_t j0) const { return w4 + k * rb + j0 / 2; }
  int64_t row_bytes(int64_t width) const { return (width + 1) / 2; }

  // Low 8 bytes (16 columns) -> (even, odd) column nibbles as dwords.
  static inline void split(__m128i b, __m256i* lo, __m256i* hi) {
    const __m256i v = _mm256_cvtepi8_epi32(b);
    *hi = _mm256_srai_epi32(v, 4);
    *lo = _mm256_srai_epi32(_mm256_slli_epi32(v, 28), 28);
  }

  void pack(int64_t k, int64_t j0, int64_t cols, float* dst) const {
    const uint8_t* src = w4 + k * rb + j0 / 2;
    const __m128i b = cols == 16 ? load8(src) : load_partial(src, (cols + 1) / 2);
    __m256i lo, hi;
    split(b, &lo, &hi);
    const __m256i ul = _mm256_unpacklo_epi32(lo, hi);  // cols 0-3 | 8-11
    const __m256i uh = _mm256_unpackhi_epi32(lo, hi);  // cols 4-7 | 12-15
    __m256i q0 = _mm256_permute2x128_si256(ul, uh, 0x20);
    __m256i q1 = _mm256_permute2x128_si256(ul, uh, 0x31);
    if (kGrouped) {
      const int64_t g = k / group;
      const int8_t* z = zero + g * N + j0;
      const float* s = scale + g * N + j0;
      const __m128i zb = cols == 16 ? load16(z) : load_partial(z, cols);
      q0 = _mm256_sub_epi32(q0, _mm256_cvtepi8_epi32(zb));
      q1 = _mm256_sub_epi32(q1, _mm256_cvtepi8_epi32(_mm_srli_si128(zb, 8)));
      __m256 s0, s1;
      if (cols == 16) {
        s0 = _mm256_loadu_ps(s);
        s1 = _mm256_loadu_ps(s + 8);
      } else {
        alignas(32) float sb[16] = {};
        std::memcpy(sb, s, static_cast<std::size_t>(cols) * sizeof(float));
        s0 = _mm256_load_ps(sb);
        s1 = _mm256_load_ps(sb + 8);
      }
      _mm256_store_ps(dst, _mm256_mul_ps(_mm256_cvtepi32_ps(q0), s0));
      _mm256_store_ps(dst + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(q1), s1));
    } else {
      _mm256_store_ps(dst, _mm256_cvtepi32_ps(q0));
      _mm256_store_ps(dst + 8, _mm256_cvtepi32_ps(q1));
    }
  }

  // One GEMV pass of R rows over `chunks` chunks of 16 columns (8 bytes): e/o get even/odd columns (8 each).
  template <int R, class Load>
  static void rows_pass(const uint8_t* const* rows, const __m256* xs, float* e, float* o, const float* ze,
                        const float* zo, int64_t chunks, const Load& load) {
    for (int64_t c = 0; c < chunks; ++c) {
      __m256 ae = _mm256_load_ps(e + c * 8), ao = _mm256_load_ps(o + c * 8);
      __m256 zev = _mm256_setzero_ps(), zov = _mm256_setzero_ps();
      if (kGrouped) {
        zev = _mm256_load_ps(ze + c * 8);
        zov = _mm256_load_ps(zo + c * 8);
      }
      for (int r = 0; r < R; ++r) {
        __m256i lo, hi;
        split(load(rows[r] + c * 8), &lo, &hi);
        __m256 qe = _mm256_cvtepi32_ps(lo), qo = _mm256_cvtepi32_ps(hi);
        if (kGrouped) {
          qe = _mm256_sub_ps(qe, zev);
          qo = _mm256_sub_ps(qo, zov);
        }
        ae = _mm256_fmadd_ps(xs[r], qe, ae);
        ao = _mm256_fmadd_ps(xs[r], qo, ao);
      }
      _mm256_store_ps(e + c * 8, ae);
      _mm256_store_ps(o + c * 8, ao);
    }
  }

  void strip_rows(int64_t ka, int64_t kb, int64_t s0, const float* x, float* e, float* o, const float* ze,
                  const float* zo, int64_t full, int64_t rem) const {
    for_rows(ka, kb, [&](auto rc, int64_t k) {
      constexpr int R = decltype(rc)::value;
      const uint8_t* rows[R];
      __m256 xs[R];
      row_setup<R>(w4 + s0 / 2, rb, k, x, rows, xs);
      rows_pass<R>(rows, xs, e, o, ze, zo, full, [](const uint8_t* p) { return load8(p); });
      if (rem != 0) {
        const uint8_t* trows[R];
        for (int r = 0; r < R; ++r) trows[r] = rows[r] + full * 8;
        const int64_t off = full * 8;
        rows_pass<R>(trows, xs, e + off, o + off, kGrouped ? ze + off : ze, kGrouped ? zo + off : zo, 1,
                     [rem](const uint8_t* p) { return load_partial(p, rem); });
      }
    });
  }

  void gemv(int64_t k0, int64_t k1, int64_t j0, int64_t j1, const float* x, float* acc, float* tmp) const {
    float* const ae = tmp;
    float* const ao = tmp + kHalf;
    for (int64_t s0 = j0; s0 < j1; s0 += kStrip) {
      const int64_t sw = std::min(kStrip, j1 - s0);
      const int64_t nbytes = (sw + 1) / 2;
      const int64_t full = nbytes / 8, rem = nbytes - full * 8;
      const int64_t nchunks = ceil_div(nbytes, 8);
      const std::size_t half_bytes = static_cast<std::size_t>(nchunks * 8) * sizeof(float);
      std::memset(ae, 0, half_bytes);
      std::memset(ao, 0, half_bytes);
      if (!kGrouped) {
        strip_rows(k0, k1, s0, x, ae, ao, nullptr, nullptr, full, rem);
      } else {
        float* const te = tmp + 2 * kHalf;
        float* const to = tmp + 3 * kHalf;
        float* const ze = tmp + 4 * kHalf;
        float* const zo = tmp + 5 * kHalf;
        float* const se = tmp + 6 * kHalf;
        float* const so = tmp + 7 * kHalf;
        for (int64_t ka = k0; ka < k1;) {
          const int64_t g = ka / group;
          const int64_t kb = std::min(k1, (g + 1) * group);
          for (int64_t c = 0; c < nchunks; ++c) {  // zero points and scales of the strip, even/odd split
            const int64_t n = std::min<int64_t>(16, sw - c * 16);
            const int8_t* z = zero + g * N + s0 + c * 16;
            const float* s = scale + g * N + s0 + c * 16;
            const __m256i zw = _mm256_cvtepi8_epi16(n == 16 ? load16(z) : load_partial(z, n));
            _mm256_store_ps(ze + c * 8, _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(zw, 16), 16)));
            _mm256_store_ps(zo + c * 8, _mm256_cvtepi32_ps(_mm256_srai_epi32(zw, 16)));
            alignas(32) float sb[16] = {};
            std::memcpy(sb, s, static_cast<std::size_t>(n) * sizeof(float));
            const __m256 sa = _mm256_load_ps(sb), sbv = _mm256_load_ps(sb + 8);
            // shuffle: (a0 a2 b0 b2 | a4 a6 b4 b6); permute 64-bit lanes (0 2 1 3) -> a0 a2 a4 a6 b0 b2 b4 b6
            const __m256 ev = _mm256_shuffle_ps(sa, sbv, _MM_SHUFFLE(2, 0, 2, 0));
            const __m256 od = _mm256_shuffle_ps(sa, sbv, _MM_SHUFFLE(3, 1, 3, 1));
            _mm256_store_ps(se + c * 8, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), 0xD8)));
            _mm256_store_ps(so + c * 8, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(od), 0xD8)));
          }
          std::memset(te, 0, half_bytes);
          std::memset(to, 0, half_bytes);
          strip_rows(ka, kb, s0, x, te, to, ze, zo, full, rem);
          for (int64_t c = 0; c < nchunks * 8; c += 8) {  // acc += s * t
            _mm256_store_ps(ae + c, _mm256_fmadd_ps(_mm256_load_ps(se + c), _mm256_load_ps(te + c),
                                                    _mm256_load_ps(ae + c)));
            _mm256_store_ps(ao + c, _mm256_fmadd_ps(_mm256_load_ps(so + c), _mm256_load_ps(to + c),
                                                    _mm256_load_ps(ao + c)));
          }
          ka = kb;
        }
      }
      // Column 16c + 2l + h is lane l of chunk c of (h ? O : E).
      float* out = acc + (s0 - j0);
      for (int64_t j = 0; j < sw; ++j) {
        const int64_t idx = (j >> 4) * 8 + ((j & 15) >> 1);
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

  // 16 e4m3fn codes -> two vectors of 2^-8 * value.
  static inline void decode_scaled(__m128i b, __m256* f0, __m256* f1) {
    const __m256i v = _mm256_cvtepi8_epi16(b);
    __m256i h = _mm256_and_si256(_mm256_slli_epi16(v, 7), _mm256_set1_epi16(-16512));  // 0xBF80
    const __m256i nan = _mm256_cmpeq_epi16(_mm256_and_si256(v, _mm256_set1_epi16(0x7F)), _mm256_set1_epi16(0x7F));
    h = _mm256_blendv_epi8(h, _mm256_set1_epi16(0x7E00), nan);
    *f0 = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
    *f1 = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
  }

  void pack(int64_t k, int64_t j0, int64_t cols, float* dst) const {
    const uint8_t* src = w8 + k * N + j0;
    __m256 f0, f1;
    decode_scaled(cols == 16 ? load16(src) : load_partial(src, cols), &f0, &f1);
    _mm256_store_ps(dst, f0);  // 2^-8 * value: the driver multiplies the sums by kUnscale = 256 (exact)
    _mm256_store_ps(dst + 8, f1);
  }

  template <int R, class Load>
  static void rows_pass(const uint8_t* const* rows, const __m256* xs, float* a, int64_t chunks, const Load& load) {
    for (int64_t c = 0; c < chunks; ++c) {
      __m256 a0 = _mm256_load_ps(a + c * 16), a1 = _mm256_load_ps(a + c * 16 + 8);
      for (int r = 0; r < R; ++r) {
        __m256 f0, f1;
        decode_scaled(load(rows[r] + c * 16), &f0, &f1);
        a0 = _mm256_fmadd_ps(xs[r], f0, a0);
        a1 = _mm256_fmadd_ps(xs[r], f1, a1);
      }
      _mm256_store_ps(a + c * 16, a0);
      _mm256_store_ps(a + c * 16 + 8, a1);
    }
  }

  void gemv(int64_t k0, int64_t k1, int64_t j0, int64_t j1, const float* x, float* acc, float* a) const {
    for (int64_t s0 = j0; s0 < j1; s0 += kStrip) {
      const int64_t sw = std::min(kStrip, j1 - s0);
      const int64_t full = sw / 16, rem = sw - full * 16;
      std::memset(a, 0, static_cast<std::size_t>(ceil_div(sw, 16) * 16) * sizeof(float));
      for_rows(k0, k1, [&](auto rc, int64_t k) {
        constexpr int R = decltype(rc)::value;
        const uint8_t* rows[R];
        __m256 xs[R];
        row_setup<R>(w8 + s0, N, k, x, rows, xs);
        rows_pass<R>(rows, xs, a, full, [](const uint8_t* p) { return load16(p); });
        if (rem != 0) {
          const uint8_t* trows[R];
          for (int r = 0; r < R; ++r) trows[r] = rows[r] + full * 16;
          rows_pass<R>(trows, xs, a + full * 16, 1, [rem](const uint8_t* p) { return load_partial(p, rem); });
        }
      });
      std::memcpy(acc + (s0 - j0), a, static_cast<std::size_t>(sw) * sizeof(float));
    }
  }
};

// Vectorized dense_float::fp8_quantize_decode (bit-identical; see dense_float_avx512.cpp). The subnormal
// range rounds t * 2^9 to an integer (RNE, exact scaling) and scales back.
void quantize_fp8(const float* src, int64_t n, float x_scale, float* dst) {
  const __m256 vs = _mm256_set1_ps(x_scale);
  const __m256 lo = _mm256_set1_ps(-448.0f), hi = _mm256_set1_ps(448.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 t = _mm256_div_ps(_mm256_loadu_ps(src + i), vs);
    t = _mm256_min_ps(hi, _mm256_max_ps(lo, t));  // a NaN t is the second operand: kept
    const __m256i bits = _mm256_castps_si256(t);
    const __m256i mag = _mm256_and_si256(bits, _mm256_set1_epi32(0x7FFFFFFF));
    const __m256i normal = _mm256_cmpgt_epi32(mag, _mm256_set1_epi32(0x3C7FFFFF));  // |t| >= 2^-6 (or NaN)
    const __m256 nan = _mm256_cmp_ps(t, t, _CMP_UNORD_Q);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 20), _mm256_set1_epi32(1));
    const __m256i rn = _mm256_and_si256(_mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7FFFF), lsb)),
                                        _mm256_set1_epi32(static_cast<int>(0xFFF00000u)));
    const __m256 rs = _mm256_mul_ps(
        _mm256_round_ps(_mm256_mul_ps(t, _mm256_set1_ps(512.0f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
        _mm256_set1_ps(1.0f / 512.0f));
    __m256 r = _mm256_blendv_ps(rs, _mm256_castsi256_ps(rn), _mm256_castsi256_ps(normal));
    r = _mm256_blendv_ps(r, t, nan);
    _mm256_storeu_ps(dst + i, r);
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

}  // namespace avx2
}  // namespace qk
