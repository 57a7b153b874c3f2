// quantkit — the AVX-512 VNNI int8 GEMM engine: B packing, A copy, micro-kernels and the blocked driver.
// Shared by igemm_avx512.cpp (igemm_s8s8s32) and dense_int8_avx512.cpp (dense_w8a8 / dense_w4a8). Include it
// only from translation units compiled with the qk::avx512 flags; everything lives in an anonymous namespace
// inside qk::avx512, so each including unit gets its own copy (no ODR mixing across ISA flags).
//
// Instruction: vpdpbusd acc, u, s   acc.dword[i] += sum_{t<4} u8(u.byte[4i+t]) * s8(s.byte[4i+t])
// (the non-saturating form: the dword sum wraps modulo 2^32, see "Exactness" below).
//
// Signedness. vpdpbusd wants one UNSIGNED operand. We shift B into u8 (b' = b + 128 = b ^ 0x80, done for
// free while packing B) and keep A signed:
//     sum_k a_k * b_k = sum_k a_k * (b_k + 128) - 128 * sum_k a_k
// so the compensation is 128 * rowsum(A[i, :]), one int32 per row, computed once before the main loop.
// (Shifting B rather than A — the textbook variant shifts A and subtracts 128 * colsum(B) — puts the
// signed operand on the A side, which is broadcast: A needs no xor per broadcast and its copy below is a
// plain row copy; B is repacked anyway, so its shift is free.)
//
// Exactness. All int32 arithmetic here (vpdpbusd, the compensation, accumulation across K blocks) is modulo
// 2^32 and every step is an exact ring operation, so the result is the exact sum modulo 2^32, which is the
// exact sum whenever it fits in int32 (always, for K <= 131072, except the single corner case documented in
// ref/igemm_ref.cpp, where every variant wraps identically). Intermediate values such as
// sum a*(b+128) may exceed int32; that is harmless modulo 2^32. Padding (k >= K, columns >= N) is stored in
// packed B as the u8 value 0, so it contributes nothing whatever A holds there.
//
// B sources. The packer reads B through a small "source" object (row pointer, leading dimension, and a
// load of up to 64 columns of one row already shifted to u8). Int8Source reads a plain int8 [K, N] matrix;
// dense_int8_avx512.cpp adds a source that unpacks Keras int4 nibbles, so an int4 kernel is expanded only
// panel by panel into the L2-resident packed block, never as a whole.
//
// Packed B (per item and K block, private to one worker, stays in L2): panels of NR = 64 columns. Panel p,
// k-group g (4 consecutive k) occupies 256 bytes = 4 zmm; zmm v, dword i holds
//     (b'(4g, c), b'(4g+1, c), b'(4g+2, c), b'(4g+3, c)),  c = 64p + 16v + i
// i.e. exactly the dword layout vpdpbusd consumes, columns in natural order. Built from four 64-byte rows
// with byte/word unpacks (which interleave within 128-bit lanes) followed by a 4x4 transpose of the 128-bit
// lanes (vshufi64x2).
//
// A copy (per MC block of rows): plain row copy with a padded row stride kAS (not a multiple of 4 KiB, so
// the MR rows the micro-kernel walks stay in distinct cache sets even for a power-of-two lda), zero-padded
// to a multiple of 4 in k so that the kernel only sees whole k-groups.
//
// Micro-kernel: MR = 6 rows x NR = 64 columns -> 24 zmm accumulators + 4 B registers + 1 broadcast. Per
// k-group it issues 4 loads of B, 6 dword broadcasts of A and 24 vpdpbusd (2 per cycle on this class of
// core: ports 0 and 5).
// Loop order per item (BLIS-like): K block -> pack B block (kc x Nt, L2) -> MC rows of A (L2) -> B panel
// (kc x 64, L1) -> MR rows -> micro-kernel. The first K block stores acc - comp, later ones add into C.
// While one K block is multiplied, the rows of the next one are software-prefetched into L2 (a few lines per
// micro-kernel call; pre-packed B: one line per k-group inside the micro-kernel). Pre-packed B: items are at most
// kMC rows, so an item's C tile stays in L2 across its K blocks. C lines are prefetched at the start of each micro-kernel. Column tails use masked
// loads/stores; row tails use the MR' < MR instantiations. After an item's last K block the driver calls
// an epilogue on the finished rectangle of C (a no-op for igemm; descale + bias for the dense kernels).
#ifndef QK_KERNELS_X86_IGEMM_AVX512_KERNELS_H_
#define QK_KERNELS_X86_IGEMM_AVX512_KERNELS_H_

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || !defined(__AVX512VNNI__)
#error "igemm_avx512_kernels.h needs the qk::avx512 compile flags"
#endif

