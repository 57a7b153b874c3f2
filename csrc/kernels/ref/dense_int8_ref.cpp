// quantkit — scalar reference for the W8A8 / W4A8 quantized Dense forward (the specification of
// qk::*::dense_w8a8 and qk::*::dense_w4a8; see the comment above QK_DECLARE_DENSE_KERNELS in qk/kernels.h).
//
// For every row i of x[M, K] (row-major, contiguous):
//   amax_i = max_k |x[i, k]|                       (qk_absmax_step: NaN anywhere -> NaN)
//   sx_i   = act_hi / (amax_i + act_eps)           (qk_absmax_scale, float32)
//   qx     = clip(rne(x * sx_i), act_lo, act_hi)   (qk_quantize_clip: NaN product -> 0)
// which is exactly what qk::ref::absmax_quantize computes for the axis view [M, K, 1]. Then, per column j,
//   acc = sum_k qx[i, k] * w(k, j)                 exact, in int32 (modulo 2^32, as ref/igemm_ref.cpp)
//   d = w_scale[j] * sx_i;  v = (float)acc / d;  y = v + bias[j]   (float32, in this order; no bias: y = v)
// and a NaN result is stored as the canonical quiet NaN (qk_canonical_nan), because the payload of a NaN
// produced by float arithmetic depends on operand order, which the compiler may swap for a commutative
// multiply; canonicalising makes NaN outputs bit-identical across ISAs, like every other quantkit kernel.
// Weights: dense_w8a8 reads int8 w[K, N]; dense_w4a8 reads Keras int4 storage w4[K, (N+1)/2], element
// (k, j) = sign-extended nibble j % 2 (0 = low) of byte k * ((N+1)/2) + j / 2.
// One loop nest, no threads, no SIMD, no allocation (the quantized activation is recomputed per column,
// which is slow but obviously the same value every time). The pool argument is ignored.
#include <cstdint>

#include "qk/kernels.h"
#include "qk/quant_math.h"

namespace qk {
namespace ref {
namespace {

// The whole forward with the weight element given by wq(k, j) (an int8 value).
template <class WeightAt>
void dense_a8(int64_t M, int64_t N, int64_t K, const float* x, const WeightAt& wq, const float* w_scale,
              const float* bias, float act_lo, float act_hi, float act_eps, float* y) {
  for (int64_t i = 0; i < M; ++i) {
    const float* xr = x + i * K;
    float amax = 0.0f;
    for (int64_t k = 0; k < K; ++k) amax = qk_absmax_step(amax, xr[k]);
    const float sx = qk_absmax_scale(amax, act_hi, act_eps);
    for (int64_t j = 0; j < N; ++j) {
      uint32_t acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        const int32_t q = qk_quantize_clip(xr[k], sx, act_lo, act_hi);
        acc += static_cast<uint32_t>(q * int32_t{wq(k, j)});
      }
      const float d = w_scale[j] * sx;
      const float v = static_cast<float>(static_cast<int32_t>(acc)) / d;
      const float out = bias != nullptr ? v + bias[j] : v;
      y[i * N + j] = qk_is_nan(out) ? qk_canonical_nan() : out;
    }
  }
}

}  // namespace

Status dense_w8a8(int64_t M, int64_t N, int64_t K, const float* x, const int8_t* w, const float* w_scale,
                  const float* bias, float act_lo, float act_hi, float act_eps, float* y, ThreadPool* /*pool*/) {
  const auto wq = [&](int64_t k, int64_t j) -> int8_t { return w[k * N + j]; };
  dense_a8(M, N, K, x, wq, w_scale, bias, act_lo, act_hi, act_eps, y);
  return kOk;
}

Status dense_w4a8(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* w4, const float* w_scale,
                  const float* bias, float act_lo, float act_hi, float act_eps, float* y, ThreadPool* /*pool*/) {
  const int64_t ldw = (N + 1) / 2;
  const auto wq = [&](int64_t k, int64_t j) -> int8_t {
    return static_cast<int8_t>(qk_unpack_nibble(w4[k * ldw + j / 2], static_cast<int>(j % 2), /*is_signed=*/true));
  };
  dense_a8(M, N, K, x, wq, w_scale, bias, act_lo, act_hi, act_eps, y);
  return kOk;
}

}  // namespace ref
}  // namespace qk
