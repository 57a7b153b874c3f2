// quantkit — GPTQ weight-only Dense forward (dense_gptq, 2/3/4/8 bits) over the GPTQ runtime layout (kernels.h),
// AVX-512 variant. The blocking, threading and the two paths (M >= 2: dequantize-while-packing blocked GEMM with
// sgemm's 14 x 32 micro-kernel; M == 1: streaming GEMV) are dense_float_common.h's; this file supplies the
// format (pack / gemv / row_ptr / row_bytes) for each bit width.
//
// GEMM panel (pack): 32 consecutive columns are expanded to their exact reference floats (q - z) * s (q - z in
// int32, one conversion, one product). 8 bits: vpmovzxbd; 4 bits: the nibbles of the widened bytes, interleaved
// back into column order with vpermt2d; 2 bits: lane i's level taken from the row bytes with one dword permute
// (vpermd) and one variable shift (vpsrlvd) from constant per-lane tables; 3-bit levels may straddle bytes, so
// there vpshufb puts the two bytes holding lane i's level into its dword.
//
// GEMV (memory bound; the packed bytes stream once): a column strip of the output stays in L1. The strip is
// walked in chunks of row bytes widened to 16 dword lanes, lane l holding the levels of kPer consecutive columns:
//   8 bits  16 bytes ^ 0x80, vpmovsxbd, one vector in column order, vcvtdq2ps;
//   4 bits  16 bytes, vpmovzxbd, two vectors (lane l = column 2l + c): w and w >> 4 index the 16-entry vpermps
//           table {0..15} (vpermps reads only the low 4 index bits, so no masking is needed);
//   2 bits  16 bytes, vpmovzxbd, four vectors (lane l = column 4l + c): w >> 2c indexes the table {i & 3};
//   3 bits  48 bytes (128 columns): vpermd moves each 12-byte run into its own 128-bit lane and vpshufb gives
//           each dword its 3 bytes (8 levels); eight vectors (lane l = column 8l + c): w >> 3c indexes {i & 7}.
// So every width costs one shift, one vpermps and one FMA per 16 weights (plus the widening, amortized) when rows
// are taken one at a time. Narrow widths take several rows per lookup, the table holding the x-weighted sums
// (rows_pass_pairs, rows_pass_triples): 2 bits two rows per 16-entry table (one lookup and one add per 32
// weights), 3 bits three rows per 32-entry + 16-entry table pair (two lookups and two adds per 48 weights), which
// is what makes 2 and 3 bits cheaper per weight than 4 (whose nibble already fills the 4-bit vpermps index).
// No zero point per weight: per group, t = sum_k x_k * (q_k - c) is accumulated in the strip (in the chunk's lane
// order; c = 2^(bits-1) is folded into the tables, and into the sign-extension of byte ^ 0x80 for 8 bits), and at
// the group's end t is put back in column order (log2(kPer) levels of vpermt2ps interleaves) and folded in as
// acc += s * (t - (z - c) * sum_k x_k) (one fnmadd, one fmadd per column). That costs one multiply-add pair per
// group and column instead of a subtraction per weight; the result differs from the reference only by rounding,
// on the scale of sum_k |x_k| * s * (|q - c| + |z - c|) (compared by tolerance; centring halves it).
#include "avx512_intrin.h"

#include <cstring>
#include <type_traits>

#include "dense_float_common.h"
#include "qk/kernels.h"
#include "sgemm_avx512_kernels.h"