// GCC 12's AVX-512 headers build _mm512_shuffle_i64x2 / _mm512_reduce_add_epi32 on a self-initialised
// "undefined" vector, which -Wmaybe-uninitialized reports once inlined (a false positive). The pragma
// applies to the rest of every including unit.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "igemm_common.h"
#include "qk/kernels.h"
#include "qk/threadpool.h"

namespace qk {
namespace avx512 {
namespace {

using igemm_common::ceil_div;
using igemm_common::load_u32;
using igemm_common::round_up;

constexpr int kMR = 6;
constexpr int kNR = 64;              // columns per panel (4 zmm of 16 dwords)
constexpr int64_t kKC = 512;         // max K block (bytes of k); packed panel kc x 64 = 32 KiB fits L1
constexpr int64_t kMC = 40 * kMR;    // rows of A per L2 block
constexpr int64_t kNtMax = 512;      // max columns per item: packed B block <= 512 x 512 = 256 KiB (L2)
constexpr int64_t kAS = kKC + 64;    // row stride of the A copy (bytes)

// Mask of the low n bits (n in [0, 64]); no BMI2 (not in this unit's flags).
inline __mmask64 low_mask64(int64_t n) { return n >= 64 ? ~__mmask64{0} : (__mmask64{1} << n) - 1; }

// 128 * sum_k a[k] modulo 2^32. vpdpbusd with u8 ones sums 4 signed bytes into each dword.
inline int32_t row_comp(const int8_t* a, int64_t K) {
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i acc = _mm512_setzero_si512();
  int64_t k = 0;
  for (; k + 64 <= K; k += 64) acc = _mm512_dpbusd_epi32(acc, ones, _mm512_loadu_si512(a + k));
  if (k < K) {
    const __mmask64 m = low_mask64(K - k);
    acc = _mm512_dpbusd_epi32(acc, ones, _mm512_maskz_loadu_epi8(m, a + k));
  }
  const uint32_t s = static_cast<uint32_t>(_mm512_reduce_add_epi32(acc));
  return static_cast<int32_t>(s * 128u);
}

// B source: a plain int8 matrix B[K, N] with leading dimension ldb.
struct Int8Source {
  const int8_t* B;
  int64_t ldb;
  // Start of row k at column j (j a multiple of kNR), its leading dimension and the bytes ncols columns span.
  const int8_t* row(int64_t k, int64_t j) const { return B + k * ldb + j; }
  int64_t ld() const { return ldb; }
  static int64_t bytes(int64_t ncols) { return ncols; }
  // Columns [64p, 64p + 64) of the row at r, shifted to u8 (b + 128); columns at or past n (n in [1, 64])
  // are 0 and are not read.
  static __m512i load(const int8_t* r, int64_t p, int64_t n) {
    const __mmask64 m = low_mask64(n);
    return _mm512_maskz_add_epi8(m, _mm512_maskz_loadu_epi8(m, r + p * kNR), _mm512_set1_epi8(static_cast<char>(0x80)));
  }
};

// Packs B[0 : kc, 0 : ncols] (the item's block, row k at src.row(k0 + k, j0)) into ceil(ncols / 64) panels
// of 64 columns, panel p at dst + p * panel_stride, in the layout described above: round_up(kc, 4) / 4 groups
// of 256 bytes, 128 added to every real element, 0 written for padding (k >= kc, columns >= ncols). The loop
// runs over k-groups outside and panels inside so that each source row is read front to back
// (prefetch-friendly even when the leading dimension is a multiple of the page size).
// prefetch: also prefetch the rows 8 groups ahead (used when nothing prefetched this block before).
template <class Src>
void pack_b(const Src& src, int64_t k0, int64_t j0, int64_t kc, int64_t ncols, uint8_t* dst, int64_t panel_stride,
            bool prefetch) {
  constexpr int64_t kAhead = 8;
  const int64_t groups = ceil_div(kc, 4);
  const int64_t panels = ceil_div(ncols, kNR);
  const int64_t ld = src.ld();
  const int64_t nbytes = Src::bytes(ncols);
  const int8_t* base = src.row(k0, j0);
  if (prefetch) {
    for (int64_t k = 0; k < std::min(kc, 4 * kAhead); ++k)
      for (int64_t c = 0; c < nbytes; c += 64) _mm_prefetch(reinterpret_cast<const char*>(base + k * ld + c), _MM_HINT_T0);
  }
  for (int64_t g = 0; g < groups; ++g) {
    const int8_t* s = base + 4 * g * ld;
    const int rows = static_cast<int>(std::min<int64_t>(4, kc - 4 * g));
    if (prefetch && g + kAhead < groups) {
      const int64_t kend = std::min(kc, 4 * (g + kAhead + 1));
      for (int64_t k = 4 * (g + kAhead); k < kend; ++k)
        for (int64_t c = 0; c < nbytes; c += 64) _mm_prefetch(reinterpret_cast<const char*>(base + k * ld + c), _MM_HINT_T0);
    }
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t n = std::min<int64_t>(kNR, ncols - p * kNR);
      __m512i r[4];
#pragma GCC unroll 4
      for (int t = 0; t < 4; ++t) r[t] = t < rows ? Src::load(s + t * ld, p, n) : _mm512_setzero_si512();
      // Within each 128-bit lane L (columns 16L..16L+15): t0/t1 = (row0,row1) byte pairs for columns
      // 0-7 / 8-15 of the lane, t2/t3 the same for rows 2,3; u0..u3 = 4-byte groups for columns
      // 0-3, 4-7, 8-11, 12-15 of every lane.
      const __m512i t0 = _mm512_unpacklo_epi8(r[0], r[1]);
      const __m512i t1 = _mm512_unpackhi_epi8(r[0], r[1]);
      const __m512i t2 = _mm512_unpacklo_epi8(r[2], r[3]);
      const __m512i t3 = _mm512_unpackhi_epi8(r[2], r[3]);
      const __m512i u0 = _mm512_unpacklo_epi16(t0, t2);
      const __m512i u1 = _mm512_unpackhi_epi16(t0, t2);
      const __m512i u2 = _mm512_unpacklo_epi16(t1, t3);
      const __m512i u3 = _mm512_unpackhi_epi16(t1, t3);
      // Output vector v = columns 16v..16v+15 = lane v of u0, u1, u2, u3 (a 4x4 transpose of lanes).
      const __m512i x0 = _mm512_shuffle_i64x2(u0, u1, 0x44);  // u0.l0 u0.l1 u1.l0 u1.l1
      const __m512i x1 = _mm512_shuffle_i64x2(u2, u3, 0x44);  // u2.l0 u2.l1 u3.l0 u3.l1
      const __m512i x2 = _mm512_shuffle_i64x2(u0, u1, 0xEE);  // u0.l2 u0.l3 u1.l2 u1.l3
      const __m512i x3 = _mm512_shuffle_i64x2(u2, u3, 0xEE);  // u2.l2 u2.l3 u3.l2 u3.l3
      uint8_t* d = dst + p * panel_stride + g * 256;
      _mm512_store_si512(d + 0, _mm512_shuffle_i64x2(x0, x1, 0x88));    // lane 0 of u0..u3
      _mm512_store_si512(d + 64, _mm512_shuffle_i64x2(x0, x1, 0xDD));   // lane 1
      _mm512_store_si512(d + 128, _mm512_shuffle_i64x2(x2, x3, 0x88));  // lane 2
      _mm512_store_si512(d + 192, _mm512_shuffle_i64x2(x2, x3, 0xDD));  // lane 3
    }
  }
}

// Copies rows A[0 : rows, 0 : kc] (lda apart) into dst with row stride kAS, zero-filling columns
// [kc, round_up(kc, 4)) so that the micro-kernel only ever sees whole k-groups. The padded stride
// (not a multiple of 4 KiB) keeps the MR rows the micro-kernel walks in distinct L1 sets even when lda
// is a large power of two.
inline void copy_a(const int8_t* A, int64_t lda, int64_t rows, int64_t kc, int8_t* dst) {
  const int64_t kcp = round_up(kc, 4);
  for (int64_t r = 0; r < rows; ++r) {
    const int8_t* s = A + r * lda;
    int8_t* d = dst + r * kAS;
    int64_t k = 0;
    for (; k + 64 <= kc; k += 64) _mm512_storeu_si512(d + k, _mm512_loadu_si512(s + k));
    if (k < kcp) {  // tail: real bytes then zeros up to kcp (kcp - k <= 64)
      _mm512_mask_storeu_epi8(d + k, low_mask64(kcp - k), _mm512_maskz_loadu_epi8(low_mask64(kc - k), s + k));
    }
  }
}

// acc + vpdpbusd(u, s). GCC 12 compiles the _mm512_dpbusd_epi32 builtin inside a 24-accumulator loop
// with a register copy and a stack store per instruction (the destination is not tied to the accumulator),
// so the micro-kernel issues the instruction through inline asm ("+v": accumulate in place).
inline __m512i dpbusd(__m512i acc, __m512i u, __m512i s) {
#if defined(__GNUC__)
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s));
  return acc;
#else
  return _mm512_dpbusd_epi32(acc, u, s);
#endif
}

