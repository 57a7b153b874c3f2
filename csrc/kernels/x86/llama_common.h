// quantkit — the ISA-independent part of the optimised Llama float-path kernels, private to llama_avx2.cpp and
// llama_avx512.cpp. Everything is a template over a vector-traits struct V supplied by the including unit, in an
// anonymous namespace, so each ISA translation unit gets its own copy compiled with its own flags.
//
// V provides (R = vector register of W floats, M = lane mask):
//   W; M tail(n) (lanes [0, min(n, W))); R load(p), loadz(M, p) (masked-off lanes 0), loadf(M, p, R fill);
//   store(p, R), storem(M, p, R); zero(), set1(f), add, sub, mul, div, fmadd(a, b, c) = a * b + c (fused),
//   max; maskz(M, R) (masked-off lanes 0); float hsum(R), hmax(R); __m128 hsum4(a, b, c, d) (the four lane
//   sums); R rope_rotate(x, c, s) (below); R exp(R).
//
// What is exact and what is not (the tests hold each op to this):
//   rope      BIT-EXACT with the reference: cos/sin come from the same scalar calls (qk/llama_math.h), once per
//             (position, pair) into a small table shared by all heads (and by consecutive rows with the same
//             position); only the rotation is vectorized, with the reference's operations in its order:
//             lane 2i = x0 * c - x1 * s, lane 2i + 1 = x0 * s + x1 * c (no FMA).
//   rmsnorm   sum of squares in W-lane partial sums (4 accumulators, FMA) reduced at the end, instead of the
//             reference's sequential sum; the rest (ss / n + eps, 1 / sqrtf, weight * (ss * x)) is the
//             reference's, so the only difference is the rounding of the sum.
//   softmax   vector max (exact), vector exp (V::exp: Cephes-style range reduction and polynomial, within 1 ulp
//             of the correctly rounded e^x on [-87, 88], measured), partial sums in lanes, then the reference's
//             true division x / sum.
//   silu_mul  g * (1 / (1 + exp(-g))) * up with V::exp, true division, no FMA elsewhere.
//   attention dot products in lanes with FMA (4 K rows at a time, one reduction tree for every score), the
//             scores divided by sqrtf(head_dim) as the reference, the softmax above, and the V sum with FMA
//             in register blocks. A query row's result does not depend on T or on the task split, so a prefill
//             row equals the decode step at its position bit for bit.
//
// Attention is FMA-bound once K/V sit in cache (about one zmm FMA per ns per core on the development VM) and
// bandwidth-bound otherwise; the blocking keeps every K and V row read once per group of heads sharing it.
#ifndef QK_KERNELS_X86_LLAMA_COMMON_H_
#define QK_KERNELS_X86_LLAMA_COMMON_H_

#include <immintrin.h>
#include <math.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <utility>

#include "qk/kernels.h"
#include "qk/llama_math.h"
#include "qk/threadpool.h"

