// quantkit — lowbit_packed_gemv (qk/lowbit_pack.h), AVX-512 VNNI variant: the decode GEMV (small M) of int4
// grouped / per-channel and GPTQ 2/3/4/8-bit weights over the packed-once layout, bit-exact with the reference.
//
// 1. Activations: absmax_quantize per row (this ISA's variant, bit-exact with ref), copied into rows whose groups
//    are zero-padded to a multiple of KQ inputs, with the per-group row sums rs.
// 2. Threads take tasks of adjacent 64-output column blocks; a block is one contiguous stream of K/KQ chunks of
//    256 bytes (4 vectors, one per 16 outputs) plus 384 bytes of group params, read once per call.
// 3. Per chunk and vector: one load, then per plane a shift + and (none for 8 bits) and one vpdpbusd with the
//    broadcast 4 activation bytes (levels = unsigned operand, activations = signed: no offset correction).
//    Per group: cvtdq2ps + 2 FMAs per accumulator (t = acc + nc * rs; f += scale * t), as the reference.
//    Rows are taken 4 at a time: each weight vector is loaded and unpacked once for 4 rows (16 accumulators); for
//    M > 4 the group's weights are re-read from L1 once per 4 rows (a group of 64 outputs is <= 8 KB at g128).
#include "avx512_intrin.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "qk/kernels.h"
#include "qk/lowbit_pack.h"
#include "qk/quant_math.h"
#include "qk/threadpool.h"

namespace qk {
namespace avx512 {
namespace {

// Software prefetch distance in a weight stream (measured on the shared 2-vCPU machine, 4096 x 4096 and 4096 x 11008
// int4 g128 cold, alternating in one process: none 15-18 GB/s, 1 KB 19-20, 2 KB 18-21, 4 KB 17.5 at the best run).
constexpr int64_t kPrefetchBytes = 2048;

inline __mmask16 mask16(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u); }

struct Acts {
  const int8_t* xq;    // [M, Kp]
  const int32_t* rs;   // [M, G]
  const float* sx;     // [M]
};

// Integer dot products of one group for R rows (xq rows `xs` bytes apart): per row 4 accumulators of 16 outputs.
// Each weight vector is loaded and unpacked (shift + and per plane) once for the R rows.
template <int SB, int R>
void group_dots(const uint8_t* w, int64_t chunks, const int8_t* xq, int64_t xs, __m512i* acc) {
  constexpr int P = 8 / SB;
  const __m512i m = _mm512_set1_epi8(static_cast<char>((1 << SB) - 1));
  __m512i a[R][4];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int s = 0; s < 4; ++s) a[r][s] = _mm512_setzero_si512();
  }
  for (int64_t ch = 0; ch < chunks; ++ch, w += 256, xq += 4 * P) {
    _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetchBytes), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetchBytes + 64), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetchBytes + 128), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetchBytes + 192), _MM_HINT_T0);
    __m512i v[4];
#pragma GCC unroll 4
    for (int s = 0; s < 4; ++s) v[s] = _mm512_loadu_si512(w + 64 * s);
#pragma GCC unroll 4
    for (int p = 0; p < P; ++p) {
      __m512i xb[R];
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        int32_t xw;
        std::memcpy(&xw, xq + r * xs + 4 * p, 4);
        xb[r] = _mm512_set1_epi32(xw);
      }
#pragma GCC unroll 4
      for (int s = 0; s < 4; ++s) {
        const __m512i u = SB == 8 ? v[s] : p == 0 ? _mm512_and_si512(v[s], m)
                                                  : _mm512_and_si512(_mm512_srli_epi16(v[s], static_cast<unsigned>(SB * p)), m);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) a[r][s] = _mm512_dpbusd_epi32(a[r][s], u, xb[r]);
      }
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int s = 0; s < 4; ++s) acc[4 * r + s] = a[r][s];
  }
}

