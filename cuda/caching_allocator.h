// quantkit — the caching device allocator behind DeviceBuffer and the launchers' scratch (cuda/memory.cu).
// Plain C++17 with the device calls behind a Backend of function pointers, so test/cuda/host/layout_test.cpp
// exercises it on the host with malloc and a simulated memory limit.
//
// Policy: sizes are rounded (round_size) and freed blocks are kept in a size-ordered cache; an allocation takes
// the smallest cached block that fits and wastes at most a quarter of it (else it asks the backend). When the
// backend reports out-of-memory, the whole cache is released and the allocation retried once; a second
// failure is QK_STATUS_OUT_OF_MEMORY. Other backend errors are passed through. All methods are thread-safe.
#ifndef QK_CUDA_CACHING_ALLOCATOR_H_
#define QK_CUDA_CACHING_ALLOCATOR_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>

#include "qk/status.h"

namespace qk {
namespace cuda_mem {

struct Backend {
  // Returns QK_STATUS_OK, QK_STATUS_OUT_OF_MEMORY, or another status (e.g. QK_STATUS_DEVICE).
  qk_status (*alloc)(void* ctx, size_t bytes, void** ptr);
  void (*free)(void* ctx, void* ptr);
  void* ctx;
};

struct Stats {
  uint64_t in_use_bytes = 0;     // handed out to callers (rounded sizes)
  uint64_t cached_bytes = 0;     // freed by callers, kept for reuse
  uint64_t backend_allocs = 0;   // successful backend allocations so far
  uint64_t cache_hits = 0;
};

constexpr size_t kSmallLimit = size_t{1} << 20;  // below 1 MiB: 512-byte granularity
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t{2} << 20;   // 1 MiB and above: 2 MiB granularity

// The size actually requested from the backend for `bytes` (0 -> 512, so every buffer has a distinct address).
inline size_t round_size(size_t bytes) {
  if (bytes < kSmallLimit) return bytes == 0 ? kSmallRound : (bytes + kSmallRound - 1) / kSmallRound * kSmallRound;
  return (bytes + kLargeRound - 1) / kLargeRound * kLargeRound;
}

class CachingAllocator {
 public:
  explicit CachingAllocator(Backend b) : backend_(b) {}
  ~CachingAllocator() { empty_cache(); }
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  qk_status allocate(size_t bytes, void** ptr) {
    *ptr = nullptr;
    const size_t size = round_size(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.lower_bound(size);
    if (it != cache_.end() && it->first - size <= it->first / 4) {
      *ptr = it->second;
      live_[it->second] = it->first;
      stats_.cached_bytes -= it->first;
      stats_.in_use_bytes += it->first;
      ++stats_.cache_hits;
      cache_.erase(it);
      return QK_STATUS_OK;
    }
    qk_status st = backend_.alloc(backend_.ctx, size, ptr);
    if (st == QK_STATUS_OUT_OF_MEMORY && !cache_.empty()) {
      release_cache_locked();
      st = backend_.alloc(backend_.ctx, size, ptr);
    }
    if (st != QK_STATUS_OK) {
      *ptr = nullptr;
      return st;
    }
    live_[*ptr] = size;
    stats_.in_use_bytes += size;
    ++stats_.backend_allocs;
    return QK_STATUS_OK;
  }

  // Returns the block to the cache. QK_STATUS_INVALID_ARGUMENT for a pointer this allocator did not hand out
  // (or already freed); nullptr is accepted and ignored.
  qk_status deallocate(void* ptr) {
    if (ptr == nullptr) return QK_STATUS_OK;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(ptr);
    if (it == live_.end()) return QK_STATUS_INVALID_ARGUMENT;
    cache_.emplace(it->second, ptr);
    stats_.in_use_bytes -= it->second;
    stats_.cached_bytes += it->second;
    live_.erase(it);
    return QK_STATUS_OK;
  }

  // Size of a live block (0 if unknown).
  size_t block_size(void* ptr) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(ptr);
    return it == live_.end() ? 0 : it->second;
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    release_cache_locked();
  }

  Stats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  void release_cache_locked() {
    for (auto& e : cache_) backend_.free(backend_.ctx, e.second);
    cache_.clear();
    stats_.cached_bytes = 0;
  }

  Backend backend_;
  std::mutex mu_;
  std::multimap<size_t, void*> cache_;
  std::unordered_map<void*, size_t> live_;
  Stats stats_;
};

}  // namespace cuda_mem
}  // namespace qk

#endif  // QK_CUDA_CACHING_ALLOCATOR_H_
