// quantkit — scalar float-format conversions on bit patterns, shared by the CPU kernels (ref and the SIMD
// tails) and the CUDA kernels. Everything is integer arithmetic on the IEEE bit patterns, so the results do
// not depend on the floating-point environment (rounding mode, FTZ/DAZ) or on the compiler.
//
// Formats (S = sign, E = exponent field, M = mantissa field):
//   float16   S.EEEEE.MMMMMMMMMM      bias 15, inf 0x7C00, NaN E=31 M!=0, max finite 65504 (0x7BFF)
//   bfloat16  S.EEEEEEEE.MMMMMMM      the upper half of a float32
//   e4m3fn    S.EEEE.MMM              bias 7, NO infinities, NaN only S.1111.111 (0x7F/0xFF),
//                                     max finite 448 (0x7E = 1.75 * 2^8), subnormals (E=0) = M * 2^-9
//   e5m2      S.EEEEE.MM              bias 15, inf 0x7C, NaN E=31 M!=0, max finite 57344 (0x7B),
//                                     subnormals = M * 2^-16 (it is the top byte of a float16)
//
// Encoding float32 -> narrow format (all round-half-to-even on the exact value, subnormals produced, never
// flushed). The rules reproduce numpy (float16) and ml_dtypes (bfloat16 = Eigen::bfloat16, float8_*) bit
// for bit; the "why" of each rule is the corresponding library's code path:
//   f16    numpy npy_floatbits_to_halfbits (the astype path of numpy 2.x on x86-64):
//          |x| >= 65520 (0x477FF000, the midpoint between 65504 and 2^16; the tie goes to the even code,
//          which is 0x7C00) -> +-inf.  NaN -> S | 0x7C00 | (top 10 payload bits), and 0x7C01 if those are 0.
//          NB: numpy does NOT set the quiet bit: 0x7F800001 -> 0x7C01, 0x7FC00000 -> 0x7E00.
//   bf16   Eigen float_to_bfloat16_rtne<false>: RNE on the low 16 bits (overflow carries into +-inf,
//          denormals kept).  Any NaN -> 0x7FC0 | S (payload dropped).
//   e4m3fn ml_dtypes ConvertImpl<float, float8_e4m3fn>: round first (as if the exponent range were
//          unbounded), then any rounded magnitude above 448 becomes NaN.  448 = 1.110b * 2^8, the next
//          grid point would be 480 = 1.111b * 2^8, the midpoint 464 ties to the even mantissa 110b:
//            |x| <= 464 (0x43E80000)  -> finite (432 <= |x| <= 464 gives 448; 432 ties up to the even 110b)
//            |x| >  464               -> NaN 0x7F | S          (the first such float32 is 0x43E80001)
//          +-inf -> 0x7F | S, NaN -> 0x7F | S (the sign of the input is kept in both cases).
//   e5m2   ml_dtypes ConvertImpl<float, float8_e5m2> (direct from float32, no double rounding through f16):
//          max finite 57344 = 1.11b * 2^15, next grid point 2^16 with even mantissa, midpoint 61440:
//            |x| <  61440 (0x47700000) -> finite, |x| >= 61440 -> inf 0x7C | S.
//          NaN -> 0x7E | S (payload dropped), +-inf -> 0x7C | S.
//   Smallest values: a magnitude at or below half the smallest subnormal rounds to +-0 (the exact midpoint
//   ties to the even code 0), above it to the smallest subnormal; f32 subnormal inputs are handled exactly.
//
// Decoding narrow -> float32 is exact for every finite value and infinity. NaNs:
//   f16    S | 0x7F800000 | M << 13 (numpy: payload kept bit for bit, signalling NaNs stay signalling)
//   bf16   the 16 bits shifted up (payload kept)
//   e4m3fn 0x7F/0xFF -> 0x7FC00000 | S;  e5m2 NaN codes -> 0x7FC00000 | S (ml_dtypes gives the float
//          quiet_NaN with the sign)
#ifndef QK_FP_CONVERT_H_
#define QK_FP_CONVERT_H_

