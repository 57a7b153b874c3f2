// quantkit — ISA-independent driver of the blocked float32 GEMM (private to sgemm_avx2.cpp / sgemm_avx512.cpp).
//
// Everything here lives in an anonymous namespace: each ISA translation unit that includes this header gets
// its own internal copy, compiled with that unit's flags. Nothing compiled with AVX-512 flags can therefore be
// picked by the linker for the AVX2 or generic paths (no ODR mixing across ISA flags).
//
// The ISA unit supplies a policy type P with
//   static constexpr int64_t MR, NR   micro-tile (rows of A x columns of B kept in registers)
//   static constexpr int64_t KC       maximum depth of one K block
//   static constexpr int64_t AS       row stride (floats) of the packed A micro-panel, KC + padding
//   static constexpr int64_t NT_MAX   maximum width (multiple of NR) of the column tile one task owns
//   static KernelFn kernel(int rows)  micro-kernel for 1 <= rows <= MR (see KernelFn below)
//   static void copy_nr(float* dst, const float* src)   copies NR floats (dst 64-byte aligned)
//   static void gemv(int64_t K, const float* a, const float* b, int64_t ldb, float* c, int64_t n)
//       c[0..n) = a[0..K) * B where B row k is b + k*ldb (the M == 1 case)
//
// Algorithm (Goto/BLIS-style blocking; the loop order keeps the A micro-panel in L1 and the packed B block
// in L2):
//   C is cut into tasks: rectangles of Mt rows x Nt columns (Mt a multiple of MR, Nt of NR, Nt <= NT_MAX).
//   Tasks are independent (each packs what it needs into a per-thread scratch buffer), so they are handed
//   to the thread pool dynamically, which also balances load when a core is busy with something else.
//   Per task:
//     for each K block [p0, p0 + kc):                               (kc <= KC, blocks of equal size)
//       pack B[p0:p0+kc, n0:n1] into NR-wide panels, each kc x NR contiguous, zero-padded past n1 (-> L2)
//       for each MR-row micro-panel of A:
//         copy its rows A[i, p0:p0+kc] into `ap` with row stride AS (plain row copies, no transpose;
//         the padded stride avoids the cache-set aliasing of a power-of-two lda)               (-> L1)
//         for each B panel: micro-kernel C[MR x NR] (+)= ap * panel
//   The first K block stores its result, later blocks load C and keep accumulating, so each C element is
//   one chain of fused multiply-adds in ascending k order (the reference's order, differing only by the
//   rounding of the fused operations). Columns past N in the last panel are computed into a staging tile
//   and only the valid ones are copied out, so kernels never need masks and never touch memory past C.
//
// Small M (a few tokens) is bound by streaming B from memory; M <= kSmallM has its own path (small_m_gemm): it
// reads B in place but, unlike the blocked path would, as one contiguous run per task (a K range of whole rows,
// walked in L2-sized k-blocks), so the prefetchers follow it. (Reading B in place column panel by column panel
// was measured about 2x slower: 16 KB-strided 128-byte row segments defeat the hardware prefetchers and the TLB.)
// M == 1 has its own GEMV routine (P::gemv), which streams rows of B without packing; gemv_split_k (below) splits
// it over K so that each task reads one contiguous run of B.
#ifndef QK_KERNELS_X86_SGEMM_COMMON_H_
#define QK_KERNELS_X86_SGEMM_COMMON_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>

#include "qk/kernels.h"
#include "qk/threadpool.h"

