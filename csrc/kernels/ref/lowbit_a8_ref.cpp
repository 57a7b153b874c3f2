// quantkit — scalar reference (the specification) of dense_lowbit_a8, the int8-compute path of the low-bit
// weight-only Dense forwards; see qk/lowbit_a8.h. One loop nest per row, no threads, no SIMD.
#include <cmath>
#include <vector>

#include "qk/kernels.h"
#include "qk/lowbit_a8.h"
#include "qk/quant_math.h"

namespace qk {
namespace ref {

Status dense_lowbit_a8(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* w, int bits,
                       bool keras_signed, const float* scale, const void* zero, int64_t group, const float* bias,
                       float* y, ThreadPool* /*pool*/) {
  const int64_t rb = gptq_runtime_row_bytes(N, bits);
  const int64_t G = K == 0 ? 0 : (K + group - 1) / group;
  const int mask = (1 << bits) - 1;
  std::vector<int8_t> xq;
  try {
    xq.resize(static_cast<size_t>(K));
  } catch (...) {
    return QK_STATUS_OUT_OF_MEMORY;
  }
  // Level u(k, j): bits [bits*j, bits*j + bits) of row k (a 3-bit level may straddle two bytes of the row).
  const auto level = [&](int64_t k, int64_t j) -> int {
    const uint8_t* row = w + k * rb;
    const int64_t bit = bits * j;
    const int sh = static_cast<int>(bit % 8);
    int v = row[bit / 8] >> sh;
    if (sh + bits > 8) v |= row[bit / 8 + 1] << (8 - sh);
    v &= mask;
    return keras_signed ? v ^ 8 : v;
  };
  const auto zero_c = [&](int64_t idx) -> int {
    return keras_signed ? static_cast<const int8_t*>(zero)[idx] + 8 : static_cast<const uint8_t*>(zero)[idx];
  };
  for (int64_t i = 0; i < M; ++i) {
    const float* xr = x + i * K;
    float amax = 0.0f;
    for (int64_t k = 0; k < K; ++k) amax = qk_absmax_step(amax, xr[k]);
    const float sx = qk_absmax_scale(amax, kLowbitA8ActHi, kLowbitA8ActEps);
    for (int64_t k = 0; k < K; ++k) xq[k] = qk_quantize_clip(xr[k], sx, kLowbitA8ActLo, kLowbitA8ActHi);
    for (int64_t j = 0; j < N; ++j) {
      float f = 0.0f;
      for (int64_t g = 0; g < G; ++g) {
        const int64_t k1 = (g + 1) * group < K ? (g + 1) * group : K;
        int32_t rs = 0, acc = 0;
        for (int64_t k = g * group; k < k1; ++k) {
          rs += xq[k];
          acc += xq[k] * level(k, j);
        }
        const float t = std::fmaf(-static_cast<float>(zero_c(g * N + j)), static_cast<float>(rs),
                                  static_cast<float>(acc));
        f = std::fmaf(scale[g * N + j], t, f);
      }
      const float v = f / sx;
      const float out = bias != nullptr ? v + bias[j] : v;
      y[i * N + j] = qk_is_nan(out) ? qk_canonical_nan() : out;
    }
  }
  return kOk;
}

}  // namespace ref
}  // namespace qk
