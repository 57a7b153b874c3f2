// quantkit — lowbit_packed_gemv (qk/lowbit_pack.h), AVX-512 VNNI variant: the decode GEMV (M < 16 rows) of int4
// grouped / per-channel and GPTQ 2/3/4/8-bit weights over the packed-once layout, bit-exact with the reference.
//
// 1. Activations: absmax_quantize per row (this ISA's variant, bit-exact with ref), copied into rows whose groups
//    are zero-padded to a multiple of KQ inputs, with the per-group row sums rs.
// 2. Threads take tasks of adjacent 64-output column blocks; a block is one contiguous stream of K/KQ chunks of
//    256 bytes (4 vectors, one per 16 outputs) plus 384 bytes of group params, read once per call.
// 3. Per chunk and vector: one load, then per plane a shift + and (none for 8 bits) and one vpdpbusd with the
//    broadcast 4 activation bytes (levels = unsigned operand, activations = signed: no offset correction).
//    Per group: cvtdq2ps + 2 FMAs per accumulator (t = acc + nc * rs; f += scale * t), as the reference.
//    For M > 1 the group's weights are re-read from L1 for each row (a group of 64 outputs is <= 8 KB at g128).
// GCC 12 reports the _mm512_undefined_* idiom inside the conversion intrinsics as maybe-uninitialized (a false
// positive; lowbit_a8_avx512.cpp has the same guard).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

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

// Integer dot products of one group for one row: 4 accumulators of 16 outputs.
template <int SB>
inline void group_dots(const uint8_t* w, int64_t chunks, const int8_t* xq, __m512i acc[4]) {
  constexpr int P = 8 / SB;
  const __m512i m = _mm512_set1_epi8(static_cast<char>((1 << SB) - 1));
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t ch = 0; ch < chunks; ++ch, w += 256, xq += 4 * P) {
    _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetchBytes), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetchBytes + 64), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetchBytes + 128), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetchBytes + 192), _MM_HINT_T0);
    const __m512i v0 = _mm512_loadu_si512(w), v1 = _mm512_loadu_si512(w + 64);
    const __m512i v2 = _mm512_loadu_si512(w + 128), v3 = _mm512_loadu_si512(w + 192);
#pragma GCC unroll 4
    for (int p = 0; p < P; ++p) {
      int32_t xw;
      std::memcpy(&xw, xq + 4 * p, 4);
      const __m512i xb = _mm512_set1_epi32(xw);
      if (SB == 8) {
        a0 = _mm512_dpbusd_epi32(a0, v0, xb);
        a1 = _mm512_dpbusd_epi32(a1, v1, xb);
        a2 = _mm512_dpbusd_epi32(a2, v2, xb);
        a3 = _mm512_dpbusd_epi32(a3, v3, xb);
      } else if (p == 0) {
        a0 = _mm512_dpbusd_epi32(a0, _mm512_and_si512(v0, m), xb);
        a1 = _mm512_dpbusd_epi32(a1, _mm512_and_si512(v1, m), xb);
        a2 = _mm512_dpbusd_epi32(a2, _mm512_and_si512(v2, m), xb);
        a3 = _mm512_dpbusd_epi32(a3, _mm512_and_si512(v3, m), xb);
      } else {
        const unsigned sh = static_cast<unsigned>(SB * p);
        a0 = _mm512_dpbusd_epi32(a0, _mm512_and_si512(_mm512_srli_epi16(v0, sh), m), xb);
        a1 = _mm512_dpbusd_epi32(a1, _mm512_and_si512(_mm512_srli_epi16(v1, sh), m), xb);
        a2 = _mm512_dpbusd_epi32(a2, _mm512_and_si512(_mm512_srli_epi16(v2, sh), m), xb);
        a3 = _mm512_dpbusd_epi32(a3, _mm512_and_si512(_mm512_srli_epi16(v3, sh), m), xb);
      }
    }
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

using DotsFn = void (*)(const uint8_t*, int64_t, const int8_t*, __m512i*);

// One 64-output block for every row. f: [M, 64] float scratch of this task.
void run_block(const LowbitPackInfo& in, DotsFn dots, const uint8_t* blk, int64_t b, int64_t M, const Acts& a,
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
    for (int64_t i = 0; i < M; ++i) {
      __m512i acc[4];
      dots(w, chunks, a.xq + i * in.Kp + in.xq_offset(g), acc);
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
  DotsFn dots = in.sb == 2 ? &group_dots<2> : in.sb == 4 ? &group_dots<4> : &group_dots<8>;
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
