// quantkit — GPTQ weight-only Dense forward (dense_gptq, 2/3/4/8 bits) over the GPTQ runtime layout (kernels.h),
// AVX2 + FMA variant. Structure and tricks are those of dense_gptq_avx512.cpp (see there), at 8 lanes with the
// 6 x 16 sgemm micro-kernel:
//   pack   8 bits widened; 4-bit nibbles split and re-interleaved; 2 bits: row bytes permuted to lanes (vpermd)
//          and shifted per lane (vpsrlvd) from constant tables; 3 bits: vpshufb (levels may straddle bytes) and
//          vpsrlvd; then (q - z) * s, exactly the reference's floats;
//   GEMV   chunks of row bytes widened to 8 dword lanes, levels centred (q - 2^(bits-1)): 8 bits byte ^ 0x80
//          sign-extended, in column order; 4 bits byte ^ 0x88 sign-extended, E/O by arithmetic shifts (the
//          signed nibbles are q - 8), vcvtdq2ps; 2 bits four vectors (lane l = column 4l + c) through the 8-entry
//          vpermps table {(i & 3) - 2} indexed by w >> 2c; 3 bits 24 bytes (64 columns), two overlapping 16-byte
//          loads and one vpshufb give each dword its 3 bytes, eight vectors (lane l = column 8l + c) through the
//          table {i - 4} (vpermps reads exactly the 3 low index bits) indexed by w >> 3c. (The AVX-512 variant's
//          multi-row tables need 16- and 32-entry lookups, which AVX2 lacks.)
//          Per group t = sum_k x_k (q_k - c), then acc += s * (t - (z - c) * sum_k x_k) in column order.
// Partial chunks at the right edge are copied into a zero-padded local buffer, so nothing past a row is read.
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "dense_float_common.h"
#include "qk/kernels.h"
#include "sgemm_avx2_kernels.h"

namespace qk {
namespace avx2 {
namespace {

using dense_float::Epilogue;
using sgemm_common::ceil_div;

using Policy = SgemmTile;  // 6 x 16 float micro-kernel (NR = 16: pack() fills 16 columns)

constexpr int64_t kStrip = 2048;

// n (<= 16) bytes from p, zero padded to 16.
inline __m128i load_partial(const void* p, int64_t n) {
  alignas(16) uint8_t buf[16] = {};
  std::memcpy(buf, p, static_cast<std::size_t>(n));
  return _mm_load_si128(reinterpret_cast<const __m128i*>(buf));
}
inline __m128i load8(const void* p) { return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)); }
inline __m128i load16(const void* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
// The first n (<= 8) of 8 floats at p, the rest 0.
inline __m256 load_ps_partial(const float* p, int64_t n) {
  if (n >= 8) return _mm256_loadu_ps(p);
  alignas(32) float buf[8] = {};
  std::memcpy(buf, p, static_cast<std::size_t>(n) * sizeof(float));
  return _mm256_load_ps(buf);
}

// Per-lane constants of pack() for a 16-column panel starting at a multiple of 16 (see dense_gptq_avx512.cpp;
// 8 bits are simply widened, 4-bit nibbles split and re-interleaved): width 2: lane i of half h (column 8h + i) in dword lo_idx[h][i] at shift lo_sh[h][i]; width 3: the
// panel's 6 bytes broadcast to both 128-bit lanes, vpshufb puts bytes 3h + 3i/8 and the next into lane i
// (shuf3[h]), the level is at shift sh3[i] = 3i % 8.
struct PackTables {
  int32_t lo_idx[2][8], lo_sh[2][8];
};
constexpr PackTables make_pack_tables(int fb) {
  PackTables t{};
  for (int h = 0; h < 2; ++h) {
    for (int i = 0; i < 8; ++i) {
      const int bit = (8 * h + i) * fb;
      t.lo_idx[h][i] = bit / 32;
      t.lo_sh[h][i] = bit % 32;
    }
  }
  return t;
}
struct Pack3Tables {
  uint8_t shuf3[2][32];
  int32_t sh3[8];
};
constexpr Pack3Tables make_pack3_tables() {
  Pack3Tables t{};
  for (int h = 0; h < 2; ++h) {
    for (int i = 0; i < 8; ++i) {
      const int byte = 3 * h + (3 * i) / 8;
      t.shuf3[h][4 * i + 0] = static_cast<uint8_t>(byte);
      t.shuf3[h][4 * i + 1] = static_cast<uint8_t>(byte + 1);
      t.shuf3[h][4 * i + 2] = 0x80;
      t.shuf3[h][4 * i + 3] = 0x80;
    }
  }
  for (int i = 0; i < 8; ++i) t.sh3[i] = (3 * i) % 8;
  return t;
}
alignas(32) constexpr PackTables kPack2 = make_pack_tables(2);
alignas(32) constexpr Pack3Tables kPack3 = make_pack3_tables();

inline __m256i load_idx(const void* p) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(p)); }

