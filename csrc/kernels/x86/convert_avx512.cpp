// quantkit — AVX-512 (F/BW/VL) float conversion kernels, 16 lanes. Bit-exact with qk::ref
// (rules: qk/fp_convert.h). Same algorithms as convert_avx2.cpp, widened to 16 lanes, with AVX-512 masks:
// * f16: vcvtps2ph (RNE immediate) / vcvtph2ps, NaN lanes (encode) and E=31 lanes (decode) patched to
//   numpy's bit patterns with integer ops under a lane mask.
// * bf16: integer RNE on the low 16 bits, NaN -> 0x7FC0 | sign; vpmovdw narrows. (vcvtneps2bf16 is NOT
//   used: it flushes float32 denormals to zero and keeps NaN payloads, unlike ml_dtypes.)
// * fp8 encode: RNE bias trick for results in the normal range, magic-constant float addition for
//   subnormal results (see convert_avx2.cpp), overflow/NaN by comparing |x|'s bits against the thresholds
//   derived in fp_convert.h; vpmovdb narrows.
// * fp8 decode: code -> float16 bit pattern (e5m2: << 8; e4m3fn: sign << 8 | magnitude << 7, value / 256)
//   -> vcvtph2ps (x 256 for e4m3fn, exact) -> NaN codes patched to 0x7FC00000 | sign.
// Tails use masked loads/stores (masked-off elements are neither read nor written), so every n is handled
// by the vector code.
// GCC 12 reports a false -Wmaybe-uninitialized inside avx512fintrin.h (the self-initialised
// _mm512_undefined_* helpers, GCC bug 105593) wherever these intrinsics are inlined; silence it here only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "qk/kernels.h"

namespace qk {
namespace avx512 {
namespace {

constexpr int kRne = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

inline __m512i set1(uint32_t v) { return _mm512_set1_epi32(static_cast<int>(v)); }

// Lane mask selecting the first min(n - i, 16) lanes.
inline __mmask16 tail_mask(int64_t remaining) {
  return remaining >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << remaining) - 1u);
}

inline __m256i cvt_f32_f16_16(__m512 v) {
  __m256i h = _mm512_cvtps_ph(v, kRne);
  const __m512i x = _mm512_castps_si512(v);
  const __m512i a = _mm512_and_si512(x, set1(0x7FFFFFFFu));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(a, set1(0x7F800000u));
  if (nan) {
    // numpy: S | 0x7C00 | max(top 10 payload bits, 1)
    __m512i p = _mm512_and_si512(_mm512_srli_epi32(a, 13), set1(0x3FFu));
    p = _mm512_max_epu32(p, set1(1u));
    const __m512i fix = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(x, 16), set1(0x8000u)),
                                        _mm512_or_si512(p, set1(0x7C00u)));
    h = _mm256_mask_blend_epi16(nan, h, _mm512_cvtepi32_epi16(fix));
  }
  return h;
}

inline __m512 cvt_f16_f32_16(__m256i h) {
  __m512 f = _mm512_cvtph_ps(h);
  const __m512i h32 = _mm512_cvtepu16_epi32(h);
  const __mmask16 special = _mm512_cmpeq_epi32_mask(_mm512_and_si512(h32, set1(0x7C00u)), set1(0x7C00u));
  if (special) {
    const __m512i fix = _mm512_or_si512(
        _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(h32, set1(0x8000u)), 16), set1(0x7F800000u)),
        _mm512_slli_epi32(_mm512_and_si512(h32, set1(0x3FFu)), 13));
    f = _mm512_mask_mov_ps(f, special, _mm512_castsi512_ps(fix));
  }
  return f;
}

inline __m256i cvt_f32_bf16_16(__m512i x) {
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), set1(1u));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(x, set1(0x7FFFu)), lsb), 16);
  const __m512i a = _mm512_and_si512(x, set1(0x7FFFFFFFu));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(a, set1(0x7F800000u));
  const __m512i qnan = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(x, 16), set1(0x8000u)), set1(0x7FC0u));
  r = _mm512_mask_mov_epi32(r, nan, qnan);
  return _mm512_cvtepi32_epi16(r);
}

template <int kMant, int kBias>
inline __m512i fp8_magnitude_16(__m512i a) {
  constexpr int kDrop = 23 - kMant;
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(a, kDrop), set1(1u));
  const __m512i rounded = _mm512_add_epi32(_mm512_add_epi32(a, set1((1u << (kDrop - 1)) - 1u)), lsb);
  const __m512i normal = _mm512_sub_epi32(_mm512_srli_epi32(rounded, kDrop),
                                          set1(static_cast<uint32_t>(127 - kBias) << kMant));
  constexpr uint32_t kMagicBits = static_cast<uint32_t>(127 + 24 - kBias - kMant) << 23;  // 2^(24-bias-mant)
  const __m512 sum = _mm512_add_ps(_mm512_castsi512_ps(a), _mm512_castsi512_ps(set1(kMagicBits)));
  const __m512i sub = _mm512_sub_epi32(_mm512_castps_si512(sum), set1(kMagicBits));
  constexpr uint32_t kMinNormalBits = static_cast<uint32_t>(128 - kBias) << 23;
  return _mm512_mask_mov_epi32(normal, _mm512_cmplt_epu32_mask(a, set1(kMinNormalBits)), sub);
}