// 4-bit weights, 1-2 rows (decode): the high nibble is used in place (and with 0xF0 gives 16 u, still an unsigned
// byte) instead of shift + and, with its own accumulators (which also halves the dependency chain per chunk) that
// are divided by 16 at the end. Exact: each high accumulator is 16 times an integer sum of at most half the group's
// inputs, |16 * 15 * 127 * 32768| < 2^31 for groups of up to 65536 inputs (chunks <= 8192; longer groups take the
// generic loop), so the arithmetic shift recovers that sum and acc equals the generic loop's int32 sum bit for bit.
// One logic op per weight vector and plane fewer: the shuffle/logic port was the limit of the generic loop.
template <int R>
void group_dots4_split(const uint8_t* w, int64_t chunks, const int8_t* xq, int64_t xs, __m512i* acc) {
  const __m512i mlo = _mm512_set1_epi8(0x0F);
  const __m512i mhi = _mm512_set1_epi8(static_cast<char>(0xF0));
  __m512i lo[R][4], hi[R][4];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int s = 0; s < 4; ++s) lo[r][s] = hi[r][s] = _mm512_setzero_si512();
  }
  for (int64_t ch = 0; ch < chunks; ++ch, w += 256, xq += 8) {
    _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetchBytes), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetchBytes + 64), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetchBytes + 128), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetchBytes + 192), _MM_HINT_T0);
    __m512i x0[R], x1[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      int32_t a, b;
      std::memcpy(&a, xq + r * xs, 4);
      std::memcpy(&b, xq + r * xs + 4, 4);
      x0[r] = _mm512_set1_epi32(a);
      x1[r] = _mm512_set1_epi32(b);
    }
#pragma GCC unroll 4
    for (int s = 0; s < 4; ++s) {
      const __m512i v = _mm512_loadu_si512(w + 64 * s);
      const __m512i u0 = _mm512_and_si512(v, mlo);
      const __m512i u1 = _mm512_and_si512(v, mhi);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        lo[r][s] = _mm512_dpbusd_epi32(lo[r][s], u0, x0[r]);
        hi[r][s] = _mm512_dpbusd_epi32(hi[r][s], u1, x1[r]);
      }
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int s = 0; s < 4; ++s) acc[4 * r + s] = _mm512_add_epi32(lo[r][s], _mm512_srai_epi32(hi[r][s], 4));
  }
}

template <int R>
void group_dots4(const uint8_t* w, int64_t chunks, const int8_t* xq, int64_t xs, __m512i* acc) {
  if (chunks <= 8192) {
    group_dots4_split<R>(w, chunks, xq, xs, acc);
  } else {
    group_dots<4, R>(w, chunks, xq, xs, acc);
  }
}

// Rows per weight load (4 rows x 4 accumulators = 16 zmm, + 4 weight vectors, the unpacked one, the mask and the
// broadcasts: no spill).
constexpr int kRows = 4;
using DotsFn = void (*)(const uint8_t*, int64_t, const int8_t*, int64_t, __m512i*);
struct Dots {
  DotsFn fn[kRows];  // fn[r - 1] handles r rows
};
template <int SB>
constexpr Dots dots_for() {
  if constexpr (SB == 4) return Dots{{&group_dots4<1>, &group_dots4<2>, &group_dots<SB, 3>, &group_dots<SB, 4>}};
  return Dots{{&group_dots<SB, 1>, &group_dots<SB, 2>, &group_dots<SB, 3>, &group_dots<SB, 4>}};
}

// One 64-output block for every row. f: [M, 64] float scratch of this task.
void run_block(const LowbitPackInfo& in, const Dots& dots, const uint8_t* blk, int64_t b, int64_t M, const Acts& a,
               const float* bias, float* f, float* y) {
  const bool channel = in.kind == kLowbitInt4Channel;
  const int64_t j0 = b * kLowbitPackNB;
  const int64_t nj = std::min<int64_t>(kLowbitPackNB, in.N - j0);
  for (int64_t i = 0; i < M; ++i) {
    for (int s = 0; s < 4; ++s) _mm512_storeu_ps(f + i * 64 + 16 * s, _mm512_setzero_ps());
  }
  for (int64_t g = 0; g < in.G; ++g) {
    const uint8_t* w = blk + in.group_offset(g);
    const int64_t chunks = in.group_padded(g) / in.KQ;
    const uint8_t* params = w + chunks * 256;
    for (int64_t i0 = 0; i0 < M; i0 += kRows) {
      const int64_t nr = std::min<int64_t>(kRows, M - i0);
      __m512i accs[4 * kRows];
      dots.fn[nr - 1](w, chunks, a.xq + i0 * in.Kp + in.xq_offset(g), in.Kp, accs);
      for (int64_t i = i0; i < i0 + nr; ++i) {
        const __m512i* acc = accs + 4 * (i - i0);
        const int32_t rs = a.rs[i * in.G + g];
        float* fi = f + i * 64;
        for (int s = 0; s < 4; ++s) {
          const __m512 sc = _mm512_loadu_ps(reinterpret_cast<const float*>(params) + 16 * s);
          if (channel) {
            // a = acc - 8 * rs (mod 2^32), v = (float)a / (scale * sx)
            const __m512i ai = _mm512_sub_epi32(acc[s], _mm512_set1_epi32(static_cast<int32_t>(8u * static_cast<uint32_t>(rs))));
            const __m512 d = _mm512_mul_ps(sc, _mm512_set1_ps(a.sx[i]));
            _mm512_storeu_ps(fi + 16 * s, _mm512_div_ps(_mm512_cvtepi32_ps(ai), d));
          } else {
            const __m256i nc16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(params + kLowbitPackNB * 4 + 32 * s));
            const __m512 nc = _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(nc16));
            const __m512 t = _mm512_fmadd_ps(nc, _mm512_set1_ps(static_cast<float>(rs)), _mm512_cvtepi32_ps(acc[s]));
            _mm512_storeu_ps(fi + 16 * s, _mm512_fmadd_ps(sc, t, _mm512_loadu_ps(fi + 16 * s)));
          }
        }
      }
    }
  }
  const __m512 cnan = _mm512_set1_ps(qk_canonical_nan());
  for (int64_t i = 0; i < M; ++i) {
    const __m512 sxv = _mm512_set1_ps(a.sx[i]);
    for (int s = 0; s < 4; ++s) {
      const __mmask16 mk = mask16(nj - 16 * s);
      if (mk == 0) break;
      __m512 v = _mm512_loadu_ps(f + i * 64 + 16 * s);
      if (!channel) v = _mm512_div_ps(v, sxv);
      if (bias != nullptr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, bias + j0 + 16 * s));
      v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v, cnan);
      _mm512_mask_storeu_ps(y + i * in.N + j0 + 16 * s, mk, v);
    }
  }
}

}  // namespace

