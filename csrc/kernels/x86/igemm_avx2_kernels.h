// quantkit — the AVX2 int8 GEMM engine: B packing, A widening copy, micro-kernels and the blocked driver.
// Shared by igemm_avx2.cpp (igemm_s8s8s32) and dense_int8_avx2.cpp (dense_w8a8 / dense_w4a8). Include it only
// from translation units compiled with the qk::avx2 flags; everything lives in an anonymous namespace inside
// qk::avx2, so each including unit gets its own copy (no ODR mixing across ISA flags).
// B is read through a small "source" object (row pointer, leading dimension, a load of 16 columns as int8):
// Int8Source below for a plain int8 matrix; dense_int8_avx2.cpp adds one that unpacks Keras int4 nibbles.
// After an item's last K block the driver calls an epilogue on the finished rectangle of C.
//
// Scheme: widen to int16 and use vpmaddwd (s16 x s16 pairs -> s32), exact for every int8 input.
//
// Why not vpmaddubsw. vpmaddubsw multiplies u8 x s8 and adds adjacent pairs into s16 WITH SATURATION.
//   * Shifting A to u8 (a + 128) overflows: 255 * 127 + 255 * 127 > 32767, so results are wrong.
//   * The sign trick vpmaddubsw(|a|, sign(b, a)) is exact only when B holds no -128 (|a| <= 128 and
//     |sign(b, a)| <= 127 bound a pair by 2 * 128 * 127 = 32512; vpsignb turns -(-128) into -128) and it
//     needs a fallback for the -128 case anyway. Per 32 multiply-adds it costs vpsignb + vpmaddubsw +
//     vpmaddwd(ones) + vpaddd = 4 uops, three of them on the two multiply ports.
//   * The widened form costs 2 x (vpmaddwd + vpaddd) = 4 uops per 32 multiply-adds, only two of them on
//     the multiply ports (vpaddd can use a third ALU port), so it is at least as fast on Skylake-and-later
//     cores, equal on Haswell, and needs no input scan and no second kernel.
// Exactness: a, b in [-128, 127] are exact in int16; one vpmaddwd lane is a0*b0 + a1*b1 with
// |.| <= 2 * 16384 = 32768 (its only saturating case, all four inputs = -32768, cannot occur); vpaddd
// accumulates modulo 2^32, so the result is the exact sum modulo 2^32 — the exact sum whenever it fits in
// int32 (see ref/igemm_ref.cpp for the one corner case at K = 131072, where all variants wrap alike).
//
// Packed B (per item and K block, private to one worker): panels of NR = 16 columns. Panel p, k-pair q
// (k = 2q, 2q+1) occupies 64 bytes = 2 ymm; ymm v, dword i = (int16 b(2q, c), int16 b(2q+1, c)) with
// c = 16p + 8v + i. Padding (k >= K, columns >= N) is 0.
// A copy (per MC block): rows widened to int16, row stride kAS elements (padded so that the MR rows the
// micro-kernel walks fall in distinct cache sets even when lda is a power of two), zero-padded to an even
// length; the micro-kernel broadcasts one int16 pair (a dword) per row and k-pair.
// Micro-kernel: MR = 6 rows x 16 columns = 12 ymm accumulators + 2 B registers + 1 broadcast (of 16).
// Driver (loop order, item split over threads, prefetching) mirrors igemm_avx512_kernels.h.
#ifndef QK_KERNELS_X86_IGEMM_AVX2_KERNELS_H_
#define QK_KERNELS_X86_IGEMM_AVX2_KERNELS_H_

#if !defined(__AVX2__)
#error "igemm_avx2_kernels.h needs the qk::avx2 compile flags"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "igemm_common.h"
#include "qk/kernels.h"
#include "qk/threadpool.h"

