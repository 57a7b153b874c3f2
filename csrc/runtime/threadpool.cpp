// quantkit — process-wide thread pool (see qk/threadpool.h for the contract).
#include "qk/threadpool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace qk {
namespace {

thread_local bool tl_in_region = false;

int configured_threads() {
  const char* env = std::getenv("QK_NUM_THREADS");
  if (env != nullptr && *env != '\0') {
    char* end = nullptr;
    long v = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && v >= 1 && v <= 1024) return static_cast<int>(v);
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(std::min(hw, 1024u));
}

class PoolImpl final : public ThreadPool {
 public:
  explicit PoolImpl(int threads) : threads_(std::max(1, threads)) {
    for (int t = 1; t < threads_; ++t) helpers_.emplace_back([this] { helper_loop(); });
  }
  ~PoolImpl() override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
      ++generation_;
    }
    cv_.notify_all();
    for (auto& th : helpers_) th.join();
  }

  int num_threads() const override { return threads_; }

  void run(int64_t num_tasks, const std::function<void(int64_t)>& fn) override {
    if (num_tasks <= 0) return;
    if (threads_ == 1 || num_tasks == 1 || tl_in_region) {
      for (int64_t t = 0; t < num_tasks; ++t) fn(t);
      return;
    }
    std::lock_guard<std::mutex> region(region_mu_);  // one region at a time: never oversubscribe
    tl_in_region = true;
    fn_ = &fn;
    num_tasks_ = num_tasks;
    next_.store(0, std::memory_order_relaxed);
    pending_.store(static_cast<int>(helpers_.size()), std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(mu_);
      ++generation_;
    }
    gen_seen_.store(generation_, std::memory_order_release);
    cv_.notify_all();
    work();
    // Wait for helpers to leave the region (short spin, then sleep).
    auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
    while (pending_.load(std::memory_order_acquire) != 0) {
      if (std::chrono::steady_clock::now() < spin_until) {
        std::this_thread::yield();
      } else {
        std::unique_lock<std::mutex> lk(mu_);
        done_cv_.wait_for(lk, std::chrono::milliseconds(1),
                          [this] { return pending_.load(std::memory_order_acquire) == 0; });
      }
    }
    fn_ = nullptr;
    tl_in_region = false;
  }

 private:
  void work() {
    for (;;) {
      int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
      if (t >= num_tasks_) break;
      (*fn_)(t);
    }
  }

  void helper_loop() {
    tl_in_region = true;  // nested parallel_for inside a task runs inline
    uint64_t seen = 0;
    for (;;) {
      // Brief spin for back-to-back regions, then block.
      auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(100);
      while (gen_seen_.load(std::memory_order_acquire) == seen &&
             std::chrono::steady_clock::now() < spin_until) {
        std::this_thread::yield();
      }
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return generation_ != seen; });
        seen = generation_;
        if (stop_) return;
      }
      work();
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(mu_);
        done_cv_.notify_all();
      }
    }
  }

  const int threads_;
  std::vector<std::thread> helpers_;
  std::mutex region_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  uint64_t generation_ = 0;
  std::atomic<uint64_t> gen_seen_{0};
  bool stop_ = false;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t num_tasks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int> pending_{0};
};

}  // namespace

SerialScope::SerialScope() : previous_(tl_in_region) { tl_in_region = true; }
SerialScope::~SerialScope() { tl_in_region = previous_; }

ThreadPool& ThreadPool::global() {
  // Intentionally leaked: helper threads must outlive every addon instance and static destructors.
  static ThreadPool* pool = new PoolImpl(configured_threads());
  return *pool;
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int threads = num_threads();
  if (threads == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  int64_t chunks = std::min<int64_t>((n + grain - 1) / grain, int64_t{threads} * 4);
  const int64_t step = (n + chunks - 1) / chunks;
  chunks = (n + step - 1) / step;
  run(chunks, [&](int64_t c) {
    const int64_t b = c * step;
    fn(b, std::min(n, b + step));
  });
}

}  // namespace qk