Status lowbit_packed_gemv(const LowbitPackInfo& in, int64_t M, const float* x, const uint8_t* packed,
                          const float* bias, float act_lo, float act_hi, float act_eps, float* y,
                          ThreadPool* pool) {
  if (M == 0 || in.N == 0) return kOk;
  std::vector<int8_t> xq, tmp;
  std::vector<int32_t> rs;
  std::vector<float> sx;
  try {
    xq.assign(static_cast<size_t>(M * in.Kp), 0);
    tmp.resize(static_cast<size_t>(in.K));
    rs.assign(static_cast<size_t>(M * in.G), 0);
    sx.resize(static_cast<size_t>(M));
  } catch (...) {
    return QK_STATUS_OUT_OF_MEMORY;
  }
  for (int64_t i = 0; i < M; ++i) {
    absmax_quantize(x + i * in.K, 1, in.K, 1, act_lo, act_hi, act_eps, tmp.data(), &sx[i]);
    for (int64_t g = 0; g < in.G; ++g) {
      const int64_t k0 = in.group_start(g), len = in.group_len(g);
      int8_t* dst = xq.data() + i * in.Kp + in.xq_offset(g);
      std::memcpy(dst, tmp.data() + k0, static_cast<size_t>(len));
      int32_t s = 0;
      for (int64_t k = 0; k < len; ++k) s += dst[k];
      rs[i * in.G + g] = s;
    }
  }
  static constexpr Dots kDots2 = dots_for<2>(), kDots4 = dots_for<4>(), kDots8 = dots_for<8>();
  const Dots& dots = in.sb == 2 ? kDots2 : in.sb == 4 ? kDots4 : kDots8;
  const Acts acts{xq.data(), rs.data(), sx.data()};
  const uint8_t* base = packed + kLowbitPackHeader;
  const int nt = pool != nullptr ? pool->num_threads() : 1;
  // Contiguous ranges of blocks (long sequential streams for the hardware prefetcher), a few per thread so that a
  // thread slowed by another process does not hold up the call.
  const int64_t ntasks = std::min<int64_t>(in.nblocks, nt <= 1 ? 1 : 4 * nt);
  std::vector<float> scratch;
  try {
    scratch.resize(static_cast<size_t>(std::max<int64_t>(ntasks, 1) * M * 64));
  } catch (...) {
    return QK_STATUS_OUT_OF_MEMORY;
  }
  const auto task = [&](int64_t t) {
    const int64_t b0 = in.nblocks * t / ntasks, b1 = in.nblocks * (t + 1) / ntasks;
    float* f = scratch.data() + t * M * 64;
    for (int64_t b = b0; b < b1; ++b) run_block(in, dots, base + b * in.block_bytes, b, M, acts, bias, f, y);
  };
  if (pool != nullptr && ntasks > 1) {
    pool->run(ntasks, task);
  } else {
    for (int64_t t = 0; t < ntasks; ++t) task(t);
  }
  return kOk;
}

}  // namespace avx512
}  // namespace qk