namespace qk {
namespace avx2 {
namespace {

using igemm_common::ceil_div;
using igemm_common::load_u32;
using igemm_common::round_up;

constexpr int kMR = 6;
constexpr int kNR = 16;              // columns per panel (2 ymm of 8 dwords)
constexpr int64_t kKC = 512;         // max K block; packed panel 512 x 16 x 2 bytes = 16 KiB (L1)
constexpr int64_t kMC = 40 * kMR;    // rows of A per L2 block
constexpr int64_t kNtMax = 512;      // max columns per item: packed B block <= 512 KiB (L2)
constexpr int64_t kAS = kKC + 32;    // row stride (int16 elements) of the widened A copy

// Loads n (0..16) bytes into the low bytes of an xmm, zero elsewhere, reading only those n bytes.
inline __m128i load_partial16(const int8_t* p, int64_t n) {
  if (n >= 16) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  alignas(16) int8_t tmp[16] = {};
  if (n > 0) std::memcpy(tmp, p, static_cast<std::size_t>(n));
  return _mm_load_si128(reinterpret_cast<const __m128i*>(tmp));
}

// B source: a plain int8 matrix B[K, N] with leading dimension ldb.
struct Int8Source {
  const int8_t* B;
  int64_t ldb;
  // Start of row k at column j (j a multiple of kNR), its leading dimension and the bytes ncols columns span.
  const int8_t* row(int64_t k, int64_t j) const { return B + k * ldb + j; }
  int64_t ld() const { return ldb; }
  static int64_t bytes(int64_t ncols) { return ncols; }
  // Columns [16p, 16p + 16) of the row at r as 16 int8 values; columns at or past n (n in [1, 16]) are 0 and
  // are not read.
  static __m128i load(const int8_t* r, int64_t p, int64_t n) { return load_partial16(r + p * kNR, n); }
};

// Packs B[0 : kc, 0 : ncols] (the item's block, row k at src.row(k0 + k, j0)) into ceil(ncols / 16) panels
// (layout above), panel p at dst + p * panel_stride bytes. prefetch: also prefetch the rows 16 pairs ahead.
template <class Src>
void pack_b(const Src& src, int64_t k0, int64_t j0, int64_t kc, int64_t ncols, int16_t* dst, int64_t panel_stride,
            bool prefetch) {
  constexpr int64_t kAhead = 16;
  const int64_t pairs = ceil_div(kc, 2);
  const int64_t panels = ceil_div(ncols, kNR);
  const int64_t ld = src.ld();
  const int64_t nbytes = Src::bytes(ncols);
  const int8_t* base = src.row(k0, j0);
  if (prefetch) {
    for (int64_t k = 0; k < std::min(kc, 2 * kAhead); ++k)
      for (int64_t c = 0; c < nbytes; c += 64) _mm_prefetch(reinterpret_cast<const char*>(base + k * ld + c), _MM_HINT_T0);
  }
  for (int64_t q = 0; q < pairs; ++q) {
    const int8_t* r0p = base + 2 * q * ld;
    const bool has_r1 = 2 * q + 1 < kc;
    if (prefetch && q + kAhead < pairs) {
      const int64_t kend = std::min(kc, 2 * (q + kAhead + 1));
      for (int64_t k = 2 * (q + kAhead); k < kend; ++k)
        for (int64_t c = 0; c < nbytes; c += 64) _mm_prefetch(reinterpret_cast<const char*>(base + k * ld + c), _MM_HINT_T0);
    }
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t n = std::min<int64_t>(kNR, ncols - p * kNR);
      const __m128i r0 = Src::load(r0p, p, n);
      const __m128i r1 = has_r1 ? Src::load(r0p + ld, p, n) : _mm_setzero_si128();
      // Byte pairs (row 2q, row 2q+1) for columns 0-7 and 8-15, then sign-extended to int16 pairs.
      const __m256i w0 = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(r0, r1));
      const __m256i w1 = _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(r0, r1));
      int16_t* d = reinterpret_cast<int16_t*>(reinterpret_cast<uint8_t*>(dst) + p * panel_stride) + q * 32;
      _mm256_store_si256(reinterpret_cast<__m256i*>(d), w0);
      _mm256_store_si256(reinterpret_cast<__m256i*>(d + 16), w1);
    }
  }
}

// Widens rows A[0 : rows, 0 : kc] (lda apart) to int16 into dst (row stride kAS), zero-padding to even kc.
inline void copy_a(const int8_t* A, int64_t lda, int64_t rows, int64_t kc, int16_t* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    const int8_t* s = A + r * lda;
    int16_t* d = dst + r * kAS;
    int64_t k = 0;
    for (; k + 16 <= kc; k += 16) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + k),
                          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + k))));
    }
    for (; k < kc; ++k) d[k] = s[k];
    if (kc & 1) d[kc] = 0;
  }
}

