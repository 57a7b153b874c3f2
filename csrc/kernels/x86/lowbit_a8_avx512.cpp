// quantkit — dense_lowbit_a8 (qk/lowbit_a8.h), AVX-512 VNNI variant: int4 grouped / GPTQ 2/3/4/8-bit weights
// through int8 dot products (vpdpbusd), bit-exact with qk::ref::dense_lowbit_a8.
//
// Steps of one call:
// 1. Activations: absmax_quantize per row (int8, [-127, 127]), copied into rows whose groups are zero-padded to a
//    multiple of 4 inputs (a vpdpbusd quad never straddles two groups), with the per-group row sums rs as float.
// 2. Threads take blocks of 64 output columns. For its block a thread expands the weights once into a panel in
//    L2: per quad of 4 inputs (within a group), 4 zmm of 16 dwords, each dword the 4 levels (unsigned bytes) of
//    one column. Levels come out of the packed rows with one vpermb + one vpmultishiftqb + one and (VBMI; every
//    width alike: qword q receives the `bits` bytes holding levels 8q..8q+7 and the multishift pulls level e from
//    bit e*bits), and 4 rows are interleaved with 8 unpacks. The unpacks work within 128-bit lanes, so dword d of
//    panel vector a holds column 16*(d/4) + 4a + d%4; scales and zero points are packed in the same order and
//    the result is put back in column order (a 4x4 transpose of 128-bit blocks) when it is written.
// 3. Micro-kernel: 6 rows x 64 columns, 24 int32 accumulators. Per quad: 4 panel loads, 6 broadcasts of 4
//    activation bytes, 24 vpdpbusd (levels = the unsigned operand, activations = the signed one, so no
//    correction of a +128 offset is needed). Per group and accumulator: cvtdq2ps, one FMA with the zero point
//    (t = acc - c * rs) and one with the scale into float accumulators kept in a 6 x 64 L1 tile.
// What limits it: at M >= 128 the vpdpbusd port pressure plus the per-group epilogue (3 vector ops per 4 x 16
//    quads: 9% at group 128, 27% at group 32); at small M the panel expansion, which is done once per call and
//    column block and amortized over M / 6 row tiles (see docs/lowbit-a8.md for measurements).
#include "avx512_intrin.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "qk/kernels.h"
#include "qk/lowbit_a8.h"
#include "qk/quant_math.h"
#include "qk/threadpool.h"

