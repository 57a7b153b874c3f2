// quantkit — scalar reference for the float conversion kernels (the specification).
// One element at a time through the per-element conversions of qk/fp_convert.h, whose header comment
// documents the exact rounding, overflow and NaN rules (numpy for float16, ml_dtypes for bfloat16/fp8).
#include "qk/fp_convert.h"
#include "qk/kernels.h"

namespace qk {
namespace ref {

void f32_to_f16(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fp::f32_to_f16_one(src[i]);
}

void f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fp::f16_to_f32_one(src[i]);
}

void f32_to_bf16(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fp::f32_to_bf16_one(src[i]);
}

void bf16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fp::bf16_to_f32_one(src[i]);
}

void f32_to_fp8(const float* src, uint8_t* dst, int64_t n, Fp8Format fmt) {
  if (fmt == Fp8Format::kE4M3FN) {
    for (int64_t i = 0; i < n; ++i) dst[i] = fp::f32_to_e4m3fn_one(src[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = fp::f32_to_e5m2_one(src[i]);
  }
}

void fp8_to_f32(const uint8_t* src, float* dst, int64_t n, Fp8Format fmt) {
  if (fmt == Fp8Format::kE4M3FN) {
    for (int64_t i = 0; i < n; ++i) dst[i] = fp::e4m3fn_to_f32_one(src[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = fp::e5m2_to_f32_one(src[i]);
  }
}

}  // namespace ref
}  // namespace qk
