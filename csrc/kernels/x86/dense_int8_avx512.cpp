// quantkit — fused W8A8 / W4A8 Dense forward, AVX-512 VNNI (qk::avx512). Bit-exact with ref/dense_int8_ref.cpp.
//
// Phases (dense_int8_common.h):
//   1. Prologue: qk::avx512::absmax_quantize on the axis view [rows, K, 1] (bit-exact with the reference by
//      that kernel's contract) gives qx [M, K] and sx [M]; the VNNI row compensation 128 * rowsum(qx) is
//      taken while the row is hot. Rows are split over the pool.
//   2. The VNNI GEMM engine of igemm_avx512_kernels.h on qx and the weights. int8 weights use Int8Source;
//      int4 weights use Int4Source below, which expands 32 packed bytes into the 64 columns of one panel row
//      in registers while the B block is packed (the packed block is per item and K block, <= 256 KiB), so
//      the int4 kernel is never expanded as a whole and is read from memory once per item (once in total
//      when M is not split, e.g. M = 1).
//      The int32 accumulators live in y (reinterpreted; only touched through vector intrinsics, whose
//      types may alias anything).
//   3. Epilogue after each item's last K block, on its rectangle while it is in cache:
//      d = w_scale[j] * sx_i; v = cvt(acc) / d; y = v + bias[j]; NaN -> canonical NaN. vcvtdq2ps rounds by
//      MXCSR like the scalar conversion, vmulps / vdivps / vaddps are the same correctly rounded IEEE
//      operations as the reference's (this unit is built with -ffp-contract=off and nothing here is fused),
//      so every output is bit-identical.
// Decode (M = 1) has its own streaming GEMV (below) that reads the weights exactly once, without packing.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "dense_int8_common.h"
#include "igemm_avx512_kernels.h"
#include "qk/kernels.h"
#include "qk/packed.h"
#include "qk/quant_math.h"
#include "qk/threadpool.h"

namespace qk {
namespace avx512 {
namespace {

// B source for Keras int4 Dense storage w4 [K, ldw = (N+1)/2]: element (k, j) is the signed nibble j % 2
// (0 = low) of byte k * ldw + j / 2. Item column offsets are multiples of kNR = 64, so a panel of 64 columns
// starts on a byte boundary and spans 32 bytes.
struct Int4Source {
  const uint8_t* w4;
  int64_t ldw;
  const int8_t* row(int64_t k, int64_t j) const { return reinterpret_cast<const int8_t*>(w4 + k * ldw + j / 2); }
  int64_t ld() const { return ldw; }
  static int64_t bytes(int64_t ncols) { return (ncols + 1) / 2; }
  // Columns [64p, 64p + 64) of the row at r as u8 (value + 128); columns at or past n (n in [1, 64]) are 0,
  // and only the ceil(n / 2) bytes holding columns below n are read.
  static __m512i load(const int8_t* r, int64_t p, int64_t n) {
    const int64_t nb = (n + 1) / 2;
    const __mmask32 bm = nb >= 32 ? ~__mmask32{0} : (__mmask32{1} << nb) - 1;
    const __m256i packed = _mm256_maskz_loadu_epi8(bm, r + p * (kNR / 2));
    // Word t = packed byte t (zero-extended); rebuild it as (low nibble, high nibble) = bytes (2t, 2t+1),
    // i.e. columns in natural order, each byte an unsigned nibble u in 0..15.
    const __m512i w = _mm512_cvtepu8_epi16(packed);
    const __m512i nib = _mm512_or_si512(_mm512_and_si512(w, _mm512_set1_epi16(0x000F)),
                                        _mm512_and_si512(_mm512_slli_epi16(w, 4), _mm512_set1_epi16(0x0F00)));
    // Signed value s = (u ^ 8) - 8 (qk_sign_extend4), so the packed operand s + 128 = (u ^ 8) + 120.
    return _mm512_maskz_add_epi8(low_mask64(n), _mm512_xor_si512(nib, _mm512_set1_epi8(8)),
                                 _mm512_set1_epi8(120));
  }
};

// Lanes [0, n) of 16 set.
inline __mmask16 lanes16(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }

// In place over one row segment of n outputs: y = (float)acc / (ws * sx) + b (b may be null), where acc is
// the int32 accumulator stored in y's bytes; NaN results become the canonical NaN.
void descale_row(float* yr, const float* ws, const float* b, float sx, int64_t n) {
  const __m512 sv = _mm512_set1_ps(sx);
  const __m512 nan = _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(kQkCanonicalNanBits)));
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = lanes16(n - j);
    const __m512i acc = _mm512_maskz_loadu_epi32(m, yr + j);
    const __m512 d = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, ws + j), sv);
    __m512 v = _mm512_maskz_div_ps(m, _mm512_cvtepi32_ps(acc), d);
    if (b != nullptr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, b + j));
    v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v, nan);
    _mm512_mask_storeu_ps(yr + j, m, v);
  }
}