#include <cstdint>
#if !defined(__CUDA_ARCH__)
#include <cstring>
#endif

// Marks functions usable from both host and CUDA device code (qk/quant_math.h defines the same guard).
#ifndef QK_HD
#ifdef __CUDACC__
#define QK_HD __host__ __device__
#else
#define QK_HD
#endif
#endif

namespace qk {
namespace fp {

// Bit casts that work in host C++17 and in CUDA device code.
QK_HD inline uint32_t f32_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

QK_HD inline float bits_to_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// Rounds a finite non-negative float32, given as its bit pattern `a` (sign bit clear), to a binary format
// with kMant stored mantissa bits and exponent bias kBias: round-half-to-even on the exact value, with
// gradual underflow (subnormals) and an UNBOUNDED exponent range at the top. Returns the magnitude code
// (biased exponent << kMant | mantissa). The code may exceed the format's largest finite code; each caller
// applies its own overflow rule. A rounding carry out of the mantissa correctly bumps the exponent
// (including subnormal -> smallest normal), because exponent and mantissa are adjacent bit fields.
template <int kMant, int kBias>
QK_HD inline uint32_t round_magnitude(uint32_t a) {
  const int e = static_cast<int>(a >> 23);  // biased float32 exponent, 0..254 for finite inputs
  constexpr int kDrop = 23 - kMant;         // mantissa bits dropped for normal results
  if (e >= 128 - kBias) {
    // Normal in the target (target biased exponent e - 127 + kBias >= 1). Standard RNE bias trick:
    // add 0111..1 (kDrop-1 ones) plus the lowest kept bit, then truncate.
    const uint32_t lsb = (a >> kDrop) & 1u;
    const uint32_t r = (a + ((1u << (kDrop - 1)) - 1u) + lsb) >> kDrop;
    return r - (static_cast<uint32_t>(127 - kBias) << kMant);  // re-bias the exponent field
  }
  // Subnormal (or zero) in the target. value = sig * 2^(eff - 150) with the implicit bit made explicit
  // (float32 subnormals have e = 0 and the same scale as e = 1). The target's subnormal unit is
  // 2^(1 - kBias - kMant), so the code is sig / 2^shift rounded to nearest even.
  const uint32_t sig = (e != 0) ? ((a & 0x7FFFFFu) | 0x800000u) : (a & 0x7FFFFFu);
  const int eff = (e != 0) ? e : 1;
  const int shift = 151 - kBias - kMant - eff;  // >= 24 - kMant >= 1 on this path
  if (shift > 24) return 0u;                    // sig < 2^24, so sig / 2^shift < 1/2
  const uint32_t lsb = (sig >> shift) & 1u;
  return (sig + ((1u << (shift - 1)) - 1u) + lsb) >> shift;
}

// ---- float16 ----------------------------------------------------------------------------------------
QK_HD inline uint16_t f32_to_f16_one(float f) {
  const uint32_t x = f32_to_bits(f);
  const uint32_t s = (x >> 16) & 0x8000u;
  const uint32_t a = x & 0x7FFFFFFFu;
  if (a > 0x7F800000u) {  // NaN: keep the top 10 payload bits; must not become inf
    const uint32_t p = (a >> 13) & 0x3FFu;
    return static_cast<uint16_t>(s | 0x7C00u | (p != 0u ? p : 1u));
  }
  if (a == 0x7F800000u) return static_cast<uint16_t>(s | 0x7C00u);
  uint32_t c = round_magnitude<10, 15>(a);
  if (c > 0x7BFFu) c = 0x7C00u;  // rounded past 65504 -> inf
  return static_cast<uint16_t>(s | c);
}

QK_HD inline float f16_to_f32_one(uint16_t h) {
  const uint32_t s = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1Fu;
  const uint32_t m = h & 0x3FFu;
  uint32_t bits;
  if (e == 31u) {
    bits = s | 0x7F800000u | (m << 13);  // inf, or NaN with its payload
  } else if (e == 0u) {
    // Subnormal m * 2^-24: the integer m converts to float exactly; subtracting 24 from its exponent field
    // divides by 2^24 (the result, >= 2^-24, is a normal float32). Zero must be special-cased.
    bits = (m == 0u) ? s : (s | (f32_to_bits(static_cast<float>(m)) - (24u << 23)));
  } else {
    bits = s | ((e + 112u) << 23) | (m << 13);  // re-bias 15 -> 127
  }
  return bits_to_f32(bits);
}

// ---- bfloat16 ---------------------------------------------------------------------------------------
QK_HD inline uint16_t f32_to_bf16_one(float f) {
  const uint32_t x = f32_to_bits(f);
  const uint32_t s = (x >> 16) & 0x8000u;
  const uint32_t a = x & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint16_t>(s | 0x7FC0u);
  // Same exponent range as float32: round_magnitude<7,127> is plain RNE on the low 16 bits; the largest
  // finite values carry into the inf code 0x7F80, and inf itself is unchanged.
  return static_cast<uint16_t>(s | round_magnitude<7, 127>(a));
}

QK_HD inline float bf16_to_f32_one(uint16_t h) { return bits_to_f32(static_cast<uint32_t>(h) << 16); }

// ---- float8 e4m3fn ----------------------------------------------------------------------------------
QK_HD inline uint8_t f32_to_e4m3fn_one(float f) {
  const uint32_t x = f32_to_bits(f);
  const uint32_t s = (x >> 24) & 0x80u;
  const uint32_t a = x & 0x7FFFFFFFu;
  if (a >= 0x7F800000u) return static_cast<uint8_t>(s | 0x7Fu);  // inf and NaN -> NaN (sign kept)
  uint32_t c = round_magnitude<3, 7>(a);
  if (c > 0x7Eu) c = 0x7Fu;  // rounded magnitude above 448 -> NaN
  return static_cast<uint8_t>(s | c);
}

QK_HD inline float e4m3fn_to_f32_one(uint8_t b) {
  const uint32_t s = static_cast<uint32_t>(b & 0x80u) << 24;
  const uint32_t c = b & 0x7Fu;
  const uint32_t e = c >> 3;
  const uint32_t m = c & 7u;
  uint32_t bits;
  if (c == 0x7Fu) {
    bits = s | 0x7FC00000u;
  } else if (e == 0u) {
    bits = (m == 0u) ? s : (s | (f32_to_bits(static_cast<float>(m)) - (9u << 23)));  // m * 2^-9
  } else {
    bits = s | ((e + 120u) << 23) | (m << 20);  // re-bias 7 -> 127
  }
  return bits_to_f32(bits);
}

// ---- float8 e5m2 ------------------------------------------------------------------------------------
QK_HD inline uint8_t f32_to_e5m2_one(float f) {
  const uint32_t x = f32_to_bits(f);
  const uint32_t s = (x >> 24) & 0x80u;
  const uint32_t a = x & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint8_t>(s | 0x7Eu);
  if (a == 0x7F800000u) return static_cast<uint8_t>(s | 0x7Cu);
  uint32_t c = round_magnitude<2, 15>(a);
  if (c > 0x7Bu) c = 0x7Cu;  // rounded past 57344 -> inf
  return static_cast<uint8_t>(s | c);
}

QK_HD inline float e5m2_to_f32_one(uint8_t b) {
  const uint32_t s = static_cast<uint32_t>(b & 0x80u) << 24;
  const uint32_t e = (b >> 2) & 0x1Fu;
  const uint32_t m = b & 3u;
  uint32_t bits;
  if (e == 31u) {
    bits = s | (m == 0u ? 0x7F800000u : 0x7FC00000u);
  } else if (e == 0u) {
    bits = (m == 0u) ? s : (s | (f32_to_bits(static_cast<float>(m)) - (16u << 23)));  // m * 2^-16
  } else {
    bits = s | ((e + 112u) << 23) | (m << 21);  // re-bias 15 -> 127
  }
  return bits_to_f32(bits);
}

}  // namespace fp
}  // namespace qk

#endif  // QK_FP_CONVERT_H_
