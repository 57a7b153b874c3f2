// quantkit — AVX2/F16C float conversion kernels. Bit-exact with qk::ref (rules: qk/fp_convert.h).
//
// * f16: F16C vcvtps2ph with an explicit round-to-nearest-even immediate is exact (subnormals and overflow
//   to inf included, in the default MXCSR). Only NaNs differ from numpy (the hardware sets the quiet bit),
//   so NaN lanes are patched with numpy's rule. vcvtph2ps is exact; NaN/inf lanes (E = 31) are rebuilt
//   with integer ops so that signalling-NaN payloads survive bit for bit as in numpy.
// * bf16: integer RNE on the low 16 bits (vcvtneps2bf16 flushes denormals and keeps NaN payloads, which
//   ml_dtypes does not), NaN lanes -> 0x7FC0 | sign.
// * fp8 encode: 32-bit integer lanes. Normal results: the RNE bias trick on the float32 bits, then
//   re-bias. Subnormal results (|x| below the format's smallest normal): adding the magic constant
//   C = 2^(24 - bias - mant) to |x| in float makes the FPU round |x| to a multiple of the subnormal unit
//   (ulp(C) = unit, RNE); the code is bits(|x| + C) - bits(C). Overflow/NaN by comparing |x|'s bits with
//   the thresholds derived in fp_convert.h (e4m3fn: > 0x43E80000 -> NaN; e5m2: >= 0x47700000 -> inf).
// * fp8 decode: an fp8 code placed in a float16's bit positions is exact in float16 (e5m2 is literally the
//   top byte of a float16; e4m3fn shifted left by 7 is its value times 2^-8, subnormals included), so
//   vcvtph2ps (times 256 for e4m3fn, exact) does the work; NaN codes are patched to 0x7FC00000 | sign.
// Tails (< one vector block) use the scalar conversions of qk/fp_convert.h, i.e. the reference itself.
#include <immintrin.h>

#include "qk/fp_convert.h"
#include "qk/kernels.h"

namespace qk {
namespace avx2 {
namespace {

constexpr int kRne = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

inline __m256i set1(uint32_t v) { return _mm256_set1_epi32(static_cast<int>(v)); }

// 8 float32 -> 8 float16 codes (in a 128-bit register).
inline __m128i cvt_f32_f16_8(__m256 v) {
  __m128i h = _mm256_cvtps_ph(v, kRne);
  const __m256i x = _mm256_castps_si256(v);
  const __m256i a = _mm256_and_si256(x, set1(0x7FFFFFFFu));
  const __m256i nan = _mm256_cmpgt_epi32(a, set1(0x7F800000u));  // a is non-negative as int32
  if (!_mm256_testz_si256(nan, nan)) {
    // numpy: S | 0x7C00 | max(top 10 payload bits, 1)
    __m256i p = _mm256_and_si256(_mm256_srli_epi32(a, 13), set1(0x3FFu));
    p = _mm256_max_epu32(p, set1(1u));
    const __m256i fix = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(x, 16), set1(0x8000u)),
                                        _mm256_or_si256(p, set1(0x7C00u)));
    const __m256i r32 = _mm256_blendv_epi8(_mm256_cvtepu16_epi32(h), fix, nan);
    const __m256i packed = _mm256_packus_epi32(r32, r32);  // 16-bit lanes 0-3 | 0-3 || 4-7 | 4-7
    h = _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08));  // qwords 0, 2
  }
  return h;
}

// 8 float16 codes -> 8 float32.
inline __m256 cvt_f16_f32_8(__m128i h) {
  __m256 f = _mm256_cvtph_ps(h);
  const __m256i h32 = _mm256_cvtepu16_epi32(h);
  const __m256i special = _mm256_cmpeq_epi32(_mm256_and_si256(h32, set1(0x7C00u)), set1(0x7C00u));
  if (!_mm256_testz_si256(special, special)) {
    const __m256i fix = _mm256_or_si256(
        _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(h32, set1(0x8000u)), 16), set1(0x7F800000u)),
        _mm256_slli_epi32(_mm256_and_si256(h32, set1(0x3FFu)), 13));
    f = _mm256_castsi256_ps(_mm256_blendv_epi8(_mm256_castps_si256(f), fix, special));
  }
  return f;
}

