// quantkit — ISA-independent helpers of the blocked int8 GEMM (private to igemm_avx2.cpp / igemm_avx512.cpp).
//
// Everything here lives in an anonymous namespace: each ISA translation unit that includes this header gets
// its own internal copy, compiled with that unit's flags, so nothing compiled with AVX-512 flags can be
// picked by the linker for a lower ISA (no ODR mixing across ISA flags).
//
// Work decomposition shared by both ISA variants
//   C is cut into "items": rectangles of Mt rows x Nt columns (Nt a multiple of the panel width NR, at most
//   NT_MAX; Mt a multiple of MR). Items are independent. Splitting N is preferred, because every item packs
//   the B block it needs itself (so B is packed exactly once when M is not split, and the packed block stays
//   in L2 instead of making a round trip through memory — what makes M = 1 GEMV run at memory speed).
//   M is split only when N alone cannot give every thread ~4 items.
//   The pool runs one long-lived "worker" per thread; workers pull items from a shared atomic counter (load
//   balancing) and each owns a private slice of one scratch allocation made before the parallel region, so an
//   allocation failure is reported once, before any work starts.
#ifndef QK_KERNELS_X86_IGEMM_COMMON_H_
#define QK_KERNELS_X86_IGEMM_COMMON_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "qk/kernels.h"
#include "qk/threadpool.h"

namespace qk {
namespace igemm_common {
namespace {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

inline uint32_t load_u32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Item grid over C. Item (im, in) covers rows [im*mt, min(M, (im+1)*mt)) and columns
// [in*nt, min(N, (in+1)*nt)).
struct Plan {
  int64_t mt = 0, nt = 0;    // item size
  int64_t items_m = 0, items_n = 0;
  int workers = 1;           // pool tasks to start (<= threads, <= items)
};

inline Plan make_plan(int64_t M, int64_t N, int64_t mr, int64_t nr, int64_t nt_max, int threads) {
  Plan p;
  const int64_t panels = ceil_div(N, nr);
  const int64_t max_panels = nt_max / nr;
  int64_t per_item = max_panels;
  if (threads > 1) {
    // Aim at >= 4 items per thread along N, but never wider than NT_MAX.
    per_item = ceil_div(panels, int64_t{4} * threads);
    if (per_item < 1) per_item = 1;
    if (per_item > max_panels) per_item = max_panels;
  }
  if (per_item > panels) per_item = panels;
  p.nt = per_item * nr;
  p.items_n = ceil_div(panels, per_item);
  int64_t chunks_m = 1;
  if (threads > 1 && p.items_n < int64_t{4} * threads) {
    // Not enough parallelism along N: cut M as well, keeping each row chunk >= 4 micro-panels tall so the
    // packed B block is still reused enough to amortise its packing.
    chunks_m = ceil_div(int64_t{4} * threads, p.items_n);
    const int64_t max_chunks = ceil_div(M, 4 * mr);
    if (chunks_m > max_chunks) chunks_m = max_chunks;
    if (chunks_m < 1) chunks_m = 1;
  }
  p.mt = round_up(ceil_div(M, chunks_m), mr);
  p.items_m = ceil_div(M, p.mt);
  const int64_t items = p.items_m * p.items_n;
  p.workers = static_cast<int>(items < threads ? items : threads);
  if (p.workers < 1) p.workers = 1;
  return p;
}

// One 64-byte-aligned allocation (freed in the destructor); nullptr data() on failure.
class Scratch {
 public:
  explicit Scratch(std::size_t bytes) {
    if (bytes == 0) bytes = 64;
    raw_ = std::malloc(bytes + 63);
    if (raw_ != nullptr) {
      aligned_ = reinterpret_cast<unsigned char*>((reinterpret_cast<std::uintptr_t>(raw_) + 63) &
                                                  ~std::uintptr_t{63});
    }
  }
  ~Scratch() { std::free(raw_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  unsigned char* data() const { return aligned_; }

 private:
  void* raw_ = nullptr;
  unsigned char* aligned_ = nullptr;
};

// Runs item_fn(item, worker_slot) for every item in [0, items) on `workers` pool tasks (inline when the
// pool is null or one worker suffices). worker_slot in [0, workers) identifies the scratch slice: a worker
// processes its items one after another, so no two concurrent items share a slot.
template <class ItemFn>
void run_items(ThreadPool* pool, int workers, int64_t items, const ItemFn& item_fn) {
  if (pool == nullptr || workers <= 1) {
    for (int64_t it = 0; it < items; ++it) item_fn(it, 0);
    return;
  }
  std::atomic<int64_t> next{0};
  pool->run(workers, [&](int64_t slot) {
    for (;;) {
      const int64_t it = next.fetch_add(1, std::memory_order_relaxed);
      if (it >= items) break;
      item_fn(it, static_cast<int>(slot));
    }
  });
}

// Software prefetch (into L2) of a row-major block rows x bytes (rows ld apart), spread over many calls of
// step(): the driver uses it to pull the next K block of B in while the current one is being multiplied, so
// the packing of that block reads from cache instead of waiting on memory (the B rows of an item are short
// segments in different pages, which the hardware prefetchers do not follow well).
class BlockPrefetcher {
 public:
  BlockPrefetcher() = default;
  BlockPrefetcher(const int8_t* base, int64_t ld, int64_t rows, int64_t bytes, int64_t calls)
      : base_(base), ld_(ld), rows_(rows), lines_(ceil_div(bytes, 64) + 1) {
    const int64_t total = rows_ * lines_;
    per_call_ = calls > 0 ? ceil_div(total, calls) : total;
  }
  void step() {
    for (int64_t n = 0; n < per_call_ && row_ < rows_; ++n) {
      __builtin_prefetch(base_ + row_ * ld_ + line_ * 64, 0, 2);
      if (++line_ == lines_) {
        line_ = 0;
        ++row_;
      }
    }
  }

 private:
  const int8_t* base_ = nullptr;
  int64_t ld_ = 0, rows_ = 0, lines_ = 0, per_call_ = 0;
  int64_t row_ = 0, line_ = 0;
};

inline void zero_c(int64_t M, int64_t N, int32_t* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) std::memset(C + i * ldc, 0, static_cast<std::size_t>(N) * sizeof(int32_t));
}

}  // namespace
}  // namespace igemm_common
}  // namespace qk

#endif  // QK_KERNELS_X86_IGEMM_COMMON_H_