// ---- M = 1 (decode GEMV) ------------------------------------------------------------------------------------
// The blocked path packs every B block once per item, which at M = 1 is as much work as the multiplication.
// Instead, y (one row) is accumulated directly from the weights as they stream by: a task owns a range of
// k-groups (4 rows) and of columns; per group it loads 4 row segments of 64 columns (Src::load: shifted to u8,
// int4 unpacked in registers), interleaves them into vpdpbusd operands with the byte/word unpacks of pack_b
// (the final 128-bit lane transpose is skipped: the accumulators keep the columns in that permuted order and
// are un-permuted once at the end) and adds them into int32 accumulators in L1/L2. Splitting K between tasks
// keeps every task's read of the weights one contiguous run of whole rows (chunks of <= kGemvCols columns), which
// the hardware prefetchers follow; each pool worker owns an accumulator row (integer sums commute, so the
// dynamic task order does not change the exact result), reduced at the end, minus the compensation
// 128 * sum(qx). kGemvCols covers the usual projection widths (11008 too) in one chunk: 4096-column chunks made
// every row a short segment of a longer row (a new page per row for the prefetchers) and measured 1.19x the
// time of whole rows at 4096 x 11008, cold (same process, alternated calls).
constexpr int64_t kGemvCols = 16384;     // columns per task: <= 64 KiB of int32 accumulators (L1/L2)
constexpr int64_t kGemvMinGroups = 32;   // at least 128 rows per task

template <class Src>
void gemv_task(const Src& src, const int8_t* q, int64_t K, int64_t g0, int64_t g1, int64_t j0, int64_t j1,
               int32_t* acc) {
  const int64_t panels = ceil_div(j1 - j0, kNR);
  const int64_t ld = src.ld();
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t k = 4 * g;
    const int rows = static_cast<int>(std::min<int64_t>(4, K - k));
    uint32_t a4 = 0;
    if (rows == 4) {
      a4 = load_u32(q + k);
    } else {
      for (int t = 0; t < rows; ++t) a4 |= static_cast<uint32_t>(static_cast<uint8_t>(q[k + t])) << (8 * t);
    }
    const __m512i av = _mm512_set1_epi32(static_cast<int>(a4));
    const int8_t* r0 = src.row(k, j0);
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t n = std::min<int64_t>(kNR, j1 - j0 - p * kNR);
      const __m512i b0 = Src::load(r0, p, n);
      const __m512i b1 = rows > 1 ? Src::load(r0 + ld, p, n) : _mm512_setzero_si512();
      const __m512i b2 = rows > 2 ? Src::load(r0 + 2 * ld, p, n) : _mm512_setzero_si512();
      const __m512i b3 = rows > 3 ? Src::load(r0 + 3 * ld, p, n) : _mm512_setzero_si512();
      const __m512i t0 = _mm512_unpacklo_epi8(b0, b1);
      const __m512i t1 = _mm512_unpackhi_epi8(b0, b1);
      const __m512i t2 = _mm512_unpacklo_epi8(b2, b3);
      const __m512i t3 = _mm512_unpackhi_epi8(b2, b3);
      // u_v, lane L, dword i <-> column 16L + 4v + i of the panel.
      int32_t* ap = acc + p * kNR;
      _mm512_store_si512(ap + 0, dpbusd(_mm512_load_si512(ap + 0), _mm512_unpacklo_epi16(t0, t2), av));
      _mm512_store_si512(ap + 16, dpbusd(_mm512_load_si512(ap + 16), _mm512_unpackhi_epi16(t0, t2), av));
      _mm512_store_si512(ap + 32, dpbusd(_mm512_load_si512(ap + 32), _mm512_unpacklo_epi16(t1, t3), av));
      _mm512_store_si512(ap + 48, dpbusd(_mm512_load_si512(ap + 48), _mm512_unpackhi_epi16(t1, t3), av));
    }
  }
}

