// quantkit — AVX-512 variants of the Llama float-path kernels (rmsnorm, rope, softmax_rows, silu_mul,
// attention_decode). The algorithms are ISA-independent templates in llama_common.h (read its header for what is
// bit-exact with qk::ref and what is compared by tolerance); this unit supplies 16-lane vector traits, with
// AVX-512 masks for every partial vector (no scalar tails), and the vector exp.
#include "avx512_intrin.h"

#include "llama_common.h"
#include "qk/kernels.h"

namespace qk {
namespace avx512 {
namespace {

struct V512 {
  using R = __m512;
  using M = __mmask16;
  static constexpr int64_t W = 16;
  static M tail(int64_t n) { return _cvtu32_mask16(n >= W ? 0xFFFFu : n <= 0 ? 0u : (1u << n) - 1u); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static R loadz(M m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static R loadf(M m, const float* p, R fill) { return _mm512_mask_loadu_ps(fill, m, p); }
  static void store(float* p, R v) { _mm512_storeu_ps(p, v); }
  static void storem(M m, float* p, R v) { _mm512_mask_storeu_ps(p, m, v); }
  static R zero() { return _mm512_setzero_ps(); }
  static R set1(float f) { return _mm512_set1_ps(f); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R div(R a, R b) { return _mm512_div_ps(a, b); }
  static R fmadd(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R max(R a, R b) { return _mm512_max_ps(a, b); }
  static R maskz(M m, R v) { return _mm512_maskz_mov_ps(m, v); }
  static float hsum(R v) { return _mm512_reduce_add_ps(v); }
  static float hmax(R v) { return _mm512_reduce_max_ps(v); }
  // (sum a, sum b, sum c, sum d): pairs interleaved, then the four 128-bit lanes added.
  static __m128 hsum4(R a, R b, R c, R d) {
    const R ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));  // a02 b02 a13 b13 per lane
    const R cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    const R s = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, 0x44), _mm512_shuffle_ps(ab, cd, 0xEE));  // a b c d per lane
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_extractf32x8_ps(s, 1));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  }
  // Even lanes x0 * c - x1 * s, odd lanes x0 * s + x1 * c, each in the reference's operand order.
  static R rope_rotate(R x, R c, R s) {
    const R xc = _mm512_mul_ps(x, c);
    const R ws = _mm512_mul_ps(_mm512_permute_ps(x, 0xB1), s);  // (x1 * s, x0 * s) per pair
    return _mm512_mask_add_ps(_mm512_sub_ps(xc, ws), _cvtu32_mask16(0xAAAAu), ws, xc);
  }
  // e^x: x clamped to [-104, 89] (NaN passes through), n = rne(x log2 e), r = x - n ln2 (Cephes two-constant
  // split, fused), e^r by Cephes' degree-7 polynomial, then scalef(e^r, n), which also gives the correct
  // subnormal results, 0 below and +inf above the float range.
  static R exp(R x) {
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
    const R n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    R r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    R p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    const R y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, n);
  }
};

}  // namespace

void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t n, float eps, float* y) {
  llama_x86::rmsnorm_impl<V512>(x, weight, rows, n, eps, y);
}

void rope(float* x, int64_t rows, int64_t heads, int64_t head_dim, const int32_t* positions, float theta) {
  llama_x86::rope_impl<V512>(x, rows, heads, head_dim, positions, theta);
}

void softmax_rows(float* x, int64_t rows, int64_t n) { llama_x86::softmax_rows_impl<V512>(x, rows, n); }

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  llama_x86::silu_mul_impl<V512>(gate, up, n, out);
}

// V blocks of 4 heads x 4 vectors (64 floats), or 1 head x 8 vectors (128 floats): at most 16 + 4 zmm live.
Status attention_decode(const float* q, int64_t T, int64_t heads, int64_t kv_heads, int64_t head_dim,
                        const float* k_cache, const float* v_cache, int64_t max_seq, int64_t pos0, float* out,
                        ThreadPool* pool) {
  return llama_x86::attention_impl<V512, 4, 4, 8>(q, T, heads, kv_heads, head_dim, k_cache, v_cache, max_seq, pos0,
                                                  out, pool);
}

}  // namespace avx512
}  // namespace qk