// acc + vpmaddwd(a, b). Inline asm so that the sum lands back in the accumulator register: GCC 12 gives the
// intrinsic form a fresh destination plus a register copy (or a stack spill) per accumulator and step.
inline __m256i madd_acc(__m256i acc, __m256i a, __m256i b) {
#if defined(__GNUC__)
  __m256i t;
  __asm__("vpmaddwd %3, %2, %1\n\tvpaddd %1, %0, %0" : "+x"(acc), "=&x"(t) : "x"(a), "xm"(b));
  return acc;
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

// Stores one row: first K block -> C = acc, else C += acc; full tiles use plain stores, a column tail
// (ncols < 16) uses vpmaskmovd with masks m0/m1 (never touching memory past the valid columns).
inline void store_row(int32_t* cr, bool first, bool full, __m256i m0, __m256i m1, __m256i x0, __m256i x1) {
  if (full) {
    __m256i* p0 = reinterpret_cast<__m256i*>(cr);
    __m256i* p1 = reinterpret_cast<__m256i*>(cr + 8);
    if (!first) {
      x0 = _mm256_add_epi32(x0, _mm256_loadu_si256(p0));
      x1 = _mm256_add_epi32(x1, _mm256_loadu_si256(p1));
    }
    _mm256_storeu_si256(p0, x0);
    _mm256_storeu_si256(p1, x1);
  } else {
    int* p0 = reinterpret_cast<int*>(cr);
    int* p1 = reinterpret_cast<int*>(cr + 8);
    if (!first) {
      x0 = _mm256_add_epi32(x0, _mm256_maskload_epi32(p0, m0));
      x1 = _mm256_add_epi32(x1, _mm256_maskload_epi32(p1, m1));
    }
    _mm256_maskstore_epi32(p0, m0, x0);
    _mm256_maskstore_epi32(p1, m1, x1);
  }
}

// C[MR x ncols] (+)= A[MR x 2kq] * panel.  a: widened A copy, row r at a + r * kAS; b: packed panel of kq
// k-pairs; first: store (first K block) instead of accumulate; ncols in [1, 16].
// Named accumulators (not an array) so that GCC keeps them in registers.
template <int MR>
void micro_kernel(int64_t kq, const int16_t* a, const int16_t* b, int32_t* c, int64_t ldc, bool first,
                  int64_t ncols) {
  static_assert(MR >= 1 && MR <= 6, "MR");
  for (int r = 0; r < MR; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 15), _MM_HINT_T0);
  }
  const __m256i z = _mm256_setzero_si256();
  __m256i c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z,
          c51 = z;
#define QK_IGEMM_ROW(r)                                                                       \
  if constexpr (MR > r) {                                                                     \
    const __m256i av = _mm256_set1_epi32(static_cast<int>(load_u32(a + r * kAS)));           \
    c##r##0 = madd_acc(c##r##0, av, b0);                                                      \
    c##r##1 = madd_acc(c##r##1, av, b1);                                                      \
  }
  for (int64_t q = 0; q < kq; ++q) {
    const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b));
    const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + 16));
    QK_IGEMM_ROW(0)
    QK_IGEMM_ROW(1)
    QK_IGEMM_ROW(2)
    QK_IGEMM_ROW(3)
    QK_IGEMM_ROW(4)
    QK_IGEMM_ROW(5)
    a += 2;
    b += 32;
  }
#undef QK_IGEMM_ROW
  const bool full = ncols >= 16;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(ncols)), lane);
  const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(ncols) - 8), lane);
  store_row(c, first, full, m0, m1, c00, c01);
  if constexpr (MR > 1) store_row(c + ldc, first, full, m0, m1, c10, c11);
  if constexpr (MR > 2) store_row(c + 2 * ldc, first, full, m0, m1, c20, c21);
  if constexpr (MR > 3) store_row(c + 3 * ldc, first, full, m0, m1, c30, c31);
  if constexpr (MR > 4) store_row(c + 4 * ldc, first, full, m0, m1, c40, c41);
  if constexpr (MR > 5) store_row(c + 5 * ldc, first, full, m0, m1, c50, c51);
}

using KernelFn = void (*)(int64_t, const int16_t*, const int16_t*, int32_t*, int64_t, bool, int64_t);
constexpr KernelFn kKernels[7] = {nullptr,          micro_kernel<1>, micro_kernel<2>, micro_kernel<3>,
                                        micro_kernel<4>, micro_kernel<5>, micro_kernel<6>};