// Interleave of two 8-lane vectors: lo = a0 b0 a1 b1 a2 b2 a3 b3, hi = a4 b4 ... a7 b7.
inline void interleave(__m256 a, __m256 b, __m256* lo, __m256* hi) {
  const __m256 ul = _mm256_unpacklo_ps(a, b);  // a0 b0 a1 b1 | a4 b4 a5 b5
  const __m256 uh = _mm256_unpackhi_ps(a, b);  // a2 b2 a3 b3 | a6 b6 a7 b7
  *lo = _mm256_permute2f128_ps(ul, uh, 0x20);
  *hi = _mm256_permute2f128_ps(ul, uh, 0x31);
}

// P vectors with lane l of vector c = column P*l + c (8P columns) -> the same columns in order, 8 per vector.
template <int P>
inline void to_columns(const __m256* v, __m256* out) {
  if constexpr (P == 1) {
    out[0] = v[0];
  } else {
    __m256 lo[P / 2], hi[P / 2];
    for (int c = 0; c < P / 2; ++c) interleave(v[c], v[c + P / 2], &lo[c], &hi[c]);
    to_columns<P / 2>(lo, out);
    to_columns<P / 2>(hi, out + P / 2);
  }
}

template <int kBits>
struct Gptq {
  const uint8_t* wq;
  int64_t N;
  int64_t rb;  // bytes per runtime row
  const float* scale;
  const uint8_t* zero;
  int64_t group;
  int group_shift;  // log2(group) when group is a power of two (the usual 32/64/128), else -1

  // The group of row k (pack() runs once per row and panel: a shift instead of a 64-bit division there).
  int64_t group_of(int64_t k) const { return group_shift >= 0 ? k >> group_shift : k / group; }

  static constexpr int kPer = kBits == 3 ? 8 : 8 / kBits;     // columns per widened dword lane
  static constexpr int64_t kChunk = 8 * kPer;                 // columns per GEMV chunk: 8, 16, 32, 64
  static constexpr int64_t kChunkBytes = kChunk * kBits / 8;  // 8, or 24 for 3 bits
  static constexpr int kCentre = 1 << (kBits - 1);  // the GEMV sums q - kCentre (see dense_gptq_avx512.cpp)
  static constexpr int64_t kGemvTmpFloats = 2 * kStrip;
  static constexpr float kUnscale = 1.0f;

  const void* row_ptr(int64_t k, int64_t j0) const { return wq + k * rb + j0 * kBits / 8; }
  int64_t row_bytes(int64_t width) const { return ceil_div(width * kBits, 8); }

