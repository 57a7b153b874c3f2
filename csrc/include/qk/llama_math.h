// quantkit — the scalar rotary-embedding (RoPE) trigonometry of the Llama float path, written once.
//
// The reference rope (csrc/kernels/ref/llama_ref.cpp) and the SIMD variants (csrc/kernels/x86/llama_*.cpp) all
// obtain their cos/sin through these two functions, so every ISA rotates by exactly the same float32 values
// and rope is BIT-EXACT across ISAs. The expressions are llama2.c's (run.c, forward()):
//
//     int head_dim = i % head_size;                                   // = 2 * pair
//     float freq = 1.0f / powf(10000.0f, head_dim / (float)head_size);
//     float val = pos * freq;
//     float fcr = cosf(val), fci = sinf(val);
//
// with theta in place of the literal 10000.0f. Only the float32 operations and the libm calls of that code are
// used (no FMA: every kernel is compiled with -ffp-contract=off), so for theta = 10000 the results equal run.c's
// bit for bit on the same libm.
//
// The functions are `static inline` (internal linkage): each translation unit, compiled with its own ISA flags,
// gets its own copy, so nothing compiled with AVX-512 flags can be picked by the linker for another unit.
#ifndef QK_LLAMA_MATH_H_
#define QK_LLAMA_MATH_H_

#include <math.h>
#include <stdint.h>

// __host__ __device__ under nvcc: the CUDA Llama kernels (cuda/llama.cu) use the same expressions (with CUDA's
// powf / cosf / sinf / expf, which may differ from glibc's in the last bit: the device results are compared by
// tolerance).
#ifdef __CUDACC__
#define QK_LLAMA_HD __host__ __device__
#else
#define QK_LLAMA_HD
#endif

namespace qk {

// 1 / theta^(2 pair / head_dim), in float32 exactly as run.c computes it.
QK_LLAMA_HD static inline float qk_rope_inv_freq(int64_t pair, int64_t head_dim, float theta) {
  return 1.0f / powf(theta, static_cast<float>(2 * pair) / static_cast<float>(head_dim));
}

// cos and sin of the angle pos * inv_freq (float32 product, then cosf / sinf).
QK_LLAMA_HD static inline void qk_rope_cos_sin(int32_t pos, float inv_freq, float* c, float* s) {
  const float val = static_cast<float>(pos) * inv_freq;
  *c = cosf(val);
  *s = sinf(val);
}

// One rotated pair: (x0, x1) -> (x0 * c - x1 * s, x0 * s + x1 * c), separately rounded (no FMA).
QK_LLAMA_HD static inline void qk_rope_rotate(float* v0, float* v1, float c, float s) {
  const float a = *v0, b = *v1;
  *v0 = a * c - b * s;
  *v1 = a * s + b * c;
}

// SiLU(g) * up in run.c's order: v = g; v *= 1 / (1 + expf(-v)); v *= up.
QK_LLAMA_HD static inline float qk_silu_mul_one(float g, float up) {
  float v = g;
  v *= 1.0f / (1.0f + expf(-v));
  v *= up;
  return v;
}

}  // namespace qk

#endif  // QK_LLAMA_MATH_H_