// Stores one row of the micro-tile: comp != nullptr -> C = acc - comp, else C += acc (masked per vector).
inline void store_row(int32_t* cr, const __mmask16* mk, const int32_t* comp, __m512i x0, __m512i x1, __m512i x2,
                      __m512i x3) {
  if (comp != nullptr) {
    const __m512i cv = _mm512_set1_epi32(*comp);
    _mm512_mask_storeu_epi32(cr + 0, mk[0], _mm512_sub_epi32(x0, cv));
    _mm512_mask_storeu_epi32(cr + 16, mk[1], _mm512_sub_epi32(x1, cv));
    _mm512_mask_storeu_epi32(cr + 32, mk[2], _mm512_sub_epi32(x2, cv));
    _mm512_mask_storeu_epi32(cr + 48, mk[3], _mm512_sub_epi32(x3, cv));
  } else {
    _mm512_mask_storeu_epi32(cr + 0, mk[0], _mm512_add_epi32(x0, _mm512_maskz_loadu_epi32(mk[0], cr + 0)));
    _mm512_mask_storeu_epi32(cr + 16, mk[1], _mm512_add_epi32(x1, _mm512_maskz_loadu_epi32(mk[1], cr + 16)));
    _mm512_mask_storeu_epi32(cr + 32, mk[2], _mm512_add_epi32(x2, _mm512_maskz_loadu_epi32(mk[2], cr + 32)));
    _mm512_mask_storeu_epi32(cr + 48, mk[3], _mm512_add_epi32(x3, _mm512_maskz_loadu_epi32(mk[3], cr + 48)));
  }
}