  // dst[0..16) = (q - z) * s of columns j0 .. j0 + cols (j0 % 16 == 0), exactly the reference's floats.
  void pack(int64_t k, int64_t j0, int64_t cols, float* dst) const {
    const uint8_t* src = wq + k * rb + j0 * kBits / 8;
    const int64_t nbytes = ceil_div(cols * kBits, 8);
    constexpr int64_t kFullBytes = 16 * kBits / 8;  // a whole panel: 4, 6, 8 or 16 bytes
    __m128i b;
    if (nbytes == kFullBytes) {
      if (kBits == 8) {
        b = load16(src);
      } else {  // 4, 6 or 8 bytes in registers (a copy into a local would stall store forwarding)
        uint32_t u0;
        std::memcpy(&u0, src, 4);
        uint64_t u = u0;
        if (kFullBytes == 8) {
          uint32_t u1;
          std::memcpy(&u1, src + 4, 4);
          u |= uint64_t{u1} << 32;
        } else if (kFullBytes == 6) {
          uint16_t u1;
          std::memcpy(&u1, src + 4, 2);
          u |= uint64_t{u1} << 32;
        }
        b = _mm_cvtsi64_si128(static_cast<long long>(u));
      }
    } else {
      b = load_partial(src, nbytes);
    }
    const __m256i v = kBits == 3 ? _mm256_broadcastsi128_si256(b) : _mm256_zextsi128_si256(b);
    const __m256i fmask = _mm256_set1_epi32((1 << kBits) - 1);
    const int64_t g = group_of(k);
    const uint8_t* z = zero + g * N + j0;
    const float* s = scale + g * N + j0;
    const __m128i zb = cols == 16 ? load16(z) : load_partial(z, cols);
    __m256i q4[2];
    if (kBits == 4) {  // bytes widened once, nibbles split and re-interleaved (as dense_w4g's panel)
      const __m256i w = _mm256_cvtepu8_epi32(_mm256_castsi256_si128(v));
      const __m256i lo = _mm256_and_si256(w, fmask), hi = _mm256_srli_epi32(w, 4);
      const __m256i ul = _mm256_unpacklo_epi32(lo, hi);  // cols 0-3 | 8-11
      const __m256i uh = _mm256_unpackhi_epi32(lo, hi);  // cols 4-7 | 12-15
      q4[0] = _mm256_permute2x128_si256(ul, uh, 0x20);
      q4[1] = _mm256_permute2x128_si256(ul, uh, 0x31);
    }
    for (int h = 0; h < 2; ++h) {
      __m256i q;
      if (kBits == 8) {
        q = _mm256_cvtepu8_epi32(h == 0 ? _mm256_castsi256_si128(v) : _mm_srli_si128(_mm256_castsi256_si128(v), 8));
      } else if (kBits == 4) {
        q = q4[h];
      } else if (kBits == 3) {
        q = _mm256_and_si256(
            _mm256_srlv_epi32(_mm256_shuffle_epi8(v, load_idx(kPack3.shuf3[h])), load_idx(kPack3.sh3)), fmask);
      } else {
        q = _mm256_and_si256(
            _mm256_srlv_epi32(_mm256_permutevar8x32_epi32(v, load_idx(kPack2.lo_idx[h])), load_idx(kPack2.lo_sh[h])),
            fmask);
      }
      // q - z in int32 then one conversion: the same float as float(q) - float(z) (small integers, exact).
      const __m256i zi = _mm256_cvtepu8_epi32(h == 0 ? zb : _mm_srli_si128(zb, 8));
      const __m256 d = _mm256_cvtepi32_ps(_mm256_sub_epi32(q, zi));
      const int64_t n = cols - 8 * h;
      const __m256 sv = n >= 8 ? _mm256_loadu_ps(s + 8 * h) : load_ps_partial(s + 8 * h, n < 0 ? 0 : n);
      _mm256_store_ps(dst + 8 * h, _mm256_mul_ps(d, sv));
    }
  }

