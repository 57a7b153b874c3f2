// quantkit — the internal thread pool used by parallel kernels.
//
// One pool per process (kernels are pure functions of their arguments; the pool holds no JS state, so a
// process-wide pool is compatible with a context-aware addon loaded many times). Size: QK_NUM_THREADS, else
// the number of online cores. The thread that calls parallel_for takes part in the work, so a pool of size
// T starts T-1 helper threads. Regions from different callers (several AsyncWorkers at once) are serialized
// so that the machine is never oversubscribed. Helpers spin briefly, then sleep on a condition variable.
#ifndef QK_THREADPOOL_H_
#define QK_THREADPOOL_H_

#include <cstdint>
#include <functional>

namespace qk {

class ThreadPool {
 public:
  // The process-wide pool (created on first use).
  static ThreadPool& global();

  virtual ~ThreadPool() = default;

  // Total threads that run a region (helpers + the calling thread). >= 1.
  virtual int num_threads() const = 0;

  // Runs fn(task) for task in [0, num_tasks). Tasks are handed out dynamically. Returns when all are done.
  // fn must not throw. Nested calls from inside a task run serially on the calling thread.
  virtual void run(int64_t num_tasks, const std::function<void(int64_t task)>& fn) = 0;

  // Splits [0, n) into contiguous chunks of at least `grain` items (about 4 chunks per thread) and runs
  // fn(begin, end) for each. Runs inline when n <= grain or the pool has one thread.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);
};

// While alive, every region started on this thread runs serially on it (like a nested region): used to run tiny
// ops inline on the JavaScript thread without waiting for (or holding) the pool.
class SerialScope {
 public:
  SerialScope();
  ~SerialScope();
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  bool previous_;
};

}  // namespace qk

#endif  // QK_THREADPOOL_H_