// C[MR x ncols] (+)= A[MR x 4kg] * panel.  a: row r at a + r * kAS (the zero-padded A copy);
// b: packed panel of kg groups. comp != nullptr: first K block, store acc - comp[r]; otherwise add acc into
// C. ncols in [1, 64] (masked stores past it). The accumulators are named variables rather than an array:
// GCC keeps an array of vectors in memory across the loop, which costs a store per vpdpbusd.
// pf, npf: prefetch the npf 64-byte lines at pf into L2, one line per k-group of the first npf groups (npf <= kg; 0:
// none). The driver points it at the next K block of a pre-packed panel, so that block is fetched at the pace of the
// computation rather than in bursts that stall on the line-fill buffers.
template <int MR>
void micro_kernel(int64_t kg, const int8_t* a, const uint8_t* b, int32_t* c, int64_t ldc, const int32_t* comp,
                  int64_t ncols, const uint8_t* pf, int64_t npf) {
  static_assert(MR >= 1 && MR <= 6, "MR");
  // C is touched only after the loop; request its lines now so that the misses overlap the computation.
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < 4; ++v) _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 16 * v), _MM_HINT_T0);
  const __m512i z = _mm512_setzero_si512();
  __m512i c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z;
  __m512i c20 = z, c21 = z, c22 = z, c23 = z, c30 = z, c31 = z, c32 = z, c33 = z;
  __m512i c40 = z, c41 = z, c42 = z, c43 = z, c50 = z, c51 = z, c52 = z, c53 = z;