namespace qk {
namespace avx512 {
namespace {

using dense_float::Epilogue;
using sgemm_common::ceil_div;

using Policy = SgemmTile;  // 14 x 32 float micro-kernel (NR = 32: pack() fills 32 columns)

constexpr int64_t kStrip = 2048;  // GEMV column strip: acc + t = 16 KB, in L1

inline __mmask16 mask16(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u); }
inline __mmask32 mask32(int64_t n) {
  return n >= 32 ? __mmask32(0xFFFFFFFFu) : n <= 0 ? __mmask32(0) : __mmask32((1u << n) - 1u);
}

// Per-lane constants of pack() for a panel of 32 columns starting at a multiple of 32 (8 bits are simply widened,
// 4-bit nibbles split and re-interleaved). Width 2: lane i of half h (column 16h + i) has its level in dword
// lo_idx[h][i] of the loaded bytes at shift lo_sh[h][i]. Width 3
// (levels may straddle bytes): the 6 bytes of half h are broadcast to the four 128-bit lanes, vpshufb puts bytes
// (3i/8, 3i/8 + 1) of the half into lane i (shuf3[h]), and the level is at shift sh3[i] = 3i % 8.
struct PackTables {
  int32_t lo_idx[2][16], lo_sh[2][16];
};
constexpr PackTables make_pack_tables(int fb) {
  PackTables t{};
  for (int h = 0; h < 2; ++h) {
    for (int i = 0; i < 16; ++i) {
      const int bit = (16 * h + i) * fb;
      t.lo_idx[h][i] = bit / 32;
      t.lo_sh[h][i] = bit % 32;
    }
  }
  return t;
}
struct Pack3Tables {
  uint8_t shuf3[2][64];
  int32_t sh3[16];
};
constexpr Pack3Tables make_pack3_tables() {
  Pack3Tables t{};
  for (int h = 0; h < 2; ++h) {
    for (int i = 0; i < 16; ++i) {
      const int byte = 6 * h + (3 * i) / 8;
      t.shuf3[h][4 * i + 0] = static_cast<uint8_t>(byte);
      t.shuf3[h][4 * i + 1] = static_cast<uint8_t>(byte + 1);
      t.shuf3[h][4 * i + 2] = 0x80;
      t.shuf3[h][4 * i + 3] = 0x80;
    }
  }
  for (int i = 0; i < 16; ++i) t.sh3[i] = (3 * i) % 8;
  return t;
}
alignas(64) constexpr PackTables kPack2 = make_pack_tables(2);
alignas(64) constexpr Pack3Tables kPack3 = make_pack3_tables();

inline __m512i load_idx(const void* p) { return _mm512_load_si512(p); }

// Interleave of two 16-lane vectors: lo = a0 b0 a1 b1 ... a7 b7, hi = a8 b8 ... a15 b15.
inline void interleave(__m512 a, __m512 b, __m512* lo, __m512* hi) {
  const __m512i il = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i ih = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  *lo = _mm512_permutex2var_ps(a, il, b);
  *hi = _mm512_permutex2var_ps(a, ih, b);
}

// P vectors with lane l of vector c = column P*l + c (16P columns) -> the same columns in order, 16 per vector.
// One interleave level turns the pairs (c, c + P/2) into two halves of 8P columns each in the P/2 form.
template <int P>
inline void to_columns(const __m512* v, __m512* out) {
  if constexpr (P == 1) {
    out[0] = v[0];
  } else {
    __m512 lo[P / 2], hi[P / 2];
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

  static constexpr int kPer = kBits == 3 ? 8 : 8 / kBits;        // columns per widened dword lane
  static constexpr int64_t kChunk = 16 * kPer;                   // columns per GEMV chunk: 16, 32, 64, 128
  static constexpr int64_t kChunkBytes = kChunk * kBits / 8;     // 16, or 48 for 3 bits
  // The GEMV sums centred levels q - kCentre (kCentre = 2^(bits-1), free: it is folded into the tables) and
  // subtracts (z - kCentre) * sum x per group: the partial sums stay about half as large as with q itself, which
  // halves the cancellation when t and z * sum x are close.
  static constexpr int kCentre = 1 << (kBits - 1);
  static constexpr int64_t kGemvTmpFloats = 2 * kStrip;
  static constexpr float kUnscale = 1.0f;

  const void* row_ptr(int64_t k, int64_t j0) const { return wq + k * rb + j0 * kBits / 8; }
  int64_t row_bytes(int64_t width) const { return ceil_div(width * kBits, 8); }

  // dst[0..32) = (q - z) * s of columns j0 .. j0 + cols (j0 % 32 == 0), exactly the reference's floats.
  void pack(int64_t k, int64_t j0, int64_t cols, float* dst) const {
    const uint8_t* src = wq + k * rb + j0 * kBits / 8;  // j0 * kBits is a multiple of 8
    const int64_t nbytes = ceil_div(cols * kBits, 8);
    const __m512i fmask = _mm512_set1_epi32((1 << kBits) - 1);
    __m512i v;
    if (kBits == 3) {
      v = _mm512_broadcast_i32x4(_mm_maskz_loadu_epi8(mask16(nbytes), src));
    } else {
      v = _mm512_zextsi256_si512(_mm256_maskz_loadu_epi8(mask32(nbytes), src));
    }
    const int64_t g = group_of(k);
    const __mmask32 m = mask32(cols);
    const __m256i zb = _mm256_maskz_loadu_epi8(m, zero + g * N + j0);
    const float* s = scale + g * N + j0;
    __m512i q4[2];
    if (kBits == 4) {  // bytes widened once, nibbles split and re-interleaved (as dense_w4g's panel)
      const __m512i w = _mm512_cvtepu8_epi32(_mm512_castsi512_si128(v));
      const __m512i lo = _mm512_and_si512(w, fmask), hi = _mm512_srli_epi32(w, 4);
      q4[0] = _mm512_permutex2var_epi32(lo, _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0), hi);
      q4[1] = _mm512_permutex2var_epi32(lo, _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8), hi);
    }
    for (int h = 0; h < 2; ++h) {
      __m512i q;
      if (kBits == 8) {
        q = _mm512_cvtepu8_epi32(h == 0 ? _mm512_castsi512_si128(v) : _mm512_extracti32x4_epi32(v, 1));
      } else if (kBits == 4) {
        q = q4[h];
      } else if (kBits == 3) {
        q = _mm512_and_si512(
            _mm512_srlv_epi32(_mm512_shuffle_epi8(v, load_idx(kPack3.shuf3[h])), load_idx(kPack3.sh3)), fmask);
      } else {
        q = _mm512_and_si512(
            _mm512_srlv_epi32(_mm512_permutexvar_epi32(load_idx(kPack2.lo_idx[h]), v), load_idx(kPack2.lo_sh[h])),
            fmask);
      }
      const __m128i zh = h == 0 ? _mm256_castsi256_si128(zb) : _mm256_extracti128_si256(zb, 1);
      // q - z in int32 then one conversion: the same float as float(q) - float(z) (small integers, exact).
      const __m512 d = _mm512_cvtepi32_ps(_mm512_sub_epi32(q, _mm512_cvtepu8_epi32(zh)));
      const __m512 sv = _mm512_maskz_loadu_ps(static_cast<__mmask16>(m >> (16 * h)), s + 16 * h);
      _mm512_store_ps(dst + 16 * h, _mm512_mul_ps(d, sv));
    }
  }

