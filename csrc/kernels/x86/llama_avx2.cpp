// quantkit — AVX2 + FMA variants of the Llama float-path kernels (rmsnorm, rope, softmax_rows, silu_mul,
// attention_decode). The algorithms are ISA-independent templates in llama_common.h (read its header for what is
// bit-exact with qk::ref and what is compared by tolerance); this unit supplies 8-lane vector traits (partial
// vectors through vmaskmovps, which never touches masked-off memory) and the vector exp.
#include <immintrin.h>

#include "llama_common.h"
#include "qk/kernels.h"

namespace qk {
namespace avx2 {
namespace {

alignas(32) constexpr int32_t kTailMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

struct V256 {
  using R = __m256;
  using M = __m256i;
  static constexpr int64_t W = 8;
  static M tail(int64_t n) {
    const int64_t k = n >= W ? W : n <= 0 ? 0 : n;
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kTailMask + 8 - k));
  }
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static R loadz(M m, const float* p) { return _mm256_maskload_ps(p, m); }
  static R loadf(M m, const float* p, R fill) {
    return _mm256_blendv_ps(fill, _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static void store(float* p, R v) { _mm256_storeu_ps(p, v); }
  static void storem(M m, float* p, R v) { _mm256_maskstore_ps(p, m, v); }
  static R zero() { return _mm256_setzero_ps(); }
  static R set1(float f) { return _mm256_set1_ps(f); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R div(R a, R b) { return _mm256_div_ps(a, b); }
  static R fmadd(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R max(R a, R b) { return _mm256_max_ps(a, b); }
  static R maskz(M m, R v) { return _mm256_and_ps(v, _mm256_castsi256_ps(m)); }
  static float hsum(R v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // (sum a, sum b, sum c, sum d): three horizontal adds per 128-bit lane, then the two lanes added.
  static __m128 hsum4(R a, R b, R c, R d) {
    const R s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  }
  static float hmax(R v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // Even lanes x0 * c - x1 * s, odd lanes x0 * s + x1 * c, each in the reference's operand order.
  static R rope_rotate(R x, R c, R s) {
    const R xc = _mm256_mul_ps(x, c);
    const R ws = _mm256_mul_ps(_mm256_permute_ps(x, 0xB1), s);  // (x1 * s, x0 * s) per pair
    return _mm256_blend_ps(_mm256_sub_ps(xc, ws), _mm256_add_ps(ws, xc), 0xAA);
  }
  // 2^k for k in [-126, 127] (a normal float built from its exponent field).
  static R pow2(__m256i k) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
  }
  // e^x as in llama_avx512.cpp, with the final scaling 2^n = 2^(n >> 1) * 2^(n - (n >> 1)): both factors are
  // normal for the clamped n in [-150, 129], so subnormal results are rounded once and overflow gives +inf.
  static R exp(R x) {
    x = _mm256_max_ps(_mm256_set1_ps(-104.0f), x);
    x = _mm256_min_ps(_mm256_set1_ps(89.0f), x);
    const R n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    R r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    R p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    R y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1);
    y = _mm256_mul_ps(y, pow2(n1));
    return _mm256_mul_ps(y, pow2(_mm256_sub_epi32(ni, n1)));
  }
};

}  // namespace

void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t n, float eps, float* y) {
  llama_x86::rmsnorm_impl<V256>(x, weight, rows, n, eps, y);
}

void rope(float* x, int64_t rows, int64_t heads, int64_t head_dim, const int32_t* positions, float theta) {
  llama_x86::rope_impl<V256>(x, rows, heads, head_dim, positions, theta);
}

void softmax_rows(float* x, int64_t rows, int64_t n) { llama_x86::softmax_rows_impl<V256>(x, rows, n); }

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  llama_x86::silu_mul_impl<V256>(gate, up, n, out);
}

// V blocks of 4 heads x 2 vectors (16 floats), or 1 head x 4 vectors (32 floats): at most 8 + 2 ymm live.
Status attention_decode(const float* q, int64_t T, int64_t heads, int64_t kv_heads, int64_t head_dim,
                        const float* k_cache, const float* v_cache, int64_t max_seq, int64_t pos0, float* out,
                        ThreadPool* pool) {
  return llama_x86::attention_impl<V256, 4, 2, 4>(q, T, heads, kv_heads, head_dim, k_cache, v_cache, max_seq, pos0,
                                                  out, pool);
}

}  // namespace avx2
}  // namespace qk
