// quantkit — the int8-compute path of the low-bit weight-only Dense forwards (int4 grouped in the Keras layout,
// GPTQ 2/3/4/8 bits in the GPTQ runtime layout): activations are quantized dynamically per row to int8, the
// weight levels are used as unsigned int8, dot products are exact int32 per group, and the group scales are
// applied per group to float32 accumulators. It approximates dense_w4g / dense_gptq (kernels.h), which stay the
// exact weight-only path (and the path for small M); see docs/lowbit-a8.md.
//
// dense_lowbit_a8(M, N, K, x, w, bits, keras_signed, scale, zero, group, bias, y, pool)
//   Weights: K rows of gptq_runtime_row_bytes(N, bits) bytes, level u(k, j) = bits [bits*j, bits*j + bits) of row
//   k's little-endian bit stream (kernels.h; for bits = 4 this is also the Keras int4 Dense layout: low nibble for
//   even j). keras_signed (bits must be 4): the nibble is a signed int4 q and u = q + 8 (= nibble ^ 8); the zero
//   point array is int8 [G, N] and c = z + 8. Otherwise (GPTQ) u = the level, zero is uint8 [G, N] and c = z.
//   Either way W_hat[k, j] = (u - c) * scale[g, j] (= the dense_w4g / dense_gptq W_hat exactly), g = k / group,
//   G = ceil(K / group), group >= 1.
//   The specification (qk::ref::dense_lowbit_a8; every variant is BIT-EXACT with it):
//     per row i: amax = max_k |x[i,k]| (NaN -> NaN); sx = qk_absmax_scale(amax, 127, 1e-7);
//                xq[k] = qk_quantize_clip(x[i,k], sx, -127, 127)            (= absmax_quantize over [M, K, 1])
//     per group g: rs = sum_{k in g} xq[k]; acc[j] = sum_{k in g} xq[k] * u(k, j)   (exact int32)
//                  t = fmaf(-(float)c[g,j], (float)rs, (float)acc[j]); f[j] = fmaf(scale[g,j], t, f[j])
//                  (f starts at +0.0f; groups in ascending order; fmaf = one correctly rounded fused op)
//     v = f[j] / sx; out = bias ? v + bias[j] : v; a NaN out is stored as the canonical quiet NaN.
//   Exactness: acc and rs are exact integers (|acc| <= 255 * 127 * group < 2^31 for group <= 66000); c * rs is
//   exact inside the fused op; so the only roundings are (float)acc when |acc| > 2^24, the two fused ops per group,
//   and the final division and bias add, all identical across ISAs.
//   Returns QK_STATUS_OUT_OF_MEMORY if scratch cannot be allocated. bits in {2, 3, 4, 8}, validated by the caller.
#ifndef QK_LOWBIT_A8_H_
#define QK_LOWBIT_A8_H_

#include <cstdint>

#include "qk/status.h"

namespace qk {

class ThreadPool;

// The activation quantization of the path (Keras' AbsMaxQuantizer for int8 inputs: value range (-127, 127),
// epsilon = keras.backend.epsilon()).
constexpr float kLowbitA8ActHi = 127.0f;
constexpr float kLowbitA8ActLo = -127.0f;
constexpr float kLowbitA8ActEps = 1e-7f;

#define QK_DECLARE_LOWBIT_A8                                                                                  \
  Status dense_lowbit_a8(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* w, int bits,          \
                         bool keras_signed, const float* scale, const void* zero, int64_t group,             \
                         const float* bias, float* y, ThreadPool* pool);

namespace ref {
QK_DECLARE_LOWBIT_A8
}  // namespace ref
namespace avx2 {
using ref::dense_lowbit_a8;  // no AVX2 variant (no VNNI in the AVX2 build): the table points at the reference
}  // namespace avx2
namespace avx512 {
QK_DECLARE_LOWBIT_A8
// True when this CPU runs the fast (VNNI + VBMI packing) variant; otherwise avx512::dense_lowbit_a8 still works
// (it packs weights with scalar code) but is not worth choosing automatically.
bool lowbit_a8_fast();
}  // namespace avx512

}  // namespace qk

#endif  // QK_LOWBIT_A8_H_