  // The chunk's kChunkBytes row bytes at p (valid: all of them) widened to 8 dword lanes, lane l holding the
  // levels of columns kPer*l .. kPer*l + kPer - 1 at bits kBits*c.
  static inline __m256i widen(const uint8_t* p) {
    if (kBits == 3) {
      // bytes 0..15 and 8..23; lane 0 takes bytes 0..11 of the first, lane 1 bytes 12..23 = 4..15 of the second.
      const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(load16(p)), load16(p + 8), 1);
      const __m256i shuf = _mm256_set_epi8(-128, 15, 14, 13, -128, 12, 11, 10, -128, 9, 8, 7, -128, 6, 5, 4,
                                           -128, 11, 10, 9, -128, 8, 7, 6, -128, 5, 4, 3, -128, 2, 1, 0);
      return _mm256_shuffle_epi8(b, shuf);
    } else {
      // 8 bits: byte ^ 0x80, 4 bits: byte ^ 0x88, sign-extended: centred levels q - kCentre (8 bits) or two
      // nibbles whose signed values are q - 8 (4 bits; see rows_pass).
      if (kBits == 8) return _mm256_cvtepi8_epi32(_mm_xor_si128(load8(p), _mm_set1_epi8(-128)));
      if (kBits == 4) return _mm256_cvtepi8_epi32(_mm_xor_si128(load8(p), _mm_set1_epi8(-120)));
      return _mm256_cvtepu8_epi32(load8(p));
    }
  }

  // One GEMV pass of R rows over `chunks` chunks: t[chunk][vector c][lane l] += x_k * q(k, column kPer*l + c).
  template <int R>
  static void rows_pass(const uint8_t* const* rows, const __m256* xs, float* t, int64_t chunks) {
    // vpermps reads the low 3 index bits: the centred level for 3 bits, the low 2 bits' for 2.
    const __m256 tbl = kBits == 3 ? _mm256_set_ps(3, 2, 1, 0, -1, -2, -3, -4) : _mm256_set_ps(1, 0, -1, -2, 1, 0, -1, -2);
    for (int64_t c = 0; c < chunks; ++c) {
      float* tc = t + c * kChunk;
      __m256 acc[kPer];
      for (int v = 0; v < kPer; ++v) acc[v] = _mm256_load_ps(tc + 8 * v);
      for (int r = 0; r < R; ++r) {
        const __m256i w = widen(rows[r] + c * kChunkBytes);
        if (kBits == 8) {
          acc[0] = _mm256_fmadd_ps(xs[r], _mm256_cvtepi32_ps(w), acc[0]);
        } else if (kBits == 4) {
          // (q ^ 8) read as a signed nibble is q - 8: arithmetic shifts extract both.
          const __m256i lo = _mm256_srai_epi32(_mm256_slli_epi32(w, 28), 28);
          acc[0] = _mm256_fmadd_ps(xs[r], _mm256_cvtepi32_ps(lo), acc[0]);
          acc[1] = _mm256_fmadd_ps(xs[r], _mm256_cvtepi32_ps(_mm256_srai_epi32(w, 4)), acc[1]);
        } else {
          for (int v = 0; v < kPer; ++v) {
            const __m256 q = _mm256_permutevar8x32_ps(tbl, v == 0 ? w : _mm256_srli_epi32(w, kBits * v));
            acc[v] = _mm256_fmadd_ps(xs[r], q, acc[v]);
          }
        }
      }
      for (int v = 0; v < kPer; ++v) _mm256_store_ps(tc + 8 * v, acc[v]);
    }
  }

  void gemv(int64_t k0, int64_t k1, int64_t j0, int64_t j1, const float* x, float* acc, float* tmp) const {
    float* const a = tmp;
    float* const t = tmp + kStrip;
    for (int64_t s0 = j0; s0 < j1; s0 += kStrip) {  // s0 % 64 == 0
      const int64_t sw = std::min(kStrip, j1 - s0);
      const int64_t lb = ceil_div(sw * kBits, 8);
      const int64_t full = lb / kChunkBytes, rem = lb - full * kChunkBytes;
      const int64_t nchunks = ceil_div(lb, kChunkBytes);
      const std::size_t strip_bytes = static_cast<std::size_t>(nchunks * kChunk) * sizeof(float);
      std::memset(a, 0, strip_bytes);
      for (int64_t ka = k0; ka < k1;) {
        const int64_t g = ka / group;
        const int64_t kb = std::min(k1, (g + 1) * group);
        std::memset(t, 0, strip_bytes);
        auto step = [&](auto rc, int64_t k) {
          constexpr int R = decltype(rc)::value;
          const uint8_t* rows[R];
          __m256 xs[R];
          for (int r = 0; r < R; ++r) {
            rows[r] = wq + (k + r) * rb + s0 * kBits / 8;
            xs[r] = _mm256_set1_ps(x[k + r]);
          }
          rows_pass<R>(rows, xs, t, full);
          if (rem != 0) {  // the partial chunk through zero-padded copies
            alignas(32) uint8_t pad[R][kChunkBytes] = {};
            const uint8_t* prow[R];
            for (int r = 0; r < R; ++r) {
              std::memcpy(pad[r], rows[r] + full * kChunkBytes, static_cast<std::size_t>(rem));
              prow[r] = pad[r];
            }
            rows_pass<R>(prow, xs, t + full * kChunk, 1);
          }
        };
        int64_t k = ka;
        for (; k + 4 <= kb; k += 4) step(std::integral_constant<int, 4>(), k);
        for (; k < kb; ++k) step(std::integral_constant<int, 1>(), k);

        float sx = 0.0f;
        for (int64_t kk = ka; kk < kb; ++kk) sx += x[kk];
        const __m256 vsx = _mm256_set1_ps(sx);
        const __m256i centre = _mm256_set1_epi32(kCentre);
        const uint8_t* zg = zero + g * N + s0;
        const float* sg = scale + g * N + s0;
        for (int64_t c = 0; c < nchunks; ++c) {  // a += s * (t - (z - c) * sum x), in column order
          __m256 tl[kPer], tv[kPer];
          for (int v = 0; v < kPer; ++v) tl[v] = _mm256_load_ps(t + c * kChunk + 8 * v);
          to_columns<kPer>(tl, tv);
          for (int v = 0; v < kPer; ++v) {
            const int64_t col = c * kChunk + 8 * v;
            if (col >= sw) break;
            const int64_t n = std::min<int64_t>(8, sw - col);
            __m256 z, s;
            if (n == 8) {
              z = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(load8(zg + col)), centre));
              s = _mm256_loadu_ps(sg + col);
            } else {
              z = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(load_partial(zg + col, n)), centre));
              s = load_ps_partial(sg + col, n);
            }
            const __m256 d = _mm256_fnmadd_ps(z, vsx, tv[v]);
            _mm256_store_ps(a + col, _mm256_fmadd_ps(s, d, _mm256_load_ps(a + col)));
          }
        }
        ka = kb;
      }
      std::memcpy(acc + (s0 - j0), a, static_cast<std::size_t>(sw) * sizeof(float));
    }
  }
};