#define QK_IGEMM_ROW(r)                                                                    \
  if constexpr (MR > r) {                                                                  \
    const __m512i av = _mm512_set1_epi32(static_cast<int>(load_u32(a + r * kAS)));        \
    c##r##0 = dpbusd(c##r##0, b0, av);                                                     \
    c##r##1 = dpbusd(c##r##1, b1, av);                                                     \
    c##r##2 = dpbusd(c##r##2, b2, av);                                                     \
    c##r##3 = dpbusd(c##r##3, b3, av);                                                     \
  }
#define QK_IGEMM_GROUP                              \
  {                                                 \
    const __m512i b0 = _mm512_load_si512(b + 0);    \
    const __m512i b1 = _mm512_load_si512(b + 64);   \
    const __m512i b2 = _mm512_load_si512(b + 128);  \
    const __m512i b3 = _mm512_load_si512(b + 192);  \
    QK_IGEMM_ROW(0)                                 \
    QK_IGEMM_ROW(1)                                 \
    QK_IGEMM_ROW(2)                                 \
    QK_IGEMM_ROW(3)                                 \
    QK_IGEMM_ROW(4)                                 \
    QK_IGEMM_ROW(5)                                 \
    a += 4;                                         \
    b += 256;                                       \
  }
  for (int64_t g = 0; g < npf; ++g) {
    _mm_prefetch(reinterpret_cast<const char*>(pf + 64 * g), _MM_HINT_T1);
    QK_IGEMM_GROUP
  }
  for (int64_t g = npf; g < kg; ++g) QK_IGEMM_GROUP
#undef QK_IGEMM_GROUP
#undef QK_IGEMM_ROW

  __mmask16 mk[4];
  for (int v = 0; v < 4; ++v) {
    const int64_t n = ncols - 16 * v;
    mk[v] = n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
  }
  store_row(c, mk, comp, c00, c01, c02, c03);
  if constexpr (MR > 1) store_row(c + ldc, mk, comp ? comp + 1 : nullptr, c10, c11, c12, c13);
  if constexpr (MR > 2) store_row(c + 2 * ldc, mk, comp ? comp + 2 : nullptr, c20, c21, c22, c23);
  if constexpr (MR > 3) store_row(c + 3 * ldc, mk, comp ? comp + 3 : nullptr, c30, c31, c32, c33);
  if constexpr (MR > 4) store_row(c + 4 * ldc, mk, comp ? comp + 4 : nullptr, c40, c41, c42, c43);
  if constexpr (MR > 5) store_row(c + 5 * ldc, mk, comp ? comp + 5 : nullptr, c50, c51, c52, c53);
}

using KernelFn = void (*)(int64_t, const int8_t*, const uint8_t*, int32_t*, int64_t, const int32_t*, int64_t,
                         const uint8_t*, int64_t);
constexpr KernelFn kKernels[kMR + 1] = {nullptr,          micro_kernel<1>, micro_kernel<2>, micro_kernel<3>,
                                        micro_kernel<4>, micro_kernel<5>, micro_kernel<6>};