// The blocked driver: C[M, N] = A[M, K] * B[K, N] (B read through src). M, N, K >= 1. After the last K block
// of each item, epilogue(i0, i1, j0, j1) is called (on the worker that computed it) with the item's finished
// rectangle of C. Returns OUT_OF_MEMORY if the per-worker scratch cannot be allocated (before any work).
template <class Src, class Epilogue>
Status igemm_driver(int64_t M, int64_t N, int64_t K, const int8_t* A, int64_t lda, const Src& src, int32_t* C,
                    int64_t ldc, ThreadPool* pool, const Epilogue& epilogue) {
  const int threads = pool != nullptr ? pool->num_threads() : 1;
  const igemm_common::Plan plan = igemm_common::make_plan(M, N, kMR, kNR, kNtMax, threads);

  // K blocks of equal size (even, except that the last may end on K).
  const int64_t kblocks = ceil_div(K, kKC);
  const int64_t kc_step = round_up(ceil_div(K, kblocks), 2);

  // Per worker: the packed B block (kc_step x Nt int16) followed by the A copy (MC x kAS int16).
  const std::size_t bblock_bytes = static_cast<std::size_t>(kc_step * plan.nt * 2);
  const std::size_t slot_bytes = bblock_bytes + static_cast<std::size_t>(kMC * kAS * 2);
  igemm_common::Scratch scratch(slot_bytes * static_cast<std::size_t>(plan.workers));
  if (scratch.data() == nullptr) return QK_STATUS_OUT_OF_MEMORY;

  const auto item_fn = [&](int64_t item, int slot) {
    const int64_t im = item / plan.items_n;
    const int64_t in = item % plan.items_n;
    const int64_t i0 = im * plan.mt;
    const int64_t i1 = std::min(M, i0 + plan.mt);
    const int64_t j0 = in * plan.nt;
    const int64_t j1 = std::min(N, j0 + plan.nt);
    const int64_t panels = ceil_div(j1 - j0, kNR);
    uint8_t* base = scratch.data() + slot_bytes * static_cast<std::size_t>(slot);
    int16_t* bbuf = reinterpret_cast<int16_t*>(base);
    int16_t* abuf = reinterpret_cast<int16_t*>(base + bblock_bytes);
    const int64_t calls = ceil_div(i1 - i0, kMR) * panels;  // micro-kernel calls per K block
    // With few rows the multiplication is too short to hide a block's worth of prefetches (they would be
    // issued in bursts and stall); then each pack prefetches its own rows a few groups ahead instead.
    const bool prefetch_next = i1 - i0 >= 4 * kMR;
    for (int64_t k0 = 0; k0 < K; k0 += kc_step) {
      const int64_t kc = std::min(kc_step, K - k0);
      const int64_t kq = ceil_div(kc, 2);
      const int64_t panel_bytes = kq * kNR * 4;
      pack_b(src, k0, j0, kc, j1 - j0, bbuf, panel_bytes, /*prefetch=*/k0 == 0 || !prefetch_next);
      igemm_common::BlockPrefetcher pf;
      if (prefetch_next && k0 + kc < K) {
        pf = igemm_common::BlockPrefetcher(src.row(k0 + kc, j0), src.ld(), std::min(kc_step, K - k0 - kc),
                                           Src::bytes(j1 - j0), calls);
      }
      const bool first = k0 == 0;
      for (int64_t ic = i0; ic < i1; ic += kMC) {
        const int64_t ie = std::min(i1, ic + kMC);
        copy_a(A + ic * lda + k0, lda, ie - ic, kc, abuf);
        for (int64_t p = 0; p < panels; ++p) {
          const int64_t c0 = j0 + p * kNR;
          const int64_t ncols = std::min<int64_t>(kNR, j1 - c0);
          const int16_t* bp = reinterpret_cast<const int16_t*>(reinterpret_cast<const uint8_t*>(bbuf) + p * panel_bytes);
          for (int64_t ir = ic; ir < ie; ir += kMR) {
            const int mr = static_cast<int>(std::min<int64_t>(kMR, ie - ir));
            pf.step();
            kKernels[mr](kq, abuf + (ir - ic) * kAS, bp, C + ir * ldc + c0, ldc, first, ncols);
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
}  // namespace avx2
}  // namespace qk

#endif  // QK_KERNELS_X86_IGEMM_AVX2_KERNELS_H_