  // The chunk's row bytes (kChunkBytes, the first n if kTail) widened to 16 dword lanes, lane l holding the
  // levels of columns kPer*l .. kPer*l + kPer - 1 at bits kBits*c (c = 0 .. kPer-1).
  template <bool kTail>
  static inline __m512i widen(const uint8_t* p, __mmask64 tm) {
    if (kBits == 3) {
      // 12-byte runs to the 128-bit lanes (dwords 3m .. 3m+2 -> lane m), then 3 bytes to each dword.
      const __m512i spread = _mm512_set_epi32(0, 11, 10, 9, 0, 8, 7, 6, 0, 5, 4, 3, 0, 2, 1, 0);
      const __m512i shuf = _mm512_broadcast_i32x4(
          _mm_set_epi8(-128, 11, 10, 9, -128, 8, 7, 6, -128, 5, 4, 3, -128, 2, 1, 0));
      const __m512i b = _mm512_maskz_loadu_epi8(kTail ? tm : __mmask64(0xFFFFFFFFFFFFull), p);
      return _mm512_shuffle_epi8(_mm512_permutexvar_epi32(spread, b), shuf);
    } else {
      const __m128i b = kTail ? _mm_maskz_loadu_epi8(static_cast<__mmask16>(tm), p)
                              : _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      // 8 bits: byte ^ 0x80 sign-extended is the centred level q - 128 (see kCentre).
      if (kBits == 8) return _mm512_cvtepi8_epi32(_mm_xor_si128(b, _mm_set1_epi8(-128)));
      return _mm512_cvtepu8_epi32(b);
    }
  }