// y[0, :] as int32 (into y's bytes) = q[0 : K] * B, for K >= 1, N >= 1.
template <class Src>
Status gemv(int64_t N, int64_t K, const int8_t* q, int32_t comp, const Src& src, int32_t* y, ThreadPool* pool) {
  const int threads = pool != nullptr ? pool->num_threads() : 1;
  const int64_t np = round_up(N, kNR);
  const int64_t groups = ceil_div(K, 4);
  const int64_t n_chunks = ceil_div(N, kGemvCols);
  int64_t k_chunks = 1;
  if (threads > 1) {
    k_chunks = ceil_div(int64_t{4} * threads, n_chunks);
    k_chunks = std::max<int64_t>(1, std::min(k_chunks, groups / kGemvMinGroups));
  }
  const int64_t g_step = ceil_div(groups, k_chunks);
  k_chunks = ceil_div(groups, g_step);
  const int64_t tasks = n_chunks * k_chunks;
  const int workers = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, tasks)));
  igemm_common::Scratch scratch(static_cast<std::size_t>(np * workers) * sizeof(int32_t));
  if (scratch.data() == nullptr) return QK_STATUS_OUT_OF_MEMORY;
  int32_t* accs = reinterpret_cast<int32_t*>(scratch.data());
  std::memset(accs, 0, static_cast<std::size_t>(np * workers) * sizeof(int32_t));
  igemm_common::run_items(pool, workers, tasks, [&](int64_t task, int slot) {
    const int64_t kc = task / n_chunks;
    const int64_t nc = task % n_chunks;
    const int64_t j0 = nc * kGemvCols;
    const int64_t j1 = std::min(N, j0 + kGemvCols);
    gemv_task(src, q, K, kc * g_step, std::min(groups, (kc + 1) * g_step), j0, j1, accs + slot * np + j0);
  });
  // Reduce the workers' rows, subtract the compensation and undo the column permutation of gemv_task.
  const __m512i cv = _mm512_set1_epi32(comp);
  for (int64_t p = 0; p < np / kNR; ++p) {
    __m512i s[4];
    for (int v = 0; v < 4; ++v) {
      s[v] = _mm512_sub_epi32(_mm512_load_si512(accs + p * kNR + 16 * v), cv);
      for (int w = 1; w < workers; ++w)
        s[v] = _mm512_add_epi32(s[v], _mm512_load_si512(accs + w * np + p * kNR + 16 * v));
    }
    // Natural column 16L + 4v + i sits in s[v] lane L dword i: output vector L is lane L of s[0..3], the
    // same 4x4 transpose of 128-bit lanes as in pack_b.
    const __m512i x0 = _mm512_shuffle_i64x2(s[0], s[1], 0x44);
    const __m512i x1 = _mm512_shuffle_i64x2(s[2], s[3], 0x44);
    const __m512i x2 = _mm512_shuffle_i64x2(s[0], s[1], 0xEE);
    const __m512i x3 = _mm512_shuffle_i64x2(s[2], s[3], 0xEE);
    const __m512i out[4] = {_mm512_shuffle_i64x2(x0, x1, 0x88), _mm512_shuffle_i64x2(x0, x1, 0xDD),
                            _mm512_shuffle_i64x2(x2, x3, 0x88), _mm512_shuffle_i64x2(x2, x3, 0xDD)};
    for (int L = 0; L < 4; ++L) {
      const int64_t c = p * kNR + 16 * L;
      if (c >= N) break;
      _mm512_mask_storeu_epi32(y + c, lanes16(N - c), out[L]);
    }
  }
  return kOk;
}