namespace qk {
namespace sgemm_common {
namespace {

// Micro-kernel: C[rows x NR] (+)= A_panel[rows x kc] * B_panel[kc x NR].
//   a: row r of the A micro-panel starts at a + r * AS (kc floats);
//   b: packed panel, kc rows of NR floats, 64-byte aligned;
//   c: row r at c + r * ldc (unaligned allowed); accumulate: false -> start from 0, true -> start from C;
//   pf, npf: also prefetch (into L2) the npf 64-byte lines at pf, one per k step of the first npf (npf <= kc; 0: none).
using KernelFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate,
                          const float* pf, int64_t npf);
// The same micro-kernel reading B in place: row k of the NR-wide panel at b + k * ldb (unaligned).
using KernelLdFn = void (*)(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc,
                            bool accumulate);

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

constexpr std::size_t kScratchAlign = 64;

// Per-thread scratch buffer, grown on demand and kept for the life of the thread (the pool's helper threads
// live for the whole process), so repeated calls do not pay for allocation and page faults. Its size is
// bounded by the blocking constants, not by the problem size (well under 2 MB).
class ThreadScratch {
 public:
  ThreadScratch() = default;
  ThreadScratch(const ThreadScratch&) = delete;
  ThreadScratch& operator=(const ThreadScratch&) = delete;
  ~ThreadScratch() { release(); }

  // Returns a 64-byte aligned buffer of at least `floats` floats, or nullptr if it cannot be allocated.
  float* get(std::size_t floats) {
    if (floats > capacity_) {
      release();
      void* p = ::operator new[](floats * sizeof(float), std::align_val_t(kScratchAlign), std::nothrow);
      if (p == nullptr) return nullptr;
      data_ = static_cast<float*>(p);
      capacity_ = floats;
    }
    return data_;
  }

 private:
  void release() {
    if (data_ != nullptr) ::operator delete[](data_, std::align_val_t(kScratchAlign));
    data_ = nullptr;
    capacity_ = 0;
  }
  float* data_ = nullptr;
  std::size_t capacity_ = 0;
};

inline float* thread_scratch(std::size_t floats) {
  thread_local ThreadScratch scratch;
  return scratch.get(floats);
}

struct GemmArgs {
  int64_t M, N, K;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float* C;
  int64_t ldc;
};

// Scratch layout (floats, every part 64-byte aligned since all sizes are multiples of 16 floats):
//   [packed B block: KC * NT_MAX][A micro-panel: MR * AS][staging tile: MR * NR]
template <class P>
constexpr int64_t a_area_floats() {
  return round_up(P::MR * P::AS, 16);
}
template <class P>
constexpr std::size_t scratch_floats() {
  return static_cast<std::size_t>(P::KC * P::NT_MAX + a_area_floats<P>() + round_up(P::MR * P::NR, 16));
}

// The three parts of one task's scratch buffer (layout above).
struct TileBuffers {
  float* bp;  // packed B block, KC x NT_MAX
  float* ap;  // A micro-panel, MR rows of stride AS
  float* ct;  // staging tile for edge panels, MR x NR
};
template <class P>
inline TileBuffers tile_buffers(float* scratch) {
  float* const ap = scratch + P::KC * P::NT_MAX;
  return TileBuffers{scratch, ap, ap + a_area_floats<P>()};
}

// K block size for a depth of K (K >= 1): blocks of (nearly) equal size, a multiple of 8 and at most kc_max
// (<= P::KC, a multiple of 8).
template <class P>
inline int64_t k_block_size(int64_t K, int64_t kc_max = P::KC) {
  const int64_t kblocks = ceil_div(K, kc_max);
  return std::min<int64_t>(kc_max, round_up(ceil_div(K, kblocks), 8));
}

// The task grid of an M x N output: mb x nb rectangles of mt rows x nt columns (the last row / column of
// rectangles may be smaller). mt is a multiple of P::MR, nt a multiple of P::NR and at most P::NT_MAX.
struct TaskGrid {
  int64_t mt, nt;
  int64_t mb, nb;
};

// Start with the widest column tile and all rows, then halve the larger side until there are about 6 tasks per
// thread, keeping tiles at least 4 micro-tiles on a side. Several tasks per thread let the dynamic hand-out
// balance the load when a core is also busy with other work (the machine may be shared); smaller tasks repack
// more of A and B, which costs a few percent at most at the minimum size.
template <class P>
TaskGrid split_tasks(int64_t M, int64_t N, int threads) {
  constexpr int64_t MR = P::MR, NR = P::NR;
  int64_t mt = round_up(M, MR);
  int64_t nt = std::min(round_up(N, NR), P::NT_MAX);
  const int64_t target = threads > 1 ? 6 * int64_t{threads} : 1;
  const int64_t mt_min = 4 * MR, nt_min = 4 * NR;
  auto count = [&] { return ceil_div(M, mt) * ceil_div(N, nt); };
  while (count() < target) {
    const bool can_m = mt >= 2 * mt_min, can_n = nt >= 2 * nt_min;
    if (can_m && (mt >= nt || !can_n)) {
      mt = round_up(ceil_div(mt, 2), MR);
    } else if (can_n) {
      nt = round_up(ceil_div(nt, 2), NR);
    } else if (mt > MR && count() < threads) {  // tiny problem: still give every thread something
      mt = round_up(ceil_div(mt, 2), MR);
    } else if (nt > NR && count() < threads) {
      nt = round_up(ceil_div(nt, 2), NR);
    } else {
      break;
    }
  }
  // Even out the tiles (same count, sizes differing by at most one micro-tile).
  mt = round_up(ceil_div(M, ceil_div(M, mt)), MR);
  nt = round_up(ceil_div(N, ceil_div(N, nt)), NR);
  return TaskGrid{mt, nt, ceil_div(M, mt), ceil_div(N, nt)};
}

// Prefetches the next K block's rows of B into L2 while the current block is computed, spread evenly over the
// `calls` micro-kernel calls of the block (call step() before each), so that packing the next block finds them
// there (matters when M is small and B streams from DRAM). row(r) is the address of the first byte to fetch
// of the next block's row r; each row is fetched as ceil(row_bytes / 64) + 1 cache lines (+1: the run need
// not start at a line boundary).
template <class RowAddr>
class NextBlockPrefetcher {
 public:
  NextBlockPrefetcher(int64_t rows, int64_t row_bytes, int64_t calls, const RowAddr& row)
      : rows_(rows),
        row_lines_(ceil_div(row_bytes, 64) + 1),
        per_call_(rows > 0 ? ceil_div(rows * row_lines_, calls) : 0),
        row_(row) {}