namespace qk {
namespace avx512 {
namespace {

constexpr int kMR = 6;   // rows per micro-tile
constexpr int kNB = 64;  // columns per block (4 zmm of 16 int32)

struct Groups {
  int64_t G = 0, group = 1, K = 0;
  int64_t L4 = 0;    // padded length of a full group (multiple of 4)
  int64_t last4 = 0; // padded length of the last group
  int64_t Kp = 0;    // padded row length
  int64_t start(int64_t g) const { return g * group; }
  int64_t end(int64_t g) const { return std::min(K, (g + 1) * group); }
  int64_t poff(int64_t g) const { return g * L4; }
  int64_t plen(int64_t g) const { return g + 1 == G ? last4 : L4; }
};

Groups make_groups(int64_t K, int64_t group) {
  Groups gr;
  gr.K = K;
  gr.group = group;
  gr.G = K == 0 ? 0 : (K + group - 1) / group;
  gr.L4 = (group + 3) / 4 * 4;
  if (gr.G > 0) {
    const int64_t lastlen = K - (gr.G - 1) * group;
    gr.last4 = (lastlen + 3) / 4 * 4;
    gr.Kp = (gr.G - 1) * gr.L4 + gr.last4;
  }
  return gr;
}

inline __mmask64 mask64(int64_t n) { return n >= 64 ? ~__mmask64(0) : n <= 0 ? __mmask64(0) : (__mmask64(1) << n) - 1; }
inline __mmask16 mask16(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u); }

// ---- weight panel ----------------------------------------------------------------------------------------------

constexpr int64_t kPrefetchRows = 64;  // panel packing: rows ahead

struct Format {
  const uint8_t* w;
  int64_t N, K, rb;
  int bits;
  bool keras_signed;
};

// Scalar row expansion (CPUs without VBMI): levels of columns j0 .. j0 + n - 1 as bytes, 0 beyond n.
__m512i row_levels_scalar(const Format& f, int64_t k, int64_t j0, int64_t n) {
  alignas(64) uint8_t tmp[64] = {};
  const uint8_t* row = f.w + k * f.rb;
  const int mask = (1 << f.bits) - 1;
  for (int64_t c = 0; c < n; ++c) {
    const int64_t bit = f.bits * (j0 + c);
    const int sh = static_cast<int>(bit % 8);
    int v = row[bit / 8] >> sh;
    if (sh + f.bits > 8) v |= row[bit / 8 + 1] << (8 - sh);
    v &= mask;
    tmp[c] = static_cast<uint8_t>(f.keras_signed ? v ^ 8 : v);
  }
  return _mm512_load_si512(tmp);
}

struct VbmiTables {
  alignas(64) uint8_t perm[64];   // qword q <- bytes q*bits .. q*bits + bits - 1
  alignas(64) uint8_t shift[64];  // byte e of each qword <- bit e * bits
};
VbmiTables make_vbmi_tables(int bits) {
  VbmiTables t{};
  for (int q = 0; q < 8; ++q) {
    for (int e = 0; e < 8; ++e) {
      t.perm[8 * q + e] = static_cast<uint8_t>(q * bits + std::min(e, bits - 1));
      t.shift[8 * q + e] = static_cast<uint8_t>(e * bits);
    }
  }
  return t;
}

__attribute__((target("avx512vbmi"))) inline __m512i row_levels_vbmi(const Format& f, const VbmiTables& t, int64_t k,
                                                                      int64_t j0) {
  const uint8_t* row = f.w + k * f.rb;
  // j0 is a multiple of 64, so the block starts at byte bits * j0 / 8 = 8 * bits * (j0 / 64).
  const int64_t b0 = f.bits * j0 / 8;
  const int64_t nb = std::min<int64_t>(8 * f.bits, f.rb - b0);
  // The rows are rb bytes apart (a new page every few rows): without a software prefetch every row is a
  // cache miss served one after the other (measured: packing took 5x the M = 16 compute).
  if (k + kPrefetchRows < f.K) _mm_prefetch(reinterpret_cast<const char*>(row + kPrefetchRows * f.rb + b0), _MM_HINT_T0);
  const __m512i raw = _mm512_maskz_loadu_epi8(mask64(nb), row + b0);
  if (f.bits == 8) return raw;
  const __m512i spread = _mm512_permutexvar_epi8(_mm512_load_si512(t.perm), raw);
  const __m512i lv = _mm512_multishift_epi64_epi8(_mm512_load_si512(t.shift), spread);
  const __m512i m = _mm512_set1_epi8(static_cast<char>((1 << f.bits) - 1));
  if (f.keras_signed) return _mm512_ternarylogic_epi32(lv, m, _mm512_set1_epi8(8), 0x6A);  // (a & b) ^ c
  return _mm512_and_si512(lv, m);
}

__attribute__((always_inline)) inline void interleave_store(__m512i r0, __m512i r1, __m512i r2, __m512i r3, uint8_t* dst) {
  const __m512i t0 = _mm512_unpacklo_epi8(r0, r1), t1 = _mm512_unpackhi_epi8(r0, r1);
  const __m512i t2 = _mm512_unpacklo_epi8(r2, r3), t3 = _mm512_unpackhi_epi8(r2, r3);
  _mm512_store_si512(dst, _mm512_unpacklo_epi16(t0, t2));
  _mm512_store_si512(dst + 64, _mm512_unpackhi_epi16(t0, t2));
  _mm512_store_si512(dst + 128, _mm512_unpacklo_epi16(t1, t3));
  _mm512_store_si512(dst + 192, _mm512_unpackhi_epi16(t1, t3));
}

// Column of panel position p (vector a = p / 16, dword d = p % 16): 16 * (d / 4) + 4 * a + d % 4.
inline int panel_col(int p) { return 16 * ((p % 16) / 4) + 4 * (p / 16) + p % 4; }

// The panels of S adjacent blocks (panel s at panel + s * Kp * 64), row(k, s) giving the level bytes of input k
// in block s. The S blocks are packed in the same pass over the rows, so a cache line of a row (which holds
// 64 * 8 / bits columns) is fetched once, not once per block (the row walk is latency bound: rows are a row
// stride apart). Always inlined, so the VBMI instance is compiled with VBMI and the scalar one without.
template <class RowFn>
__attribute__((always_inline)) inline void pack_panel_body(const Groups& gr, int S, const RowFn& row_at,
                                                           uint8_t* panel) {
  uint8_t* dst = panel;
  for (int64_t g = 0; g < gr.G; ++g) {
    const int64_t k0 = gr.start(g), k1 = gr.end(g);
    for (int64_t k = k0; k < k0 + gr.plen(g); k += 4) {
      for (int sb = 0; sb < S; ++sb) {
        const auto row = [&](int64_t kk) -> __m512i { return kk < k1 ? row_at(kk, sb) : _mm512_setzero_si512(); };
        interleave_store(row(k), row(k + 1), row(k + 2), row(k + 3), dst + sb * gr.Kp * kNB);
      }
      dst += 256;
    }
  }
}

// The VBMI instance spelled out (not through pack_panel_body: a lambda there would not be compiled with VBMI and
// the row expansion could not be inlined into it; a call per row spills every zmm register).
__attribute__((target("avx512vbmi"))) void pack_panel_vbmi(const Format& f, const Groups& gr, int64_t j0, int S,
                                                           uint8_t* panel) {
  const VbmiTables tabs = make_vbmi_tables(f.bits);  // a local (a thread_local would cost a TLS lookup per row)
  uint8_t* dst = panel;
  for (int64_t g = 0; g < gr.G; ++g) {
    const int64_t k0 = gr.start(g), k1 = gr.end(g);
    for (int64_t k = k0; k < k0 + gr.plen(g); k += 4) {
      for (int sb = 0; sb < S; ++sb) {
        const int64_t jb = j0 + sb * kNB;
        __m512i r[4];
        for (int i = 0; i < 4; ++i) r[i] = k + i < k1 ? row_levels_vbmi(f, tabs, k + i, jb) : _mm512_setzero_si512();
        interleave_store(r[0], r[1], r[2], r[3], dst + sb * gr.Kp * kNB);
      }
      dst += 256;
    }
  }
}

void pack_panel_scalar(const Format& f, const Groups& gr, int64_t j0, int S, uint8_t* panel) {
  pack_panel_body(gr, S, [&](int64_t k, int sb) {
    return row_levels_scalar(f, k, j0 + sb * kNB, std::min<int64_t>(kNB, f.N - j0 - sb * kNB));
  }, panel);
}

// Scales and -c in panel order, [G, 64]; columns past N get 0.
void pack_group_params(const float* scale, const void* zero, bool keras_signed, int64_t N, int64_t G, int64_t j0,
                       float* sp, float* cp) {
  for (int64_t g = 0; g < G; ++g) {
    for (int p = 0; p < kNB; ++p) {
      const int64_t j = j0 + panel_col(p);
      float s = 0.0f, c = 0.0f;
      if (j < N) {
        s = scale[g * N + j];
        c = keras_signed ? static_cast<float>(static_cast<const int8_t*>(zero)[g * N + j] + 8)
                         : static_cast<float>(static_cast<const uint8_t*>(zero)[g * N + j]);
      }
      sp[g * kNB + p] = s;
      cp[g * kNB + p] = -c;
    }
  }
}

// ---- micro-kernel ----------------------------------------------------------------------------------------------

// R rows (R <= 6) x 64 columns over every group; f: R x 64 floats (panel order), overwritten. The 24 accumulators
// are named variables (GCC keeps an array of 24 zmm on the stack and copies it every iteration); rows >= R are
// dead code and removed.
#define QK_A8_ROW(r)                                                                                 \
  if (r < R) {                                                                                       \
    int32_t a4;                                                                                      \
    std::memcpy(&a4, xg + r * Kp + 4 * q, 4);                                                        \
    const __m512i b = _mm512_set1_epi32(a4);                                                         \
    c##r##0 = _mm512_dpbusd_epi32(c##r##0, w0, b);                                                   \
    c##r##1 = _mm512_dpbusd_epi32(c##r##1, w1, b);                                                   \
    c##r##2 = _mm512_dpbusd_epi32(c##r##2, w2, b);                                                   \
    c##r##3 = _mm512_dpbusd_epi32(c##r##3, w3, b);                                                   \
  }
#define QK_A8_EPI(r)                                                                                 \
  if (r < R) {                                                                                       \
    const __m512 rs = _mm512_set1_ps(rsf[r * G + g]);                                                \
    fold(c##r##0, rs, sg, cg, f + r * kNB);                                                          \
    fold(c##r##1, rs, sg + 16, cg + 16, f + r * kNB + 16);                                           \
    fold(c##r##2, rs, sg + 32, cg + 32, f + r * kNB + 32);                                           \
    fold(c##r##3, rs, sg + 48, cg + 48, f + r * kNB + 48);                                           \
  }

// f += s * (acc - c * rs), as ref: t = fmaf(-c, rs, (float)acc), f = fmaf(s, t, f).
inline void fold(__m512i acc, __m512 rs, const float* s, const float* cneg, float* f) {
  const __m512 t = _mm512_fmadd_ps(_mm512_load_ps(cneg), rs, _mm512_cvtepi32_ps(acc));
  _mm512_store_ps(f, _mm512_fmadd_ps(_mm512_load_ps(s), t, _mm512_load_ps(f)));
}

// One group of a full 6-row tile in inline assembly (with intrinsics GCC 12 keeps a stack copy of the 24
// accumulators and stores every one of them each iteration): zero zmm0-23, per quad 4 panel loads, 6 broadcasts
// and 24 vpdpbusd, then the 24 int32 sums go to acc[24 x 16]. nq >= 1.
#define QK_DP(row_addr, a0, a1, a2, a3)                                   \
  "vpbroadcastd " row_addr ", %%zmm31\n\t"                               \
  "vpdpbusd %%zmm31, %%zmm27, %%zmm" #a0 "\n\t"                           \
  "vpdpbusd %%zmm31, %%zmm28, %%zmm" #a1 "\n\t"                           \
  "vpdpbusd %%zmm31, %%zmm29, %%zmm" #a2 "\n\t"                           \
  "vpdpbusd %%zmm31, %%zmm30, %%zmm" #a3 "\n\t"
#define QK_Z(a) "vpxord %%zmm" #a ", %%zmm" #a ", %%zmm" #a "\n\t"
#define QK_ST(a) "vmovdqa64 %%zmm" #a ", " #a "*64(%[acc])\n\t"
inline void group6(const uint8_t* wp, const int8_t* xg, int64_t Kp, int64_t nq, int32_t* acc) {
  const int8_t* p3 = xg + 3 * Kp;
  __asm__ volatile(
      QK_Z(0) QK_Z(1) QK_Z(2) QK_Z(3) QK_Z(4) QK_Z(5) QK_Z(6) QK_Z(7) QK_Z(8) QK_Z(9) QK_Z(10) QK_Z(11)
      QK_Z(12) QK_Z(13) QK_Z(14) QK_Z(15) QK_Z(16) QK_Z(17) QK_Z(18) QK_Z(19) QK_Z(20) QK_Z(21) QK_Z(22) QK_Z(23)
      "1:\n\t"
      "vmovdqa64 (%[wp]), %%zmm27\n\t"
      "vmovdqa64 64(%[wp]), %%zmm28\n\t"
      "vmovdqa64 128(%[wp]), %%zmm29\n\t"
      "vmovdqa64 192(%[wp]), %%zmm30\n\t"
      QK_DP("(%[p0])", 0, 1, 2, 3) QK_DP("(%[p0],%[kp],1)", 4, 5, 6, 7) QK_DP("(%[p0],%[kp],2)", 8, 9, 10, 11)
      QK_DP("(%[p3])", 12, 13, 14, 15) QK_DP("(%[p3],%[kp],1)", 16, 17, 18, 19)
      QK_DP("(%[p3],%[kp],2)", 20, 21, 22, 23)
      "addq $256, %[wp]\n\t"
      "addq $4, %[p0]\n\t"
      "addq $4, %[p3]\n\t"
      "decq %[n]\n\t"
      "jnz 1b\n\t"
      QK_ST(0) QK_ST(1) QK_ST(2) QK_ST(3) QK_ST(4) QK_ST(5) QK_ST(6) QK_ST(7) QK_ST(8) QK_ST(9) QK_ST(10) QK_ST(11)
      QK_ST(12) QK_ST(13) QK_ST(14) QK_ST(15) QK_ST(16) QK_ST(17) QK_ST(18) QK_ST(19) QK_ST(20) QK_ST(21)
      QK_ST(22) QK_ST(23)
      : [wp] "+r"(wp), [p0] "+r"(xg), [p3] "+r"(p3), [n] "+r"(nq)
      : [kp] "r"(Kp), [acc] "r"(acc)
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
        "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm27",
        "xmm28", "xmm29", "xmm30", "xmm31", "cc", "memory");
}
#undef QK_DP
#undef QK_Z
#undef QK_ST

template <int R>
void tile(const int8_t* xq, int64_t Kp, const float* rsf, int64_t G, const Groups& gr, const uint8_t* panel,
          const float* sp, const float* cp, float* f) {
  for (int i = 0; i < R * kNB; i += 16) _mm512_store_ps(f + i, _mm512_setzero_ps());
  const uint8_t* wp = panel;
  for (int64_t g = 0; g < G; ++g) {
    const __m512i z = _mm512_setzero_si512();
    __m512i c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z, c20 = z, c21 = z, c22 = z,
            c23 = z, c30 = z, c31 = z, c32 = z, c33 = z, c40 = z, c41 = z, c42 = z, c43 = z, c50 = z, c51 = z,
            c52 = z, c53 = z;
    const int8_t* xg = xq + gr.poff(g);
    const int64_t nq = gr.plen(g) / 4;
    if constexpr (R == 6) {
      if (nq > 0) {
        alignas(64) int32_t acc[24 * 16];
        group6(wp, xg, Kp, nq, acc);
        wp += 256 * nq;
        const float* sg = sp + g * kNB;
        const float* cg = cp + g * kNB;
        for (int r = 0; r < 6; ++r) {
          const __m512 rs = _mm512_set1_ps(rsf[r * G + g]);
          for (int v = 0; v < 4; ++v) {
            fold(_mm512_load_si512(acc + (4 * r + v) * 16), rs, sg + 16 * v, cg + 16 * v, f + r * kNB + 16 * v);
          }
        }
      }
      continue;
    } else {
    for (int64_t q = 0; q < nq; ++q) {
      const __m512i w0 = _mm512_load_si512(wp), w1 = _mm512_load_si512(wp + 64);
      const __m512i w2 = _mm512_load_si512(wp + 128), w3 = _mm512_load_si512(wp + 192);
      wp += 256;
      QK_A8_ROW(0)
      QK_A8_ROW(1)
      QK_A8_ROW(2)
      QK_A8_ROW(3)
      QK_A8_ROW(4)
      QK_A8_ROW(5)
    }
    }
    const float* sg = sp + g * kNB;
    const float* cg = cp + g * kNB;
    QK_A8_EPI(0)
    QK_A8_EPI(1)
    QK_A8_EPI(2)
    QK_A8_EPI(3)
    QK_A8_EPI(4)
    QK_A8_EPI(5)
  }
}
#undef QK_A8_ROW
#undef QK_A8_EPI

// y row = f / sx + bias in column order, canonical NaN, n valid columns.
void write_row(const float* f, float sx, const float* bias, int64_t j0, int64_t n, float* y) {
  const __m512 f0 = _mm512_load_ps(f), f1 = _mm512_load_ps(f + 16), f2 = _mm512_load_ps(f + 32),
               f3 = _mm512_load_ps(f + 48);
  const __m512 u0 = _mm512_shuffle_f32x4(f0, f1, 0x44), u1 = _mm512_shuffle_f32x4(f0, f1, 0xEE);
  const __m512 u2 = _mm512_shuffle_f32x4(f2, f3, 0x44), u3 = _mm512_shuffle_f32x4(f2, f3, 0xEE);
  __m512 o[4] = {_mm512_shuffle_f32x4(u0, u2, 0x88), _mm512_shuffle_f32x4(u0, u2, 0xDD),
                 _mm512_shuffle_f32x4(u1, u3, 0x88), _mm512_shuffle_f32x4(u1, u3, 0xDD)};
  const __m512 vsx = _mm512_set1_ps(sx);
  const __m512 cnan = _mm512_set1_ps(qk_canonical_nan());
  for (int b = 0; b < 4; ++b) {
    const __mmask16 m = mask16(n - 16 * b);
    if (m == 0) break;
    __m512 v = _mm512_div_ps(o[b], vsx);
    if (bias != nullptr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + j0 + 16 * b));
    v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v, cnan);
    _mm512_mask_storeu_ps(y + j0 + 16 * b, m, v);
  }
}

bool cpu_has_vbmi() {
  static const bool v = __builtin_cpu_supports("avx512vbmi");
  return v;
}

}  // namespace

bool lowbit_a8_fast() { return cpu_has_vbmi(); }

Status dense_lowbit_a8(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* w, int bits,
                       bool keras_signed, const float* scale, const void* zero, int64_t group, const float* bias,
                       float* y, ThreadPool* pool) {
  if (M <= 0 || N <= 0) return kOk;
  const Groups gr = make_groups(K, group);
  const int64_t G = gr.G, Kp = gr.Kp;
  std::vector<int8_t> xq, xtmp;
  std::vector<float> rsf, sx;
  try {
    xq.assign(static_cast<size_t>(M * Kp + 64), 0);
    xtmp.resize(static_cast<size_t>(M * K));
    rsf.resize(static_cast<size_t>(M * std::max<int64_t>(G, 1)));
    sx.resize(static_cast<size_t>(M));
  } catch (...) {
    return QK_STATUS_OUT_OF_MEMORY;
  }
  // 1. activations (the same bits as ref: absmax_quantize is bit-exact across ISAs)
  const auto quant_rows = [&](int64_t i0, int64_t i1) {
    absmax_quantize(x + i0 * K, i1 - i0, K, 1, kLowbitA8ActLo, kLowbitA8ActHi, kLowbitA8ActEps,
                    xtmp.data() + i0 * K, sx.data() + i0);
    for (int64_t i = i0; i < i1; ++i) {
      for (int64_t g = 0; g < G; ++g) {
        const int64_t k0 = gr.start(g), k1 = gr.end(g);
        int32_t rs = 0;
        for (int64_t k = k0; k < k1; ++k) rs += xtmp[i * K + k];
        std::memcpy(xq.data() + i * Kp + gr.poff(g), xtmp.data() + i * K + k0, static_cast<size_t>(k1 - k0));
        rsf[i * G + g] = static_cast<float>(rs);
      }
    }
  };
  if (pool != nullptr && M * K >= (int64_t{1} << 16)) {
    pool->parallel_for(M, std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(K, 1)), quant_rows);
  } else {
    quant_rows(0, M);
  }
  // 2./3. column blocks
  const Format fmt{w, N, K, gptq_runtime_row_bytes(N, bits), bits, keras_signed};
  const int64_t nblocks = (N + kNB - 1) / kNB;
  // Blocks per task: a row's cache line holds 512 / bits columns; up to 1.5 MB of panels (L2 is 2 MB per core on
  // the machines this targets), and at least 2 tasks per thread when N allows.
  int S = std::max(1, 8 / bits);
  while (S > 1 && (S * Kp * kNB > (int64_t{3} << 19) ||
                   (pool != nullptr && (nblocks + S - 1) / S < 2 * pool->num_threads()))) {
    --S;
  }
  const int64_t ntasks = (nblocks + S - 1) / S;
  const bool vbmi = cpu_has_vbmi();
  std::atomic<bool> oom{false};
  const auto task = [&](int64_t t) {
    static thread_local std::vector<uint8_t> panel_buf;
    static thread_local std::vector<float> params_buf;
    static thread_local std::vector<float> ftile_buf;
    try {
      if (panel_buf.size() < static_cast<size_t>(S * Kp * kNB + 64)) panel_buf.resize(static_cast<size_t>(S * Kp * kNB + 64));
      if (params_buf.size() < static_cast<size_t>(2 * G * kNB + 16)) params_buf.resize(static_cast<size_t>(2 * G * kNB + 16));
      if (ftile_buf.size() < static_cast<size_t>(kMR * kNB + 16)) ftile_buf.resize(static_cast<size_t>(kMR * kNB + 16));
    } catch (...) {
      oom = true;
      return;
    }
    const auto align64 = [](auto* p) {
      using T = std::remove_pointer_t<decltype(p)>;
      return reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t{63});
    };
    uint8_t* panels = align64(panel_buf.data());
    float* sp = align64(params_buf.data());
    float* cp = sp + G * kNB;
    float* ft = align64(ftile_buf.data());
    const int64_t jt = t * S * kNB;
    const int nsb = static_cast<int>(std::min<int64_t>(S, nblocks - t * S));
    if (vbmi) {
      pack_panel_vbmi(fmt, gr, jt, nsb, panels);
    } else {
      pack_panel_scalar(fmt, gr, jt, nsb, panels);
    }
    for (int sb = 0; sb < nsb; ++sb) {
      const int64_t j0 = jt + sb * kNB;
      const int64_t n = std::min<int64_t>(kNB, N - j0);
      const uint8_t* panel = panels + sb * Kp * kNB;
      pack_group_params(scale, zero, keras_signed, N, G, j0, sp, cp);
      for (int64_t i0 = 0; i0 < M; i0 += kMR) {
        const int rows = static_cast<int>(std::min<int64_t>(kMR, M - i0));
        const int8_t* xr = xq.data() + i0 * Kp;
        const float* rr = rsf.data() + i0 * G;
        switch (rows) {
          case 6: tile<6>(xr, Kp, rr, G, gr, panel, sp, cp, ft); break;
          case 5: tile<5>(xr, Kp, rr, G, gr, panel, sp, cp, ft); break;
          case 4: tile<4>(xr, Kp, rr, G, gr, panel, sp, cp, ft); break;
          case 3: tile<3>(xr, Kp, rr, G, gr, panel, sp, cp, ft); break;
          case 2: tile<2>(xr, Kp, rr, G, gr, panel, sp, cp, ft); break;
          default: tile<1>(xr, Kp, rr, G, gr, panel, sp, cp, ft); break;
        }
        for (int r = 0; r < rows; ++r) write_row(ft + r * kNB, sx[i0 + r], bias, j0, n, y + (i0 + r) * N);
      }
    }
  };
  if (pool != nullptr && ntasks > 1) {
    pool->run(ntasks, task);
  } else {
    for (int64_t t = 0; t < ntasks; ++t) task(t);
  }
  return oom ? QK_STATUS_OUT_OF_MEMORY : kOk;
}

}  // namespace avx512
}  // namespace qk