template <Fp8Format kFmt>
inline __m128i cvt_f32_fp8_16(__m512 v) {
  const __m512i x = _mm512_castps_si512(v);
  const __m512i a = _mm512_and_si512(x, set1(0x7FFFFFFFu));
  const __m512i s = _mm512_and_si512(_mm512_srli_epi32(x, 24), set1(0x80u));
  __m512i c;
  if (kFmt == Fp8Format::kE4M3FN) {
    c = fp8_magnitude_16<3, 7>(a);
    c = _mm512_mask_mov_epi32(c, _mm512_cmpgt_epu32_mask(a, set1(0x43E80000u)), set1(0x7Fu));  // > 464
  } else {
    c = fp8_magnitude_16<2, 15>(a);
    c = _mm512_mask_mov_epi32(c, _mm512_cmpgt_epu32_mask(a, set1(0x476FFFFFu)), set1(0x7Cu));  // >= 61440
    c = _mm512_mask_mov_epi32(c, _mm512_cmpgt_epu32_mask(a, set1(0x7F800000u)), set1(0x7Eu));  // NaN
  }
  return _mm512_cvtepi32_epi8(_mm512_or_si512(c, s));
}

template <Fp8Format kFmt>
inline __m512 cvt_fp8_f32_16(__m128i b) {
  const __m256i b16 = _mm256_cvtepu8_epi16(b);
  const __m256i mag = _mm256_and_si256(b16, _mm256_set1_epi16(0x7F));
  __m512 f;
  __mmask16 nan;
  if (kFmt == Fp8Format::kE4M3FN) {
    const __m256i h = _mm256_or_si256(
        _mm256_and_si256(_mm256_slli_epi16(b16, 8), _mm256_set1_epi16(static_cast<short>(0x8000))),
        _mm256_slli_epi16(mag, 7));
    f = _mm512_mul_ps(_mm512_cvtph_ps(h), _mm512_set1_ps(256.0f));
    nan = _mm256_cmpeq_epi16_mask(mag, _mm256_set1_epi16(0x7F));
  } else {
    f = _mm512_cvtph_ps(_mm256_slli_epi16(b16, 8));
    nan = _mm256_cmpgt_epi16_mask(mag, _mm256_set1_epi16(0x7C));
  }
  if (nan) {
    const __m512i q = _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(f), set1(0x80000000u)), set1(0x7FC00000u));
    f = _mm512_mask_mov_ps(f, nan, _mm512_castsi512_ps(q));
  }
  return f;
}

template <Fp8Format kFmt>
void f32_to_fp8_impl(const float* src, uint8_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), cvt_f32_fp8_16<kFmt>(_mm512_loadu_ps(src + i)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i + 16),
                     cvt_f32_fp8_16<kFmt>(_mm512_loadu_ps(src + i + 16)));
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    _mm_mask_storeu_epi8(dst + i, m, cvt_f32_fp8_16<kFmt>(_mm512_maskz_loadu_ps(m, src + i)));
  }
}

template <Fp8Format kFmt>
void fp8_to_f32_impl(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    _mm512_storeu_ps(dst + i, cvt_fp8_f32_16<kFmt>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    _mm512_storeu_ps(dst + i + 16,
                     cvt_fp8_f32_16<kFmt>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 16))));
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(dst + i, m, cvt_fp8_f32_16<kFmt>(_mm_maskz_loadu_epi8(m, src + i)));
  }
}

}  // namespace

void f32_to_f16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), cvt_f32_f16_16(_mm512_loadu_ps(src + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i + 16), cvt_f32_f16_16(_mm512_loadu_ps(src + i + 16)));
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    _mm256_mask_storeu_epi16(dst + i, m, cvt_f32_f16_16(_mm512_maskz_loadu_ps(m, src + i)));
  }
}

void f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    _mm512_storeu_ps(dst + i, cvt_f16_f32_16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
    _mm512_storeu_ps(dst + i + 16,
                     cvt_f16_f32_16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 16))));
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(dst + i, m, cvt_f16_f32_16(_mm256_maskz_loadu_epi16(m, src + i)));
  }
}

void f32_to_bf16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), cvt_f32_bf16_16(_mm512_loadu_si512(src + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i + 16), cvt_f32_bf16_16(_mm512_loadu_si512(src + i + 16)));
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    _mm256_mask_storeu_epi16(dst + i, m, cvt_f32_bf16_16(_mm512_maskz_loadu_epi32(m, src + i)));
  }
}

void bf16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512i h0 = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    const __m512i h1 = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 16)));
    _mm512_storeu_si512(dst + i, _mm512_slli_epi32(h0, 16));
    _mm512_storeu_si512(dst + i + 16, _mm512_slli_epi32(h1, 16));
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, src + i));
    _mm512_mask_storeu_epi32(dst + i, m, _mm512_slli_epi32(h, 16));
  }
}

void f32_to_fp8(const float* src, uint8_t* dst, int64_t n, Fp8Format fmt) {
  if (fmt == Fp8Format::kE4M3FN) {
    f32_to_fp8_impl<Fp8Format::kE4M3FN>(src, dst, n);
  } else {
    f32_to_fp8_impl<Fp8Format::kE5M2>(src, dst, n);
  }
}

void fp8_to_f32(const uint8_t* src, float* dst, int64_t n, Fp8Format fmt) {
  if (fmt == Fp8Format::kE4M3FN) {
    fp8_to_f32_impl<Fp8Format::kE4M3FN>(src, dst, n);
  } else {
    fp8_to_f32_impl<Fp8Format::kE5M2>(src, dst, n);
  }
}

}  // namespace avx512
}  // namespace qk