  // 3 bits, rows in triples (a, b, c) = rows (k, k+1, k+2): their 9 bits per column go through two lookups,
  // a 32-entry vpermt2ps table T1 indexed by a's level and b's low two bits (5 bits) and a 16-entry vpermps
  // table T2 indexed by b's high bit and c's level (4 bits):
  //   T1[i] = x_a * ((i & 7) - 4) + x_b * ((i >> 3) - 4),   T2[j] = x_b * 4 * (j & 1) + x_c * ((j >> 1) - 4)
  // so two lookups and two adds cover 48 weights. In the widened lanes level f sits at bits 3f; the indices of
  // the even levels f (bits 3f .. 3f+4, 6 apart, so they do not overlap) are assembled for all of them at once
  // by one bit select each, X = sel(A, B << 3) and Y = sel(B >> 2, C << 1), and likewise for the odd levels;
  // a shift by 3f then brings level f's index to the bottom (the lookups read only the low 5 / 4 bits).
  template <int R, bool kTail>
  static void rows_pass_triples(const uint8_t* const* rows, const __m512* xs, float* t, int64_t chunks,
                                __mmask64 tm) {
    constexpr int Q = R / 3;
    // Bit-select masks (1 = first operand): even levels' X takes A at bits 3f .. 3f+2 (f even), odd levels' at
    // 3f .. 3f+2 (f odd); Y takes B >> 2 at bit 3f.
    const __m512i mxe = _mm512_set1_epi32(0x001C71C7);  // bits 0-2, 6-8, 12-14, 18-20
    const __m512i mxo = _mm512_set1_epi32(0x00E38E38);  // bits 3-5, 9-11, 15-17, 21-23
    const __m512i mye = _mm512_set1_epi32(0x00041041);  // bits 0, 6, 12, 18
    const __m512i myo = _mm512_set1_epi32(0x00208208);  // bits 3, 9, 15, 21
    __m512 t1a[Q], t1b[Q], t2[Q];
    for (int q = 0; q < Q; ++q) {
      const __m512 xa = xs[3 * q], xb = xs[3 * q + 1], xc = xs[3 * q + 2];
      // i = 0..15: x_a * ((i & 7) - 4) + x_b * ((i >> 3) - 4); i = 16..31 the same with (i >> 3) = 2, 3.
      const __m512 la = _mm512_set_ps(3, 2, 1, 0, -1, -2, -3, -4, 3, 2, 1, 0, -1, -2, -3, -4);
      const __m512 lb0 = _mm512_set_ps(-3, -3, -3, -3, -3, -3, -3, -3, -4, -4, -4, -4, -4, -4, -4, -4);
      const __m512 lb1 = _mm512_set_ps(-1, -1, -1, -1, -1, -1, -1, -1, -2, -2, -2, -2, -2, -2, -2, -2);
      t1a[q] = _mm512_fmadd_ps(xb, lb0, _mm512_mul_ps(xa, la));
      t1b[q] = _mm512_fmadd_ps(xb, lb1, _mm512_mul_ps(xa, la));
      const __m512 hb = _mm512_set_ps(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
      const __m512 lc = _mm512_set_ps(3, 3, 2, 2, 1, 1, 0, 0, -1, -1, -2, -2, -3, -3, -4, -4);
      t2[q] = _mm512_fmadd_ps(xc, lc, _mm512_mul_ps(xb, hb));
    }
    for (int64_t c = 0; c < chunks; ++c) {
      float* tc = t + c * kChunk;
      __m512 acc[8];
      for (int f = 0; f < 8; ++f) acc[f] = _mm512_load_ps(tc + 16 * f);
      for (int q = 0; q < Q; ++q) {
        const __m512i A = widen<kTail>(rows[3 * q] + c * kChunkBytes, tm);
        const __m512i B = widen<kTail>(rows[3 * q + 1] + c * kChunkBytes, tm);
        const __m512i C = widen<kTail>(rows[3 * q + 2] + c * kChunkBytes, tm);
        const __m512i b3 = _mm512_slli_epi32(B, 3), b2 = _mm512_srli_epi32(B, 2), c1 = _mm512_slli_epi32(C, 1);
        const __m512i xe = _mm512_ternarylogic_epi32(mxe, A, b3, 0xCA);  // mask ? A : B << 3
        const __m512i xo = _mm512_ternarylogic_epi32(mxo, A, b3, 0xCA);
        const __m512i ye = _mm512_ternarylogic_epi32(mye, b2, c1, 0xCA);  // mask ? B >> 2 : C << 1
        const __m512i yo = _mm512_ternarylogic_epi32(myo, b2, c1, 0xCA);
        for (int f = 0; f < 8; ++f) {
          const __m512i x = f == 0 ? xe : _mm512_srli_epi32(f % 2 == 0 ? xe : xo, 3 * f);
          const __m512i y = f == 0 ? ye : _mm512_srli_epi32(f % 2 == 0 ? ye : yo, 3 * f);
          acc[f] = _mm512_add_ps(acc[f], _mm512_permutex2var_ps(t1a[q], x, t1b[q]));
          acc[f] = _mm512_add_ps(acc[f], _mm512_permutexvar_ps(y, t2[q]));
        }
      }
      for (int f = 0; f < 8; ++f) _mm512_store_ps(tc + 16 * f, acc[f]);
    }
  }

  // 2 bits, rows in pairs (k, k+1): one 16-entry vpermps table per pair, T[i] = x_k * ((i & 3) - 2) +
  // x_{k+1} * ((i >> 2) - 2), indexed by the nibble (field c of row k) | (field c of row k+1) << 2, gives both
  // rows' contributions for 16 columns at once, so one lookup and one add cover 32 weights. The nibbles come
  // from two bit selects per 16-byte pair: m0 = (a & 0x33) | ((b << 2) & 0xCC) holds fields 0 and 2 of both
  // rows (low and high nibble of each byte), m1 = ((a >> 2) & 0x33) | (b & 0xCC) fields 1 and 3 (16-bit
  // shifts are fine: the bits they carry across bytes land in the bits the select drops).
  template <int R, bool kTail>
  static void rows_pass_pairs(const uint8_t* const* rows, const __m512* xs, float* t, int64_t chunks,
                              __mmask64 tm) {
    constexpr int P = R / 2;
    const __m512 ta = _mm512_set_ps(1, 0, -1, -2, 1, 0, -1, -2, 1, 0, -1, -2, 1, 0, -1, -2);
    const __m512 tb = _mm512_set_ps(1, 1, 1, 1, 0, 0, 0, 0, -1, -1, -1, -1, -2, -2, -2, -2);
    __m512 tbl[P];
    for (int p = 0; p < P; ++p) tbl[p] = _mm512_fmadd_ps(xs[2 * p + 1], tb, _mm512_mul_ps(xs[2 * p], ta));
    const __m128i sel = _mm_set1_epi8(0x33);
    for (int64_t c = 0; c < chunks; ++c) {
      float* tc = t + c * kChunk;
      __m512 a0 = _mm512_load_ps(tc), a1 = _mm512_load_ps(tc + 16);
      __m512 a2 = _mm512_load_ps(tc + 32), a3 = _mm512_load_ps(tc + 48);
      for (int p = 0; p < P; ++p) {
        const uint8_t* ra = rows[2 * p] + c * 16;
        const uint8_t* rb2 = rows[2 * p + 1] + c * 16;
        const __m128i a = kTail ? _mm_maskz_loadu_epi8(static_cast<__mmask16>(tm), ra)
                                : _mm_loadu_si128(reinterpret_cast<const __m128i*>(ra));
        const __m128i b = kTail ? _mm_maskz_loadu_epi8(static_cast<__mmask16>(tm), rb2)
                                : _mm_loadu_si128(reinterpret_cast<const __m128i*>(rb2));
        const __m128i m0 = _mm_ternarylogic_epi32(sel, a, _mm_slli_epi16(b, 2), 0xCA);  // sel ? a : b << 2
        const __m128i m1 = _mm_ternarylogic_epi32(sel, _mm_srli_epi16(a, 2), b, 0xCA);  // sel ? a >> 2 : b
        const __m512i w0 = _mm512_cvtepu8_epi32(m0), w1 = _mm512_cvtepu8_epi32(m1);
        a0 = _mm512_add_ps(a0, _mm512_permutexvar_ps(w0, tbl[p]));
        a2 = _mm512_add_ps(a2, _mm512_permutexvar_ps(_mm512_srli_epi32(w0, 4), tbl[p]));
        a1 = _mm512_add_ps(a1, _mm512_permutexvar_ps(w1, tbl[p]));
        a3 = _mm512_add_ps(a3, _mm512_permutexvar_ps(_mm512_srli_epi32(w1, 4), tbl[p]));
      }
      _mm512_store_ps(tc, a0);
      _mm512_store_ps(tc + 16, a1);
      _mm512_store_ps(tc + 32, a2);
      _mm512_store_ps(tc + 48, a3);
    }
  }

  // One GEMV pass of R rows over `chunks` chunks: t[chunk][vector c][lane l] += x_k * q(k, column kPer*l + c).
  // rows[r]: row r's bytes at the strip start.
  template <int R, bool kTail>
  static void rows_pass(const uint8_t* const* rows, const __m512* xs, float* t, int64_t chunks, __mmask64 tm) {
    if constexpr (kBits == 2 && R % 2 == 0) {
      rows_pass_pairs<R, kTail>(rows, xs, t, chunks, tm);
      return;
    }
    if constexpr (kBits == 3 && R % 3 == 0) {
      rows_pass_triples<R, kTail>(rows, xs, t, chunks, tm);
      return;
    }
    // vpermps reads the low 4 index bits: the table maps them to the centred level (low kBits bits) - kCentre.
    const __m512 tbl = kBits == 4   ? _mm512_set_ps(7, 6, 5, 4, 3, 2, 1, 0, -1, -2, -3, -4, -5, -6, -7, -8)
                       : kBits == 3 ? _mm512_set_ps(3, 2, 1, 0, -1, -2, -3, -4, 3, 2, 1, 0, -1, -2, -3, -4)
                                    : _mm512_set_ps(1, 0, -1, -2, 1, 0, -1, -2, 1, 0, -1, -2, 1, 0, -1, -2);
    for (int64_t c = 0; c < chunks; ++c) {
      float* tc = t + c * kChunk;
      __m512 acc[kPer];
      for (int v = 0; v < kPer; ++v) acc[v] = _mm512_load_ps(tc + 16 * v);
      for (int r = 0; r < R; ++r) {
        const __m512i w = widen<kTail>(rows[r] + c * kChunkBytes, tm);
        if (kBits == 8) {
          acc[0] = _mm512_fmadd_ps(xs[r], _mm512_cvtepi32_ps(w), acc[0]);
        } else {
          for (int v = 0; v < kPer; ++v) {
            const __m512 q = _mm512_permutexvar_ps(v == 0 ? w : _mm512_srli_epi32(w, v * kBits), tbl);
            acc[v] = _mm512_fmadd_ps(xs[r], q, acc[v]);
          }
        }
      }
      for (int v = 0; v < kPer; ++v) _mm512_store_ps(tc + 16 * v, acc[v]);
    }
  }

  void gemv(int64_t k0, int64_t k1, int64_t j0, int64_t j1, const float* x, float* acc, float* tmp) const {
    float* const a = tmp;           // column order, the running sum of the strip
    float* const t = tmp + kStrip;  // chunk lane order, the current group's sum_k x_k q_k
    for (int64_t s0 = j0; s0 < j1; s0 += kStrip) {  // s0 % 64 == 0
      const int64_t sw = std::min(kStrip, j1 - s0);
      const int64_t lb = ceil_div(sw * kBits, 8);  // bytes of the strip in a row
      const int64_t full = lb / kChunkBytes;
      const int64_t rem = lb - full * kChunkBytes;
      const __mmask64 tm = rem == 0 ? __mmask64(0) : __mmask64((1ull << rem) - 1u);
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
          __m512 xs[R];
          for (int r = 0; r < R; ++r) {
            rows[r] = wq + (k + r) * rb + s0 * kBits / 8;
            xs[r] = _mm512_set1_ps(x[k + r]);
          }
          rows_pass<R, false>(rows, xs, t, full, tm);
          if (rem != 0) {
            for (int r = 0; r < R; ++r) rows[r] += full * kChunkBytes;
            rows_pass<R, true>(rows, xs, t + full * kChunk, 1, tm);
          }
        };
        int64_t k = ka;
        if constexpr (kBits == 3) {  // triples (see rows_pass_triples)
          for (; k + 6 <= kb; k += 6) step(std::integral_constant<int, 6>(), k);
          if (k + 3 <= kb) {
            step(std::integral_constant<int, 3>(), k);
            k += 3;
          }
        } else {
          for (; k + 8 <= kb; k += 8) step(std::integral_constant<int, 8>(), k);
          if (k + 4 <= kb) {
            step(std::integral_constant<int, 4>(), k);
            k += 4;
          }
        }
        for (; k < kb; ++k) step(std::integral_constant<int, 1>(), k);

        float sx = 0.0f;
        for (int64_t kk = ka; kk < kb; ++kk) sx += x[kk];
        const __m512 vsx = _mm512_set1_ps(sx);
        const __m512i centre = _mm512_set1_epi32(kCentre);
        const uint8_t* zg = zero + g * N + s0;
        const float* sg = scale + g * N + s0;
        for (int64_t c = 0; c < nchunks; ++c) {  // a += s * (t - (z - c) * sum x), in column order
          __m512 tl[kPer], tv[kPer];
          for (int v = 0; v < kPer; ++v) tl[v] = _mm512_load_ps(t + c * kChunk + 16 * v);
          to_columns<kPer>(tl, tv);
          for (int v = 0; v < kPer; ++v) {
            const int64_t col = c * kChunk + 16 * v;
            if (col >= sw) break;
            const __mmask16 m = mask16(sw - col);
            const __m512 z = _mm512_cvtepi32_ps(
                _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, zg + col)), centre));
            const __m512 s = _mm512_maskz_loadu_ps(m, sg + col);
            const __m512 d = _mm512_fnmadd_ps(z, vsx, tv[v]);
            _mm512_store_ps(a + col, _mm512_fmadd_ps(s, d, _mm512_load_ps(a + col)));
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

}  // namespace avx512
}  // namespace qk