// 8 float32 -> 8 bfloat16 codes in 32-bit lanes.
inline __m256i cvt_f32_bf16_8(__m256i x) {
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), set1(1u));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(x, set1(0x7FFFu)), lsb), 16);
  const __m256i a = _mm256_and_si256(x, set1(0x7FFFFFFFu));
  const __m256i nan = _mm256_cmpgt_epi32(a, set1(0x7F800000u));
  const __m256i qnan = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(x, 16), set1(0x8000u)), set1(0x7FC0u));
  return _mm256_blendv_epi8(r, qnan, nan);
}

// Magnitude codes (sign not included) of 8 float32 for an fp8 format; see the file comment.
template <int kMant, int kBias>
inline __m256i fp8_magnitude_8(__m256i a) {
  constexpr int kDrop = 23 - kMant;
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(a, kDrop), set1(1u));
  const __m256i rounded = _mm256_add_epi32(_mm256_add_epi32(a, set1((1u << (kDrop - 1)) - 1u)), lsb);
  const __m256i normal = _mm256_sub_epi32(_mm256_srli_epi32(rounded, kDrop),
                                          set1(static_cast<uint32_t>(127 - kBias) << kMant));
  constexpr uint32_t kMagicBits = static_cast<uint32_t>(127 + 24 - kBias - kMant) << 23;  // 2^(24-bias-mant)
  const __m256 sum = _mm256_add_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(set1(kMagicBits)));
  const __m256i sub = _mm256_sub_epi32(_mm256_castps_si256(sum), set1(kMagicBits));
  constexpr uint32_t kMinNormalBits = static_cast<uint32_t>(128 - kBias) << 23;
  const __m256i is_sub = _mm256_cmpgt_epi32(set1(kMinNormalBits), a);
  return _mm256_blendv_epi8(normal, sub, is_sub);
}

template <Fp8Format kFmt>
inline __m256i cvt_f32_fp8_8(__m256 v) {
  const __m256i x = _mm256_castps_si256(v);
  const __m256i a = _mm256_and_si256(x, set1(0x7FFFFFFFu));
  const __m256i s = _mm256_and_si256(_mm256_srli_epi32(x, 24), set1(0x80u));
  __m256i c;
  if (kFmt == Fp8Format::kE4M3FN) {
    c = fp8_magnitude_8<3, 7>(a);
    c = _mm256_blendv_epi8(c, set1(0x7Fu), _mm256_cmpgt_epi32(a, set1(0x43E80000u)));  // > 464, inf, NaN
  } else {
    c = fp8_magnitude_8<2, 15>(a);
    c = _mm256_blendv_epi8(c, set1(0x7Cu), _mm256_cmpgt_epi32(a, set1(0x476FFFFFu)));  // >= 61440, inf
    c = _mm256_blendv_epi8(c, set1(0x7Eu), _mm256_cmpgt_epi32(a, set1(0x7F800000u)));  // NaN
  }
  return _mm256_or_si256(c, s);
}

// 8 fp8 codes (low 8 bytes of b) -> 8 float32.
template <Fp8Format kFmt>
inline __m256 cvt_fp8_f32_8(__m128i b) {
  const __m128i b16 = _mm_cvtepu8_epi16(b);
  __m256 f;
  __m128i nan;
  const __m128i mag = _mm_and_si128(b16, _mm_set1_epi16(0x7F));
  if (kFmt == Fp8Format::kE4M3FN) {
    const __m128i h = _mm_or_si128(_mm_and_si128(_mm_slli_epi16(b16, 8), _mm_set1_epi16(static_cast<short>(0x8000))),
                                   _mm_slli_epi16(mag, 7));
    f = _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_set1_ps(256.0f));
    nan = _mm_cmpeq_epi16(mag, _mm_set1_epi16(0x7F));
  } else {
    f = _mm256_cvtph_ps(_mm_slli_epi16(b16, 8));
    nan = _mm_cmpgt_epi16(mag, _mm_set1_epi16(0x7C));
  }
  if (!_mm_testz_si128(nan, nan)) {
    const __m256i nan32 = _mm256_cvtepi16_epi32(nan);
    const __m256i q = _mm256_or_si256(_mm256_and_si256(_mm256_castps_si256(f), set1(0x80000000u)), set1(0x7FC00000u));
    f = _mm256_castsi256_ps(_mm256_blendv_epi8(_mm256_castps_si256(f), q, nan32));
  }
  return f;
}

