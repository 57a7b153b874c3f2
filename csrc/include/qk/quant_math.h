// quantkit — the per-element math of abs-max quantization and sub-byte packing, as small inline functions.
//
// This header is the single definition of "what one element becomes". The scalar reference kernels
// (csrc/kernels/ref/absmax_ref.cpp, pack_ref.cpp) are written in terms of these helpers, the SIMD kernels use
// them for their scalar tails and reproduce them lane-wise, and CUDA kernels can call them directly (every
// function is QK_HD = __host__ __device__ under nvcc). Keeping the math here is what makes ref, AVX2, AVX-512
// and CUDA bit-exact with each other.
//
// Semantics follow Keras (spec §2.2 abs_max_quantize, §2.4 pack_int4 / pack_int2):
//   amax  = max |x|                 NaN anywhere -> NaN (the canonical quiet NaN 0x7FC00000, see below)
//   scale = hi / (amax + eps)       float32, a multiplier (dequantize is q / scale)
//   q     = clip(rne(x * scale), lo, hi)   one float32 multiply (no FMA), a NaN product quantizes to 0
//
// Plain C++17 (no <cmath> std:: overloads, which are not device functions), nothing that allocates.
#ifndef QK_QUANT_MATH_H_
#define QK_QUANT_MATH_H_

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define QK_HD __host__ __device__
#else
#define QK_HD
#endif

namespace qk {

// ---------------------------------------------------------------------------------------------------------
// Floating-point helpers
// ---------------------------------------------------------------------------------------------------------

// Bit pattern of the one NaN every quantkit kernel returns: positive, quiet, zero payload. x86 produces
// 0xFFC00000 ("default NaN", sign set) for invalid operations and CUDA 0x7FFFFFFF, so kernels never return a
// NaN they computed; they substitute this one, which makes NaN outputs bit-identical across ISAs and devices.
constexpr uint32_t kQkCanonicalNanBits = 0x7FC00000u;

QK_HD inline float qk_bits_to_float(uint32_t bits) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(bits);
#else
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
#endif
}

QK_HD inline uint32_t qk_float_to_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  return bits;
#endif
}

QK_HD inline float qk_canonical_nan() { return qk_bits_to_float(kQkCanonicalNanBits); }

QK_HD inline bool qk_is_nan(float x) { return x != x; }  // valid: kernels are never built with -ffast-math

// Round half to even in the default rounding mode. Host: nearbyintf (rint without the inexact flag);
// device: rintf (one cvt.rni instruction). The SIMD kernels use cvtps2dq, which rounds by MXCSR, i.e. the same
// mode nearbyintf uses, so they agree with this function in any rounding mode.
QK_HD inline float qk_round_half_even(float x) {
#ifdef __CUDA_ARCH__
  return rintf(x);
#else
  return nearbyintf(x);
#endif
}

// ---------------------------------------------------------------------------------------------------------
// Abs-max quantization
// ---------------------------------------------------------------------------------------------------------

// One step of the abs-max reduction. Start from m = 0.0f (the value of an empty reduction). Returns
// max(m, |x|), where a NaN (in m or x) makes the result the canonical NaN and keeps it there. Because |x|
// never has its sign bit set the result never is -0.0.
//
// SIMD equivalent: for non-negative floats, and for NaNs with the sign cleared, the IEEE order coincides with
// the unsigned order of the bit patterns, and every NaN pattern (> 0x7F800000) sorts above +inf. So an integer
// max over (bits & 0x7FFFFFFF), mapped to the canonical NaN when it ends above 0x7F800000, is this function.
QK_HD inline float qk_absmax_step(float m, float x) {
  const float a = fabsf(x);
  if (qk_is_nan(m) || qk_is_nan(a)) return qk_canonical_nan();
  return a > m ? a : m;
}

// Keras' multiplier scale, hi / (amax + eps), in float32 (two correctly rounded IEEE operations, so every ISA
// computes the same bits). A NaN result (NaN amax, or 0/0 when eps = 0 and hi = 0 and amax = 0) is returned
// as the canonical NaN. amax = +inf gives +-0, so finite inputs then quantize to 0 and inf*0 = NaN -> 0.
QK_HD inline float qk_absmax_scale(float amax, float hi, float eps) {
  const float s = hi / (amax + eps);
  return qk_is_nan(s) ? qk_canonical_nan() : s;
}

// q = clip(rne(x * scale), lo, hi) as int8; a NaN product gives 0. lo and hi must be integers within
// [-128, 127] (then clipping before or after rounding is the same, which the SIMD kernels rely on: they
// clip first and convert with cvtps2dq).
QK_HD inline int8_t qk_quantize_clip(float x, float scale, float lo, float hi) {
  const float p = x * scale;  // a single float32 multiply; -ffp-contract=off keeps it from fusing
  if (qk_is_nan(p)) return 0;
  float r = qk_round_half_even(p);
  r = r < lo ? lo : r;
  r = r > hi ? hi : r;
  return static_cast<int8_t>(static_cast<int>(r));
}

// ---------------------------------------------------------------------------------------------------------
// Sub-byte packing (values arrive as raw bytes: an int8 and a uint8 source pack identically because only the
// low 4 or 2 bits are kept)
// ---------------------------------------------------------------------------------------------------------

// int4: element 2k -> low nibble, element 2k+1 -> high nibble. A missing odd element is passed as 0.
QK_HD inline uint8_t qk_pack_nibbles(uint8_t lo, uint8_t hi) {
  return static_cast<uint8_t>((lo & 0x0F) | ((hi & 0x0F) << 4));
}

// Sign-extend a 4-bit value (0..15) into an int8 byte: (v ^ 8) - 8, so 8..15 -> -8..-1.
QK_HD inline uint8_t qk_sign_extend4(uint8_t v) { return static_cast<uint8_t>(((v & 0x0F) ^ 8) - 8); }

// Nibble `which` (0 = low, 1 = high) of a packed byte, sign-extended when is_signed, else zero-extended.
QK_HD inline uint8_t qk_unpack_nibble(uint8_t byte, int which, bool is_signed) {
  const uint8_t v = static_cast<uint8_t>((byte >> (4 * which)) & 0x0F);
  return is_signed ? qk_sign_extend4(v) : v;
}

// int2: element 4k+j -> bits [2j, 2j+1]. Missing trailing elements are passed as 0.
QK_HD inline uint8_t qk_pack_crumbs(uint8_t e0, uint8_t e1, uint8_t e2, uint8_t e3) {
  return static_cast<uint8_t>((e0 & 3) | ((e1 & 3) << 2) | ((e2 & 3) << 4) | ((e3 & 3) << 6));
}

// Sign-extend a 2-bit value (0..3) into an int8 byte: (v ^ 2) - 2, so 2, 3 -> -2, -1.
QK_HD inline uint8_t qk_sign_extend2(uint8_t v) { return static_cast<uint8_t>(((v & 3) ^ 2) - 2); }

// Crumb j (0..3) of a packed byte, sign-extended when is_signed, else zero-extended.
QK_HD inline uint8_t qk_unpack_crumb(uint8_t byte, int j, bool is_signed) {
  const uint8_t v = static_cast<uint8_t>((byte >> (2 * j)) & 3);
  return is_signed ? qk_sign_extend2(v) : v;
}

}  // namespace qk

#endif  // QK_QUANT_MATH_H_