namespace qk {
namespace llama_x86 {
namespace {

// ---- rmsnorm ------------------------------------------------------------------------------------------------

template <class V>
void rmsnorm_impl(const float* x, const float* weight, int64_t rows, int64_t n, float eps, float* y) {
  using R = typename V::R;
  constexpr int64_t W = V::W;
  if (n <= 0) return;
  const typename V::M tail = V::tail(n % W);
  const int64_t nfull = n - n % W;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    R a0 = V::zero(), a1 = a0, a2 = a0, a3 = a0;
    int64_t j = 0;
    for (; j + 4 * W <= n; j += 4 * W) {
      const R v0 = V::load(xr + j), v1 = V::load(xr + j + W), v2 = V::load(xr + j + 2 * W),
              v3 = V::load(xr + j + 3 * W);
      a0 = V::fmadd(v0, v0, a0);
      a1 = V::fmadd(v1, v1, a1);
      a2 = V::fmadd(v2, v2, a2);
      a3 = V::fmadd(v3, v3, a3);
    }
    for (; j < nfull; j += W) {
      const R v = V::load(xr + j);
      a0 = V::fmadd(v, v, a0);
    }
    if (j < n) {
      const R v = V::loadz(tail, xr + j);
      a1 = V::fmadd(v, v, a1);
    }
    float ss = V::hsum(V::add(V::add(a0, a1), V::add(a2, a3)));
    ss /= static_cast<float>(n);
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    const R s = V::set1(ss);
    for (j = 0; j < nfull; j += W) V::store(yr + j, V::mul(V::load(weight + j), V::mul(s, V::load(xr + j))));
    if (j < n) V::storem(tail, yr + j, V::mul(V::loadz(tail, weight + j), V::mul(s, V::loadz(tail, xr + j))));
  }
}

// ---- rope ---------------------------------------------------------------------------------------------------

// Pairs per trig block: the cos/sin tables live on the stack (2 x 2 x kRopePairs floats); head_dim <= 2 *
// kRopePairs (every Llama) is one block, so the inverse frequencies are computed once per call.
constexpr int64_t kRopePairs = 128;

template <class V>
void rope_impl(float* x, int64_t rows, int64_t heads, int64_t head_dim, const int32_t* positions, float theta) {
  using R = typename V::R;
  constexpr int64_t W = V::W;
  const int64_t pairs = head_dim / 2;
  alignas(64) float inv_freq[kRopePairs];
  alignas(64) float cs[2 * kRopePairs];  // cos, each twice: (c_i, c_i)
  alignas(64) float sn[2 * kRopePairs];  // sin, each twice: (s_i, s_i)
  for (int64_t p0 = 0; p0 < pairs; p0 += kRopePairs) {
    const int64_t np = std::min(kRopePairs, pairs - p0);
    const int64_t width = 2 * np;
    for (int64_t i = 0; i < np; ++i) inv_freq[i] = qk_rope_inv_freq(p0 + i, head_dim, theta);
    const typename V::M tail = V::tail(width % W);
    const int64_t wfull = width - width % W;
    bool have = false;
    int32_t have_pos = 0;
    for (int64_t r = 0; r < rows; ++r) {
      if (!have || positions[r] != have_pos) {
        for (int64_t i = 0; i < np; ++i) {
          float c, s;
          qk_rope_cos_sin(positions[r], inv_freq[i], &c, &s);
          cs[2 * i] = cs[2 * i + 1] = c;
          sn[2 * i] = sn[2 * i + 1] = s;
        }
        have = true;
        have_pos = positions[r];
      }
      for (int64_t h = 0; h < heads; ++h) {
        float* v = x + (r * heads + h) * head_dim + 2 * p0;
        int64_t i = 0;
        for (; i < wfull; i += W) V::store(v + i, V::rope_rotate(V::load(v + i), V::load(cs + i), V::load(sn + i)));
        if (i < width) {
          const R out = V::rope_rotate(V::loadz(tail, v + i), V::loadz(tail, cs + i), V::loadz(tail, sn + i));
          V::storem(tail, v + i, out);
        }
      }
    }
  }
}

// ---- softmax ------------------------------------------------------------------------------------------------

// In place over x[0, n), n >= 1 (the reference's steps: max, exp(x - max) with the sum, division by the sum).
template <class V>
void softmax_one(float* x, int64_t n) {
  using R = typename V::R;
  constexpr int64_t W = V::W;
  const typename V::M tail = V::tail(n % W);
  const int64_t nfull = n - n % W;
  const R ninf = V::set1(-std::numeric_limits<float>::infinity());
  R m0 = ninf, m1 = ninf;
  int64_t i = 0;
  for (; i + 2 * W <= nfull; i += 2 * W) {
    m0 = V::max(m0, V::load(x + i));
    m1 = V::max(m1, V::load(x + i + W));
  }
  for (; i < nfull; i += W) m0 = V::max(m0, V::load(x + i));
  if (i < n) m1 = V::max(m1, V::loadf(tail, x + i, ninf));
  const R m = V::set1(V::hmax(V::max(m0, m1)));
  R s0 = V::zero(), s1 = s0;
  for (i = 0; i + 2 * W <= nfull; i += 2 * W) {
    const R e0 = V::exp(V::sub(V::load(x + i), m));
    const R e1 = V::exp(V::sub(V::load(x + i + W), m));
    V::store(x + i, e0);
    V::store(x + i + W, e1);
    s0 = V::add(s0, e0);
    s1 = V::add(s1, e1);
  }
  for (; i < nfull; i += W) {
    const R e = V::exp(V::sub(V::load(x + i), m));
    V::store(x + i, e);
    s0 = V::add(s0, e);
  }
  if (i < n) {
    const R e = V::maskz(tail, V::exp(V::sub(V::loadz(tail, x + i), m)));
    V::storem(tail, x + i, e);
    s1 = V::add(s1, e);
  }
  const R sum = V::set1(V::hsum(V::add(s0, s1)));
  for (i = 0; i < nfull; i += W) V::store(x + i, V::div(V::load(x + i), sum));
  if (i < n) V::storem(tail, x + i, V::div(V::loadz(tail, x + i), sum));
}

template <class V>
void softmax_rows_impl(float* x, int64_t rows, int64_t n) {
  if (n <= 0) return;
  for (int64_t r = 0; r < rows; ++r) softmax_one<V>(x + r * n, n);
}

// ---- silu_mul -----------------------------------------------------------------------------------------------

template <class V>
inline typename V::R silu_mul_vec(typename V::R g, typename V::R u) {
  const typename V::R one = V::set1(1.0f);
  const typename V::R e = V::exp(V::sub(V::zero(), g));
  return V::mul(V::mul(g, V::div(one, V::add(one, e))), u);
}

template <class V>
void silu_mul_impl(const float* gate, const float* up, int64_t n, float* out) {
  constexpr int64_t W = V::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) V::store(out + i, silu_mul_vec<V>(V::load(gate + i), V::load(up + i)));
  if (i < n) {
    const typename V::M tail = V::tail(n - i);
    V::storem(tail, out + i, silu_mul_vec<V>(V::loadz(tail, gate + i), V::loadz(tail, up + i)));
  }
}

// ---- attention ----------------------------------------------------------------------------------------------

// Dot products of one query head with NR (1..4) K rows: s[r] = (sum_d q[d] * k_r[d]) / root for rows k0 + r * hd.
// Lane-wise FMA sums, then one 4-way horizontal reduction (V::hsum4, missing rows padded with zero vectors),
// so every score is reduced by the same tree whatever NR is: a score does not depend on the row blocking (and
// hence not on the cache length), which makes a prefill row equal to the decode step at its position.
template <class V, int NR>
inline void dot_rows(const float* q, const float* k0, int64_t hd, const __m128 root, float* s) {
  using R = typename V::R;
  constexpr int64_t W = V::W;
  R acc[4];
  for (int r = 0; r < 4; ++r) acc[r] = V::zero();
  int64_t d = 0;
  for (; d + W <= hd; d += W) {
    const R qv = V::load(q + d);
    for (int r = 0; r < NR; ++r) acc[r] = V::fmadd(qv, V::load(k0 + r * hd + d), acc[r]);
  }
  if (d < hd) {
    const typename V::M tail = V::tail(hd - d);
    const R qv = V::loadz(tail, q + d);
    for (int r = 0; r < NR; ++r) acc[r] = V::fmadd(qv, V::loadz(tail, k0 + r * hd + d), acc[r]);
  }
  const __m128 sums = _mm_div_ps(V::hsum4(acc[0], acc[1], acc[2], acc[3]), root);
  if (NR == 4) {
    _mm_storeu_ps(s, sums);
  } else {
    alignas(16) float tmp[4];
    _mm_store_ps(tmp, sums);
    for (int r = 0; r < NR; ++r) s[r] = tmp[r];
  }
}

template <class V, int NV>
inline void pv_store(const typename V::R (&a)[NV], typename V::M last, float* o) {
  for (int v = 0; v + 1 < NV; ++v) V::store(o + v * V::W, a[v]);
  V::storem(last, o + (NV - 1) * V::W, a[NV - 1]);
}

// out_h[d0 .. d0 + (NV - 1) W + last_lanes) = sum_j p_h[j] * v_j[same range] for NB heads at once (the last
// of the NV vectors has last_lanes in [1, W] lanes).
template <class V, int NB, int NV>
void pv_block(const float* const* p, int64_t len, const float* vb, int64_t hd, int64_t d0, int64_t last_lanes,
              float* const* out) {
  using R = typename V::R;
  constexpr int64_t W = V::W;
  const typename V::M last = V::tail(last_lanes);
  // One small array per head: GCC keeps these in registers, while a single array of NB * NV vectors (> 512
  // bytes) is stored back to the stack on every iteration.
  R a0[NV], a1[NV], a2[NV], a3[NV];
  for (int v = 0; v < NV; ++v) a0[v] = a1[v] = a2[v] = a3[v] = V::zero();
  for (int64_t j = 0; j < len; ++j) {
    const float* row = vb + j * hd + d0;
    R vv[NV];
    for (int v = 0; v + 1 < NV; ++v) vv[v] = V::load(row + v * W);
    vv[NV - 1] = V::loadz(last, row + (NV - 1) * W);
    const R w0 = V::set1(p[0][j]);
    for (int v = 0; v < NV; ++v) a0[v] = V::fmadd(w0, vv[v], a0[v]);
    if constexpr (NB > 1) {
      const R w1 = V::set1(p[1][j]);
      for (int v = 0; v < NV; ++v) a1[v] = V::fmadd(w1, vv[v], a1[v]);
    }
    if constexpr (NB > 2) {
      const R w2 = V::set1(p[2][j]);
      for (int v = 0; v < NV; ++v) a2[v] = V::fmadd(w2, vv[v], a2[v]);
    }
    if constexpr (NB > 3) {
      const R w3 = V::set1(p[3][j]);
      for (int v = 0; v < NV; ++v) a3[v] = V::fmadd(w3, vv[v], a3[v]);
    }
  }
  pv_store<V, NV>(a0, last, out[0] + d0);
  if constexpr (NB > 1) pv_store<V, NV>(a1, last, out[1] + d0);
  if constexpr (NB > 2) pv_store<V, NV>(a2, last, out[2] + d0);
  if constexpr (NB > 3) pv_store<V, NV>(a3, last, out[3] + d0);
}

using PvFn = void (*)(const float* const*, int64_t, const float*, int64_t, int64_t, int64_t, float* const*);

// pv_block<V, NB, nv> for nv in [1, MAXV].
template <class V, int NB, int MAXV>
PvFn pv_fn(int64_t nv) {
  if constexpr (MAXV > 1) {
    if (nv < MAXV) return pv_fn<V, NB, MAXV - 1>(nv);
  }
  return &pv_block<V, NB, MAXV>;
}

// One task: query row t, heads [h0, h0 + nh) (all reading kv head g), scores scratch of nh * len floats.
// kHB heads x kDV vectors per V block (kDV1 vectors when a single head is left).
template <class V, int kHB, int kDV, int kDV1>
void attend_heads(const float* q, int64_t heads, int64_t hd, const float* kb, const float* vb, int64_t len,
                  int64_t t, int64_t h0, int64_t nh, float* scores, float* out) {
  constexpr int64_t W = V::W;
  const __m128 root = _mm_set1_ps(sqrtf(static_cast<float>(hd)));
  // Scores, K rows read once for all nh heads (4 at a time, then the 1..3 left).
  int64_t j = 0;
  for (; j + 4 <= len; j += 4) {
    for (int64_t b = 0; b < nh; ++b) {
      dot_rows<V, 4>(q + (t * heads + h0 + b) * hd, kb + j * hd, hd, root, scores + b * len + j);
    }
  }
  if (j < len) {
    for (int64_t b = 0; b < nh; ++b) {
      const float* qh = q + (t * heads + h0 + b) * hd;
      float* s = scores + b * len + j;
      switch (len - j) {
        case 1: dot_rows<V, 1>(qh, kb + j * hd, hd, root, s); break;
        case 2: dot_rows<V, 2>(qh, kb + j * hd, hd, root, s); break;
        default: dot_rows<V, 3>(qh, kb + j * hd, hd, root, s); break;
      }
    }
  }
  for (int64_t b = 0; b < nh; ++b) softmax_one<V>(scores + b * len, len);
  // out = P V, V rows read once per block of kHB heads.
  for (int64_t b0 = 0; b0 < nh; b0 += kHB) {
    const int64_t nb = std::min<int64_t>(kHB, nh - b0);
    const float* p[kHB];
    float* o[kHB];
    for (int64_t b = 0; b < nb; ++b) {
      p[b] = scores + (b0 + b) * len;
      o[b] = out + (t * heads + h0 + b0 + b) * hd;
    }
    const int64_t maxv = nb == 1 ? kDV1 : kDV;
    for (int64_t d0 = 0; d0 < hd; d0 += maxv * W) {
      const int64_t rest = hd - d0;
      const int64_t nv = std::min<int64_t>(maxv, (rest + W - 1) / W);
      const int64_t last = rest - (nv - 1) * W;
      switch (nb) {
        case 1: pv_fn<V, 1, kDV1>(nv)(p, len, vb, hd, d0, last, o); break;
        case 2: pv_fn<V, 2, kDV>(nv)(p, len, vb, hd, d0, last, o); break;
        case 3: pv_fn<V, 3, kDV>(nv)(p, len, vb, hd, d0, last, o); break;
        default: pv_fn<V, 4, kDV>(nv)(p, len, vb, hd, d0, last, o); break;
      }
    }
  }
}

// Work below this many multiply-adds (T * heads * positions * head_dim, both products) runs on one thread.
constexpr int64_t kAttnSerialWork = 1 << 16;

template <class V, int kHB, int kDV, int kDV1>
Status attention_impl(const float* q, int64_t T, int64_t heads, int64_t kv_heads, int64_t head_dim,
                      const float* k_cache, const float* v_cache, int64_t max_seq, int64_t pos0, float* out,
                      ThreadPool* pool) {
  static_assert(kHB >= 1 && kHB <= 4, "pv_block dispatch covers 1..4 heads");
  if (T <= 0 || heads <= 0 || head_dim <= 0) return kOk;
  const int64_t group = heads / kv_heads;
  const int threads = pool == nullptr ? 1 : pool->num_threads();
  // Tasks: (kv head g, query row t, chunk of the group's heads). Whole groups share each K/V row read; the
  // group is split only when there would otherwise be fewer than two tasks per thread.
  int64_t chunk = group;
  const int64_t base = kv_heads * T;
  while (chunk > 1 && base * ((group + chunk - 1) / chunk) < 2 * static_cast<int64_t>(threads)) chunk = (chunk + 1) / 2;
  const int64_t nchunks = (group + chunk - 1) / chunk;
  const int64_t ntasks = base * nchunks;
  std::atomic<bool> oom{false};
  auto task = [&](int64_t id) {
    const int64_t c = id % nchunks;
    const int64_t t = (id / nchunks) % T;
    const int64_t g = id / (nchunks * T);
    const int64_t h0 = g * group + c * chunk;
    const int64_t nh = std::min(chunk, (g + 1) * group - h0);
    const int64_t len = pos0 + t + 1;
    std::unique_ptr<float[]> scores(new (std::nothrow) float[static_cast<size_t>(nh * len)]);
    if (!scores) {
      oom.store(true, std::memory_order_relaxed);
      return;
    }
    const float* kb = k_cache + g * max_seq * head_dim;
    const float* vb = v_cache + g * max_seq * head_dim;
    attend_heads<V, kHB, kDV, kDV1>(q, heads, head_dim, kb, vb, len, t, h0, nh, scores.get(), out);
  };
  const double work = 2.0 * static_cast<double>(T * heads) * static_cast<double>(pos0 + T) * static_cast<double>(head_dim);
  if (pool == nullptr || threads == 1 || ntasks == 1 || work < static_cast<double>(kAttnSerialWork)) {
    for (int64_t id = 0; id < ntasks; ++id) task(id);
  } else {
    pool->run(ntasks, task);
  }
  return oom.load() ? QK_STATUS_OUT_OF_MEMORY : kOk;
}

}  // namespace
}  // namespace llama_x86
}  // namespace qk

#endif  // QK_KERNELS_X86_LLAMA_COMMON_H_
