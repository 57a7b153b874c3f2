// quantkit — scalar reference of the Llama float-path kernels (the specification; kernels.h documents the
// contracts): rmsnorm, rope, softmax_rows, silu_mul, attention_decode, kv_cache_write. One loop nest per op,
// no threads, no SIMD. The arithmetic is llama2.c's (run.c), operation by operation, in float32:
//
//   rmsnorm     ss = 0; for j: ss += x[j] * x[j]   (sequential float32 sum, j ascending)
//               ss /= n; ss += eps; ss = 1.0f / sqrtf(ss); y[j] = weight[j] * (ss * x[j])
//   rope        for each head and pair i: (c, s) from qk/llama_math.h;
//               x[2i] = x0 * c - x1 * s;  x[2i+1] = x0 * s + x1 * c
//   softmax     m = max (sequential, first element first); x[i] = expf(x[i] - m); sum += x[i] (sequential);
//               x[i] /= sum
//   silu_mul    v = g; v *= 1.0f / (1.0f + expf(-v)); v *= up; out = v
//   attention   score[j] = (sum_d q[d] * k[j][d], sequential) / sqrtf(head_dim); the softmax above over
//               j = 0..pos; out[d] = sum_j score[j] * v[j][d] (j ascending, out starts at 0)
//
// With the same libm, these give run.c's floats bit for bit (the optimised variants match rope exactly and the
// others to a tolerance, see the x86 units).
#include <math.h>

#include <cstring>
#include <new>
#include <vector>

#include "qk/kernels.h"
#include "qk/llama_math.h"

namespace qk {
namespace ref {

void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t n, float eps, float* y) {
  if (n <= 0) return;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    float ss = 0.0f;
    for (int64_t j = 0; j < n; ++j) ss += xr[j] * xr[j];
    ss /= static_cast<float>(n);
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    for (int64_t j = 0; j < n; ++j) yr[j] = weight[j] * (ss * xr[j]);
  }
}

void rope(float* x, int64_t rows, int64_t heads, int64_t head_dim, const int32_t* positions, float theta) {
  const int64_t pairs = head_dim / 2;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (r * heads + h) * head_dim;
      for (int64_t i = 0; i < pairs; ++i) {
        float c, s;
        qk_rope_cos_sin(positions[r], qk_rope_inv_freq(i, head_dim, theta), &c, &s);
        qk_rope_rotate(&v[2 * i], &v[2 * i + 1], c, s);
      }
    }
  }
}

namespace {

// run.c's softmax, in place over x[0, n), n >= 1.
void softmax_one(float* x, int64_t n) {
  float m = x[0];
  for (int64_t i = 1; i < n; ++i) {
    if (x[i] > m) m = x[i];
  }
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = expf(x[i] - m);
    sum += x[i];
  }
  for (int64_t i = 0; i < n; ++i) x[i] /= sum;
}

}  // namespace

void softmax_rows(float* x, int64_t rows, int64_t n) {
  if (n <= 0) return;
  for (int64_t r = 0; r < rows; ++r) softmax_one(x + r * n, n);
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = qk_silu_mul_one(gate[i], up[i]);
}

Status attention_decode(const float* q, int64_t T, int64_t heads, int64_t kv_heads, int64_t head_dim,
                        const float* k_cache, const float* v_cache, int64_t max_seq, int64_t pos0, float* out,
                        ThreadPool* /*pool*/) {
  if (T <= 0 || heads <= 0 || head_dim <= 0) return kOk;
  const int64_t group = heads / kv_heads;
  const float root = sqrtf(static_cast<float>(head_dim));
  std::vector<float> att;
  try {
    att.resize(static_cast<size_t>(pos0 + T));
  } catch (const std::bad_alloc&) {
    return QK_STATUS_OUT_OF_MEMORY;
  }
  for (int64_t t = 0; t < T; ++t) {
    const int64_t len = pos0 + t + 1;  // cache positions 0 .. pos0 + t
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t g = h / group;
      const float* qh = q + (t * heads + h) * head_dim;
      const float* kb = k_cache + g * max_seq * head_dim;
      const float* vb = v_cache + g * max_seq * head_dim;
      for (int64_t j = 0; j < len; ++j) {
        const float* kj = kb + j * head_dim;
        float score = 0.0f;
        for (int64_t d = 0; d < head_dim; ++d) score += qh[d] * kj[d];
        att[j] = score / root;
      }
      softmax_one(att.data(), len);
      float* oh = out + (t * heads + h) * head_dim;
      for (int64_t d = 0; d < head_dim; ++d) oh[d] = 0.0f;
      for (int64_t j = 0; j < len; ++j) {
        const float* vj = vb + j * head_dim;
        const float a = att[j];
        for (int64_t d = 0; d < head_dim; ++d) oh[d] += a * vj[d];
      }
    }
  }
  return kOk;
}

void kv_cache_write(const float* k, const float* v, int64_t T, int64_t kv_heads, int64_t head_dim,
                    const int32_t* positions, int64_t max_seq, float* k_cache, float* v_cache) {
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t g = 0; g < kv_heads; ++g) {
      const int64_t src = (t * kv_heads + g) * head_dim;
      const int64_t dst = (g * max_seq + positions[t]) * head_dim;
      for (int64_t d = 0; d < head_dim; ++d) {
        k_cache[dst + d] = k[src + d];
        v_cache[dst + d] = v[src + d];
      }
    }
  }
}

}  // namespace ref
}  // namespace qk