// packed != nullptr: the weights pre-packed (qk/packed.h, kAvx512Vnni; src unused): every M runs the blocked driver.
template <class Src>
Status dense_a8(int64_t M, int64_t N, int64_t K, const float* x, const Src& src, const float* w_scale,
                const float* bias, float act_lo, float act_hi, float act_eps, float* y, ThreadPool* pool,
                const uint8_t* packed = nullptr) {
  if (M <= 0 || N <= 0) return kOk;
  dense_int8_common::ActScratch act(M, K);
  if (!act.ok()) return QK_STATUS_OUT_OF_MEMORY;
  int8_t* qx = act.qx();
  float* sx = act.sx();
  int32_t* comp = act.comp();

  const auto epilogue = [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    for (int64_t i = i0; i < i1; ++i)
      descale_row(y + i * N + j0, w_scale + j0, bias != nullptr ? bias + j0 : nullptr, sx[i], j1 - j0);
  };
  if (K <= 0) {  // empty rows: amax = 0, acc = 0 (int32 0 has the bits of +0.0f)
    for (int64_t i = 0; i < M; ++i) sx[i] = qk_absmax_scale(0.0f, act_hi, act_eps);
    std::memset(y, 0, static_cast<std::size_t>(M * N) * sizeof(float));
    epilogue(0, M, 0, N);
    return kOk;
  }

  dense_int8_common::for_rows(pool, M, K, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      absmax_quantize(x + i * K, 1, K, 1, act_lo, act_hi, act_eps, qx + i * K, sx + i);
      comp[i] = row_comp(qx + i * K, K);
    }
  });
  if (M == 1 && packed == nullptr) {
    const Status st = gemv(N, K, qx, comp[0], src, reinterpret_cast<int32_t*>(y), pool);
    if (st == kOk) epilogue(0, 1, 0, N);
    return st;
  }
  return igemm_driver(M, N, K, qx, K, comp, src, reinterpret_cast<int32_t*>(y), N, pool, epilogue, packed);
}

}  // namespace

Status dense_w8a8(int64_t M, int64_t N, int64_t K, const float* x, const int8_t* w, const float* w_scale,
                  const float* bias, float act_lo, float act_hi, float act_eps, float* y, ThreadPool* pool) {
  return dense_a8(M, N, K, x, Int8Source{w, N}, w_scale, bias, act_lo, act_hi, act_eps, y, pool);
}

Status dense_w4a8(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* w4, const float* w_scale,
                  const float* bias, float act_lo, float act_hi, float act_eps, float* y, ThreadPool* pool) {
  return dense_a8(M, N, K, x, Int4Source{w4, (N + 1) / 2}, w_scale, bias, act_lo, act_hi, act_eps, y, pool);
}

static_assert(kNR == kPackedVnniNr, "the packed VNNI layout (qk/packed.h) is the micro-kernel's panel");

// Pre-packed W8A8 weights (qk/packed.h, kAvx512Vnni): pack_b, the per-call packer of the blocked driver, run once
// over the whole matrix, so the bytes are exactly those the driver would pack per call. Tasks: runs of 256 rows x
// up to 1024 columns (each reads its rows front to back).
void pack_w8a8_weights(int64_t K, int64_t N, const int8_t* w, uint8_t* dst, ThreadPool* pool) {
  constexpr int64_t kRows = 256, kCols = 1024;
  const int64_t kp = round_up(K, 4);
  const int64_t k_tasks = ceil_div(K, kRows), n_tasks = ceil_div(N, kCols);
  const Int8Source src{w, N};
  const auto run = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t k0 = (t / n_tasks) * kRows, j0 = (t % n_tasks) * kCols;
      pack_b(src, k0, j0, std::min(kRows, K - k0), std::min(kCols, N - j0), dst + (j0 / kNR) * kp * kNR + k0 * kNR,
             kp * kNR, /*prefetch=*/true);
    }
  };
  if (K <= 0 || N <= 0) return;
  if (pool == nullptr) {
    run(0, k_tasks * n_tasks);
  } else {
    pool->parallel_for(k_tasks * n_tasks, 1, run);
  }
}

Status dense_w8a8_packed(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* wp, const float* w_scale,
                         const float* bias, float act_lo, float act_hi, float act_eps, float* y, ThreadPool* pool) {
  return dense_a8(M, N, K, x, Int8Source{nullptr, N}, w_scale, bias, act_lo, act_hi, act_eps, y, pool, wp);
}

}  // namespace avx512
}  // namespace qk