  void step() {
    for (int64_t q = 0; q < per_call_ && pf_row_ < rows_; ++q) {
      const void* const row = row_(pf_row_);
      __builtin_prefetch(static_cast<const char*>(row) + pf_line_ * 64, 0, 2);
      if (++pf_line_ == row_lines_) {
        pf_line_ = 0;
        ++pf_row_;
      }
    }
  }

 private:
  const int64_t rows_, row_lines_, per_call_;
  const RowAddr row_;
  int64_t pf_row_ = 0, pf_line_ = 0;
};

// Runs a packed-B kernel on a panel of `cols` valid columns: in place when cols == NR, otherwise through the
// staging tile `ct` so that nothing past column N is read or written.
template <class P>
inline void run_panel(KernelFn kern, int rows, int64_t cols, int64_t kc, const float* a, const float* b, float* c,
                      int64_t ldc, bool accumulate, float* ct, const float* pf = nullptr, int64_t npf = 0) {
  constexpr int64_t NR = P::NR;
  if (cols == NR) {
    kern(kc, a, b, c, ldc, accumulate, pf, npf);
    return;
  }
  if (accumulate) {
    for (int r = 0; r < rows; ++r) {
      std::memcpy(ct + r * NR, c + r * ldc, static_cast<std::size_t>(cols) * sizeof(float));
    }
  }
  kern(kc, a, b, ct, NR, accumulate, pf, npf);
  for (int r = 0; r < rows; ++r) std::memcpy(c + r * ldc, ct + r * NR, static_cast<std::size_t>(cols) * sizeof(float));
}

// Computes the task C[m0:m1, n0:n1] over all of K (K >= 1).
// packed == nullptr: B is packed here, per K block (below). Otherwise packed is B already in the panel layout
// (qk/packed.h, kAvx512F32: panel q = columns [q * NR, q * NR + NR) holds all K rows of NR floats at
// packed + q * K * NR): the K block of panel jp is then read in place, packed + (n0 / NR + jp) * K * NR + p0 * NR,
// kc rows of NR floats exactly as the per-call packing would have written them, so the micro-kernel calls, and
// with them every result bit, are the same.
template <class P>
void compute_tile(const GemmArgs& g, int64_t kc_block, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                  float* scratch, const float* packed = nullptr) {
  constexpr int64_t MR = P::MR, NR = P::NR, AS = P::AS;
  const TileBuffers buf = tile_buffers<P>(scratch);
  float* const bp = buf.bp;
  float* const ap = buf.ap;
  float* const ct = buf.ct;
  const int64_t width = n1 - n0;
  const int64_t npanels = ceil_div(width, NR);

  for (int64_t p0 = 0; p0 < g.K; p0 += kc_block) {
    const int64_t kc = std::min(kc_block, g.K - p0);
    const bool accumulate = p0 > 0;

    // B panels of this K block: panel jp at bblk + jp * pstride.
    const float* bblk = bp;
    int64_t pstride = kc * NR;
    if (packed != nullptr) {
      bblk = packed + (n0 / NR) * g.K * NR + p0 * NR;
      pstride = g.K * NR;
    }
    // Pack B: read row by row (contiguous), scatter into the NR-wide panels.
    for (int64_t k = 0; packed == nullptr && k < kc; ++k) {
      const float* src = g.B + (p0 + k) * g.ldb + n0;
      float* dst = bp + k * NR;
      for (int64_t jp = 0; jp < npanels; ++jp, src += NR, dst += kc * NR) {
        const int64_t cols = std::min(NR, width - jp * NR);
        if (cols == NR) {
          P::copy_nr(dst, src);
        } else {
          std::memcpy(dst, src, static_cast<std::size_t>(cols) * sizeof(float));
          std::memset(dst + cols, 0, static_cast<std::size_t>(NR - cols) * sizeof(float));
        }
      }
    }

    // Row micro-panels of balanced height (128 rows -> 8 x 13 + 2 x 12, not 9 x 14 + 2): a short last panel runs
    // the micro-kernel with too few independent accumulator chains to hide the FMA latency.
    const int64_t row_tiles = ceil_div(m1 - m0, MR);
    const int64_t row_base = (m1 - m0) / row_tiles, row_extra = (m1 - m0) % row_tiles;

    // While this block is computed, prefetch the next K block of B into L2. Per-call packing: the next block's
    // rows, a few lines before each kernel call. Pre-packed: inside the micro-kernel, one line per k step; the
    // row_tiles calls on panel jp take consecutive segments of panel jp's next K block (its run of kc_next * NR
    // floats right after this block's). Issued as a burst before each call (~77 lines per call at M = 128), these
    // prefetches stalled on the line-fill buffers; spread over the k loop they are hidden.
    const int64_t kc_next = std::min(kc_block, g.K - (p0 + kc));
    const float* const next_b = packed == nullptr ? g.B + (p0 + kc) * g.ldb + n0 : nullptr;
    const auto next_row = [&](int64_t r) { return next_b + r * g.ldb; };
    NextBlockPrefetcher<decltype(next_row)> prefetch(packed == nullptr && kc_next > 0 ? kc_next : 0,
                                                     width * int64_t{sizeof(float)}, row_tiles * npanels, next_row);
    const int64_t next_lines = packed != nullptr && kc_next > 0 ? ceil_div(kc_next * NR * int64_t{sizeof(float)}, 64) : 0;
    const int64_t seg = std::min(kc, ceil_div(next_lines, row_tiles));

    for (int64_t t = 0, i0 = m0; t < row_tiles; ++t) {
      const int rows = static_cast<int>(row_base + (t < row_extra ? 1 : 0));
      for (int r = 0; r < rows; ++r) {
        std::memcpy(ap + r * AS, g.A + (i0 + r) * g.lda + p0, static_cast<std::size_t>(kc) * sizeof(float));
      }
      const KernelFn kern = P::kernel(rows);
      float* crow = g.C + i0 * g.ldc + n0;
      const int64_t first_line = t * seg;
      const int64_t npf = std::max<int64_t>(0, std::min(seg, next_lines - first_line));
      for (int64_t jp = 0; jp < npanels; ++jp) {
        const int64_t cols = std::min(NR, width - jp * NR);
        prefetch.step();
        const float* bpan = bblk + jp * pstride;
        run_panel<P>(kern, rows, cols, kc, ap, bpan, crow + jp * NR, g.ldc, accumulate, ct, bpan + kc * NR + first_line * 16,
                     npf);
      }
      i0 += rows;
    }
  }
}

// Runs fn(task) for task in [0, n): on the pool when there is one worth using, else inline.
template <class Fn>
void run_tasks(ThreadPool* pool, int threads, int64_t n, const Fn& fn) {
  if (pool == nullptr || threads <= 1 || n <= 1) {
    for (int64_t t = 0; t < n; ++t) fn(t);
  } else {
    pool->run(n, fn);
  }
}

// M == 1 (decode GEMV, memory bound). B is read exactly once, so what matters is how it is read: a task owns a
// range of K (whole rows) and a column range of at most kGemvCols columns, so that when N <= kGemvCols its read of
// B is ONE contiguous run of memory (rows k0..k1-1 back to back), which the hardware prefetchers follow at full
// speed (splitting N instead makes every task read short row segments 4 * N bytes apart: one new page per row,
// and the prefetchers restart at every page). Each task writes its own partial sums (the task with the first K
// range writes C directly); the partials are then added to C in task order, so the result does not depend on
// which thread ran which task.
constexpr int64_t kGemvCols = 16384;    // columns per task (<= 64 KiB of partial sums, L1/L2)
constexpr int64_t kGemvMinRows = 256;   // rows per task at least (the reduction reads tasks x N floats)

// The task grid of the K-split paths: n_chunks column ranges of n_step columns (a multiple of align, at most
// ~kGemvCols) times k_chunks ranges of k_step rows (about per_thread tasks per thread, >= kGemvMinRows rows each).
struct KSplit {
  int64_t n_chunks, n_step, k_chunks, k_step;
};
inline KSplit k_split(int64_t N, int64_t K, int threads, int64_t per_thread, int64_t align) {
  KSplit s;
  s.n_chunks = ceil_div(N, kGemvCols);
  s.n_step = round_up(ceil_div(N, s.n_chunks), align);
  int64_t k_chunks = 1;
  if (threads > 1) {
    k_chunks = ceil_div(per_thread * threads, s.n_chunks);
    k_chunks = std::max<int64_t>(1, std::min(k_chunks, K / kGemvMinRows));
  }
  s.k_step = ceil_div(K, k_chunks);
  s.k_chunks = ceil_div(K, s.k_step);
  return s;
}

template <class P>
Status gemv_split_k(int64_t N, int64_t K, const float* A, const float* B, int64_t ldb, float* C, ThreadPool* pool,
                    int threads) {
  const KSplit ks = k_split(N, K, threads, 4, 16);
  const int64_t n_chunks = ks.n_chunks, n_step = ks.n_step, k_chunks = ks.k_chunks, k_step = ks.k_step;
  // The partial sums live in the calling thread's scratch (kept between calls: no allocation, no page faults
  // per call). The GEMV tasks never use thread scratch themselves, so the caller taking part in them is safe.
  // Size: (k_chunks - 1) * N <= 4 * threads * kGemvCols floats (512 KiB with 2 threads) whatever N.
  float* part = nullptr;
  if (k_chunks > 1) {
    part = thread_scratch(static_cast<std::size_t>((k_chunks - 1) * N));
    if (part == nullptr) return QK_STATUS_OUT_OF_MEMORY;
  }
  run_tasks(pool, threads, n_chunks * k_chunks, [&](int64_t t) {
    const int64_t kc = t / n_chunks, nc = t % n_chunks;
    const int64_t j0 = nc * n_step, j1 = std::min(N, j0 + n_step);
    const int64_t k0 = kc * k_step, k1 = std::min(K, k0 + k_step);
    if (j0 >= j1) return;
    float* dst = kc == 0 ? C + j0 : part + (kc - 1) * N + j0;
    P::gemv(k1 - k0, A + k0, B + k0 * ldb + j0, ldb, dst, j1 - j0);
  });
  if (part != nullptr) {
    for (int64_t kc = 1; kc < k_chunks; ++kc) {
      const float* src = part + (kc - 1) * N;
      for (int64_t j = 0; j < N; ++j) C[j] += src[j];
    }
  }
  return kOk;
}

// Small M (2 <= M <= kSmallM: a few tokens). Each weight is used M times only, so the call is bound by reading B
// once from memory, and the blocked path's packing (B read as 2 KiB row segments of many pages, copied, read
// again) costs more than the arithmetic. Here B is not packed: like the GEMV, a task owns a range of K (and of at
// most kGemvCols columns), so its read of B is one contiguous run; it walks that run in k-blocks of ~512 KiB
// (which stay in L2 while every MR-row panel of A and every NR-column panel passes over them) and runs the
// micro-kernel on B in place (P::kernel_ld; the last, partial column panel is packed zero-padded and goes
// through the staging tile, so nothing past column N is read). Partial sums of the K ranges after the first
// are added to C in task order (deterministic).
// Up to this M the small-M path wins (measured at 4096 x 4096 / 4096 x 11008 / 11008 x 4096, main vs this path
// alternated in one process: M = 4 0.55x the time, M = 16 0.67-0.86x; at M = 28 it was no faster, 1.05x).
constexpr int64_t kSmallM = 16;

template <class P>
Status small_m_gemm(const GemmArgs& g, ThreadPool* pool, int threads) {
  constexpr int64_t MR = P::MR, NR = P::NR, AS = P::AS;
  const int64_t M = g.M, N = g.N, K = g.K;
  const KSplit ks = k_split(N, K, threads, 2, NR);
  const int64_t n_chunks = ks.n_chunks, n_step = ks.n_step, k_chunks = ks.k_chunks, k_step = ks.k_step;
  const int64_t kb = std::max<int64_t>(8, std::min<int64_t>(P::KC, ((int64_t{1} << 17) / n_step) / 8 * 8));
  static_assert(P::KC <= AS, "the A micro-panel holds a whole k-block");
  float* part = nullptr;
  const std::size_t part_floats = static_cast<std::size_t>((k_chunks - 1) * M * N);
  if (part_floats > 0) {
    part = static_cast<float*>(::operator new[](part_floats * sizeof(float), std::align_val_t(kScratchAlign),
                                                std::nothrow));
    if (part == nullptr) return QK_STATUS_OUT_OF_MEMORY;
  }
  std::atomic<bool> out_of_memory{false};
  run_tasks(pool, threads, n_chunks * k_chunks, [&](int64_t t) {
    float* scratch = thread_scratch(scratch_floats<P>());
    if (scratch == nullptr) {
      out_of_memory.store(true, std::memory_order_relaxed);
      return;
    }
    const TileBuffers buf = tile_buffers<P>(scratch);
    const int64_t kc = t / n_chunks, nc = t % n_chunks;
    const int64_t j0 = nc * n_step, j1 = std::min(N, j0 + n_step);
    const int64_t k0 = kc * k_step, k1 = std::min(K, k0 + k_step);
    if (j0 >= j1) return;
    float* const ct0 = kc == 0 ? g.C + j0 : part + (kc - 1) * M * N + j0;
    const int64_t ldct = kc == 0 ? g.ldc : N;
    const int64_t width = j1 - j0, full = width / NR * NR, rem = width - full;
    for (int64_t p0 = k0; p0 < k1; p0 += kb) {
      const int64_t kcur = std::min(kb, k1 - p0);
      const bool accumulate = p0 > k0;
      const float* const bblk = g.B + p0 * g.ldb + j0;
      if (rem > 0) {  // the partial last panel, packed and zero-padded
        for (int64_t k = 0; k < kcur; ++k) {
          std::memcpy(buf.bp + k * NR, bblk + k * g.ldb + full, static_cast<std::size_t>(rem) * sizeof(float));
          std::memset(buf.bp + k * NR + rem, 0, static_cast<std::size_t>(NR - rem) * sizeof(float));
        }
      }
      for (int64_t i0 = 0; i0 < M; i0 += MR) {
        const int rows = static_cast<int>(std::min(MR, M - i0));
        for (int r = 0; r < rows; ++r) {
          std::memcpy(buf.ap + r * AS, g.A + (i0 + r) * g.lda + p0, static_cast<std::size_t>(kcur) * sizeof(float));
        }
        const KernelLdFn kl = P::kernel_ld(rows);
        float* const crow = ct0 + i0 * ldct;
        for (int64_t j = 0; j < full; j += NR) kl(kcur, buf.ap, bblk + j, g.ldb, crow + j, ldct, accumulate);
        if (rem > 0) run_panel<P>(P::kernel(rows), rows, rem, kcur, buf.ap, buf.bp, crow + full, ldct, accumulate, buf.ct);
      }
    }
  });
  if (part != nullptr) {
    if (!out_of_memory.load()) {
      for (int64_t kc = 1; kc < k_chunks; ++kc) {
        for (int64_t i = 0; i < M; ++i) {
          const float* src = part + (kc - 1) * M * N + i * N;
          float* dst = g.C + i * g.ldc;
          for (int64_t j = 0; j < N; ++j) dst[j] += src[j];
        }
      }
    }
    ::operator delete[](part, std::align_val_t(kScratchAlign));
  }
  return out_of_memory.load() ? QK_STATUS_OUT_OF_MEMORY : kOk;
}

// packed != nullptr: B given pre-packed (see compute_tile; B / ldb unused); every M takes the blocked path.
template <class P>
Status sgemm_driver(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc, ThreadPool* pool, const float* packed = nullptr) {
  if (M <= 0 || N <= 0) return kOk;
  if (K <= 0) {  // empty sum
    for (int64_t i = 0; i < M; ++i) std::memset(C + i * ldc, 0, static_cast<std::size_t>(N) * sizeof(float));
    return kOk;
  }

  // Threads: below ~1 MFLOP the pool's hand-off costs more than it saves.
  int threads = pool != nullptr ? pool->num_threads() : 1;
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  if (flops < 1.0e6) threads = 1;

  // GEMV: B is used once per element, so no packing (see gemv_split_k).
  if (M == 1 && packed == nullptr) return gemv_split_k<P>(N, K, A, B, ldb, C, pool, threads);

  // Pre-packed B: K blocks of at most KC / 2 (192 on AVX-512), so the B panel a kernel call streams (kc x NR floats,
  // 24 KiB) and the A micro-panel it reuses across panels (MR x kc, 10.5 KiB) fit L1 together (48 KiB here); the
  // result is unchanged (each call continues the FMA chain from C). Measured 1 thread, same process (thread CPU
  // time, alternated): 0.93-0.95 of the time of 384 at M = 128, 0.99 at M = 512. The per-call packing path keeps KC.
  const int64_t kc_block = packed != nullptr ? k_block_size<P>(K, P::KC / 2) : k_block_size<P>(K);
  const GemmArgs g{M, N, K, A, lda, B, ldb, C, ldc};
  if (M <= kSmallM && packed == nullptr) return small_m_gemm<P>(g, pool, threads);
  std::atomic<bool> out_of_memory{false};

  // Task rectangles (see split_tasks), handed out dynamically.
  const TaskGrid grid = split_tasks<P>(M, N, threads);
  const int64_t mt = grid.mt, nt = grid.nt, nb = grid.nb;

  run_tasks(pool, threads, grid.mb * nb, [&](int64_t t) {
    float* scratch = thread_scratch(scratch_floats<P>());
    if (scratch == nullptr) {
      out_of_memory.store(true, std::memory_order_relaxed);
      return;
    }
    const int64_t tm = t / nb, tn = t % nb;
    const int64_t m0 = tm * mt, n0 = tn * nt;
    compute_tile<P>(g, kc_block, m0, std::min(M, m0 + mt), n0, std::min(N, n0 + nt), scratch, packed);
  });
  return out_of_memory.load() ? QK_STATUS_OUT_OF_MEMORY : kOk;
}

}  // namespace
}  // namespace sgemm_common
}  // namespace qk

#endif  // QK_KERNELS_X86_SGEMM_COMMON_H_
