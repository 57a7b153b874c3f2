// quantkit — scalar reference for abs-max reduction and Keras abs_max_quantize (the specification the SIMD
// and CUDA variants are compared against bit for bit). One loop nest, no threads, no SIMD.
//
// Layout: the tensor is seen as [outer, len, inner] and reduced along len; element (o, l, i) is at
// x[(o * len + l) * inner + i], and the per-slice results (amax or scale) are at [o * inner + i].
// The element math lives in qk/quant_math.h.
#include "qk/kernels.h"
#include "qk/quant_math.h"

namespace qk {
namespace ref {

// out[o*inner+i] = max_l |x(o,l,i)|; an empty slice (len == 0) gives 0, a NaN gives the canonical NaN.
void absmax(const float* x, int64_t outer, int64_t len, int64_t inner, float* out) {
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      float m = 0.0f;
      for (int64_t l = 0; l < len; ++l) m = qk_absmax_step(m, x[(o * len + l) * inner + i]);
      out[o * inner + i] = m;
    }
  }
}

// For each slice: amax as above, scale = hi / (amax + eps), q = clip(rne(x * scale), lo, hi), NaN -> 0.
void absmax_quantize(const float* x, int64_t outer, int64_t len, int64_t inner, float lo, float hi, float eps,
                     int8_t* q, float* scale) {
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      float m = 0.0f;
      for (int64_t l = 0; l < len; ++l) m = qk_absmax_step(m, x[(o * len + l) * inner + i]);
      const float s = qk_absmax_scale(m, hi, eps);
      scale[o * inner + i] = s;
      for (int64_t l = 0; l < len; ++l) {
        const int64_t at = (o * len + l) * inner + i;
        q[at] = qk_quantize_clip(x[at], s, lo, hi);
      }
    }
  }
}

}  // namespace ref
}  // namespace qk