template <int kBits>
Status run(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* wq, const float* scale,
           const uint8_t* zero, int64_t group, const float* bias, float* y, ThreadPool* pool) {
  int shift = -1;
  if ((group & (group - 1)) == 0) {
    shift = 0;
    while ((int64_t{1} << shift) < group) ++shift;
  }
  const Gptq<kBits> fmt{wq, N, gptq_runtime_row_bytes(N, kBits), scale, zero, group, shift};
  const Epilogue epi{Epilogue::kNone, nullptr, 1.0f, bias};
  return dense_float::dense_driver<Policy>(fmt, M, N, K, x, y, epi, pool);
}

}  // namespace

Status dense_gptq(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* wq, int bits, const float* scale,
                  const uint8_t* zero, int64_t group, const float* bias, float* y, ThreadPool* pool) {
  switch (bits) {
    case 2: return run<2>(M, N, K, x, wq, scale, zero, group, bias, y, pool);
    case 3: return run<3>(M, N, K, x, wq, scale, zero, group, bias, y, pool);
    case 4: return run<4>(M, N, K, x, wq, scale, zero, group, bias, y, pool);
    case 8: return run<8>(M, N, K, x, wq, scale, zero, group, bias, y, pool);
    default: return QK_STATUS_INVALID_ARGUMENT;
  }
}

}  // namespace avx2
}  // namespace qk