template <Fp8Format kFmt>
void f32_to_fp8_impl(const float* src, uint8_t* dst, int64_t n) {
  int64_t i = 0;
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (; i + 32 <= n; i += 32) {
    const __m256i c0 = cvt_f32_fp8_8<kFmt>(_mm256_loadu_ps(src + i));
    const __m256i c1 = cvt_f32_fp8_8<kFmt>(_mm256_loadu_ps(src + i + 8));
    const __m256i c2 = cvt_f32_fp8_8<kFmt>(_mm256_loadu_ps(src + i + 16));
    const __m256i c3 = cvt_f32_fp8_8<kFmt>(_mm256_loadu_ps(src + i + 24));
    // Codes are 0..255, so the saturating packs are plain narrowing; the packs work per 128-bit lane,
    // leaving dword k = 4 codes from vector (k & 3), half (k >> 2): reorder dwords to 0,4,1,5,2,6,3,7.
    const __m256i p = _mm256_packus_epi16(_mm256_packus_epi32(c0, c1), _mm256_packus_epi32(c2, c3));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_permutevar8x32_epi32(p, order));
  }
  for (; i < n; ++i) {
    dst[i] = kFmt == Fp8Format::kE4M3FN ? fp::f32_to_e4m3fn_one(src[i]) : fp::f32_to_e5m2_one(src[i]);
  }
}

template <Fp8Format kFmt>
void fp8_to_f32_impl(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, cvt_fp8_f32_8<kFmt>(b));
    _mm256_storeu_ps(dst + i + 8, cvt_fp8_f32_8<kFmt>(_mm_srli_si128(b, 8)));
  }
  for (; i < n; ++i) {
    dst[i] = kFmt == Fp8Format::kE4M3FN ? fp::e4m3fn_to_f32_one(src[i]) : fp::e5m2_to_f32_one(src[i]);
  }
}

}  // namespace

void f32_to_f16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), cvt_f32_f16_8(_mm256_loadu_ps(src + i)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i + 8), cvt_f32_f16_8(_mm256_loadu_ps(src + i + 8)));
  }
  for (; i < n; ++i) dst[i] = fp::f32_to_f16_one(src[i]);
}

void f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_ps(dst + i, cvt_f16_f32_8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    _mm256_storeu_ps(dst + i + 8, cvt_f16_f32_8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 8))));
  }
  for (; i < n; ++i) dst[i] = fp::f16_to_f32_one(src[i]);
}

void f32_to_bf16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i r0 = cvt_f32_bf16_8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    const __m256i r1 = cvt_f32_bf16_8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 8)));
    // Values fit in 16 bits unsigned, so packus is a plain narrowing; fix the per-lane interleave.
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r0, r1), 0xD8);  // qwords 0, 2, 1, 3
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), p);
  }
  for (; i < n; ++i) dst[i] = fp::f32_to_bf16_one(src[i]);
}

void bf16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    // Interleaving a zero word below each code is the 16-bit left shift; unpack works per 128-bit lane, so
    // the low halves give elements 0-3 | 8-11 and the high halves 4-7 | 12-15: recombine the lanes.
    const __m256i lo = _mm256_unpacklo_epi16(_mm256_setzero_si256(), h);
    const __m256i hi = _mm256_unpackhi_epi16(_mm256_setzero_si256(), h);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_permute2x128_si256(lo, hi, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
  }
  for (; i < n; ++i) dst[i] = fp::bf16_to_f32_one(src[i]);
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

}  // namespace avx2
}  // namespace qk