// The blocked driver: C[M, N] = A[M, K] * B[K, N] (B read through src), comp[i] = 128 * rowsum(A[i, :])
// (precomputed by the caller). M, N, K >= 1. After the last K block of each item, epilogue(i0, i1, j0, j1)
// is called (on the worker that computed it) with the item's finished rectangle of C.
// Returns OUT_OF_MEMORY if the per-worker scratch cannot be allocated (before any work starts).
// packed != nullptr: B is given pre-packed in the kAvx512Vnni layout of qk/packed.h (src unused): panel q with all
// round_up(K, 4) / 4 k-groups at packed + q * Kp * 64, so an item's K block of panel p is read in place at
// packed + (j0 / 64 + p) * Kp * 64 + k0 * 64 -- the bytes pack_b would have written (same micro-kernel calls, exact).
template <class Src, class Epilogue>
Status igemm_driver(int64_t M, int64_t N, int64_t K, const int8_t* A, int64_t lda, const int32_t* comp,
                    const Src& src, int32_t* C, int64_t ldc, ThreadPool* pool, const Epilogue& epilogue,
                    const uint8_t* packed = nullptr) {
  const int threads = pool != nullptr ? pool->num_threads() : 1;
  igemm_common::Plan plan = igemm_common::make_plan(M, N, kMR, kNR, kNtMax, threads);
  // K blocks of equal size (multiples of 4, except that the last may end on K).
  const int64_t kblocks = ceil_div(K, kKC);
  const int64_t kc_step = round_up(ceil_div(K, kblocks), 4);

  // Pre-packed B: A is copied ONCE per call into the micro-kernel's row layout, block by block (K block b, row i at
  // apk + (b * M + i) * kAS), when that copy is at most kSharedABytes; items then read it in place instead of each
  // re-copying its rows for every K block (the copies grew with the number of column items).
  constexpr int64_t kSharedABytes = int64_t{16} << 20;
  const bool shared_a = packed != nullptr && kblocks * M * kAS <= kSharedABytes;
  if (packed != nullptr) {
    // Pre-packed B costs nothing to re-read per item, so items are cut to at most kMC rows (balanced chunks): the
    // item's int32 C tile (<= kMC x kNtMax x 4 = 480 KiB) then stays in L2 across the K blocks instead of being
    // re-read from L3 once per K block (M = 512: 1 MiB per item; measured 4-5% of the call single-threaded). With
    // the A copy shared, narrow items cost nothing either: with several threads, about 8 items per thread along N,
    // so that a thread preempted by another process holds back a small part of the call.
    const int64_t panels = ceil_div(N, kNR);
    int64_t per_item = kNtMax / kNR;
    if (threads > 1 && shared_a) per_item = std::min(per_item, std::max<int64_t>(1, ceil_div(panels, int64_t{8} * threads)));
    if (threads > 1 || plan.mt > kMC || shared_a) {
      if (shared_a) {
        plan.nt = per_item * kNR;
        plan.items_n = ceil_div(panels, per_item);
      }
      int64_t chunks = ceil_div(M, kMC);
      if (threads > 1 && plan.items_n * chunks < int64_t{4} * threads)
        chunks = std::max(chunks, std::min(ceil_div(int64_t{4} * threads, plan.items_n), ceil_div(M, 4 * kMR)));
      plan.mt = std::min(plan.mt, round_up(ceil_div(M, chunks), kMR));
      plan.items_m = ceil_div(M, plan.mt);
      const int64_t items = plan.items_m * plan.items_n;
      plan.workers = static_cast<int>(items < threads ? items : threads);
    }
  }
  igemm_common::Scratch apk_buf(shared_a ? static_cast<std::size_t>(kblocks * M * kAS) : 0);
  if (apk_buf.data() == nullptr) return QK_STATUS_OUT_OF_MEMORY;
  int8_t* const apk = reinterpret_cast<int8_t*>(apk_buf.data());
  if (shared_a) {
    for (int64_t b = 0; b < kblocks; ++b) {
      const int64_t k0 = b * kc_step;
      copy_a(A + k0, lda, M, std::min(kc_step, K - k0), apk + b * M * kAS);
    }
  }

  // Per worker: the packed B block (kc_step x Nt) followed by the A copy (MC x kAS).
  const std::size_t bblock_bytes = packed != nullptr ? 0 : static_cast<std::size_t>(kc_step * plan.nt);
  const int64_t kp_all = round_up(K, 4);  // k of a pre-packed panel
  const std::size_t slot_bytes = bblock_bytes + static_cast<std::size_t>(shared_a ? 64 : kMC * kAS);
  igemm_common::Scratch scratch(slot_bytes * static_cast<std::size_t>(plan.workers));
  if (scratch.data() == nullptr) return QK_STATUS_OUT_OF_MEMORY;
  uint8_t* slots = scratch.data();

  const auto item_fn = [&](int64_t item, int slot) {
    const int64_t im = item / plan.items_n;
    const int64_t in = item % plan.items_n;
    const int64_t i0 = im * plan.mt;
    const int64_t i1 = std::min(M, i0 + plan.mt);
    const int64_t j0 = in * plan.nt;
    const int64_t j1 = std::min(N, j0 + plan.nt);
    const int64_t panels = ceil_div(j1 - j0, kNR);
    uint8_t* bbuf = slots + slot_bytes * static_cast<std::size_t>(slot);
    int8_t* abuf = reinterpret_cast<int8_t*>(bbuf + bblock_bytes);
    const int64_t row_blocks = ceil_div(i1 - i0, kMR);  // micro-kernel calls per panel and K block
    const int64_t calls = row_blocks * panels;           // micro-kernel calls per K block
    // With few rows the multiplication is too short to hide a block's worth of prefetches (they would be
    // issued in bursts and stall); then each pack prefetches its own rows a few groups ahead instead.
    const bool prefetch_next = i1 - i0 >= 4 * kMR;
    for (int64_t k0 = 0; k0 < K; k0 += kc_step) {
      const int64_t kc = std::min(kc_step, K - k0);
      const int64_t kcp = round_up(kc, 4);
      // B panels of this K block: panel p at bblk + p * pstride.
      const uint8_t* bblk = bbuf;
      int64_t pstride = kcp * kNR;
      if (packed != nullptr) {
        bblk = packed + (j0 / kNR) * kp_all * kNR + k0 * kNR;
        pstride = kp_all * kNR;
      } else {
        pack_b(src, k0, j0, kc, j1 - j0, bbuf, pstride, /*prefetch=*/k0 == 0 || !prefetch_next);
      }
      // Pull the next K block of B towards L2 while this one is multiplied. Per-call packing: the source rows, a few
      // lines per micro-kernel call (BlockPrefetcher). Pre-packed: inside the micro-kernel, one line per k-group, the
      // calls on panel p taking consecutive segments of panel p's next K block (its run of round_up(kc_next, 4) lines
      // right after this block's; every panel sees row_blocks calls per K block, each taking seg <= kcp / 4 lines,
      // which covers the run when row_blocks >= 4, i.e. prefetch_next). Issued in bursts of ~24 per call, as before,
      // these prefetches stalled on the line-fill buffers (a cpu-clock profile put most of the driver's own time on
      // them); spread one per k-group they are hidden (same-process A/B, 1 thread, M = 128: 0.96 of the time).
      igemm_common::BlockPrefetcher pf;
      int64_t seg = 0, next_lines = 0;
      if (prefetch_next && k0 + kc < K) {
        const int64_t kc_next = std::min(kc_step, K - k0 - kc);
        if (packed != nullptr) {
          next_lines = round_up(kc_next, 4);
          seg = std::min(kcp / 4, ceil_div(next_lines, row_blocks));
        } else {
          pf = igemm_common::BlockPrefetcher(src.row(k0 + kc, j0), src.ld(), kc_next, Src::bytes(j1 - j0), calls);
        }
      }
      const int32_t* cp = k0 == 0 ? comp : nullptr;
      for (int64_t ic = i0; ic < i1; ic += kMC) {
        const int64_t ie = std::min(i1, ic + kMC);
        const int8_t* ab = abuf;
        if (shared_a) {
          ab = apk + ((k0 / kc_step) * M + ic) * kAS;
        } else {
          copy_a(A + ic * lda + k0, lda, ie - ic, kc, abuf);
        }
        for (int64_t p = 0; p < panels; ++p) {
          const int64_t c0 = j0 + p * kNR;
          const int64_t ncols = std::min<int64_t>(kNR, j1 - c0);
          const uint8_t* bp = bblk + p * pstride;
          for (int64_t ir = ic; ir < ie; ir += kMR) {
            const int mr = static_cast<int>(std::min<int64_t>(kMR, ie - ir));
            pf.step();
            const int64_t first_line = ((ir - i0) / kMR) * seg;
            const int64_t npf = std::max<int64_t>(0, std::min(seg, next_lines - first_line));
            kKernels[mr](kcp / 4, ab + (ir - ic) * kAS, bp, C + ir * ldc + c0, ldc,
                         cp != nullptr ? cp + ir : nullptr, ncols, bp + kc * kNR + first_line * 64, npf);
          }
        }
      }
    }
    epilogue(i0, i1, j0, j1);
  };
  igemm_common::run_items(pool, plan.workers, plan.items_m * plan.items_n, item_fn);
  return kOk;
}

}  // namespace
}  // namespace avx512
}  // namespace qk

#endif  // QK_KERNELS_X86_IGEMM_AVX512_KERNELS_H_
