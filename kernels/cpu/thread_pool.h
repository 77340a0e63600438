// ThreadPool: a fixed set of worker threads that run ParallelFor loops.
//
// ParallelFor(n, min_chunk, fn) splits [0, n) into contiguous chunks of at
// least `min_chunk` items and calls fn(begin, end) for each chunk, on the
// caller and the workers; it returns when every chunk is done. Chunk
// boundaries depend only on (n, min_chunk, num_threads), never on timing, and
// kernels built on it compute each output element on one thread with a fixed
// operation order, so results do not depend on scheduling.
//
// Thread-safe: concurrent ParallelFor calls from different threads are
// serialized. A ParallelFor issued from inside a running chunk runs inline on
// the calling thread (no nested parallelism, no deadlock).
#ifndef COLO_KERNELS_CPU_THREAD_POOL_H_
#define COLO_KERNELS_CPU_THREAD_POOL_H_

#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace colo {
namespace kernels {

class ThreadPool {
 public:
  // `num_threads` counts the calling thread: 1 = everything runs inline.
  // Values < 1 are treated as 1.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // A process-wide pool sized by $COLO_NUM_THREADS when set (> 0), else by
  // std::thread::hardware_concurrency(). Never destroyed.
  static ThreadPool* Default();

  int num_threads() const { return num_threads_; }

  void ParallelFor(int64_t n, int64_t min_chunk,
                   const std::function<void(int64_t, int64_t)>& fn)
      ABSL_LOCKS_EXCLUDED(call_mu_, mu_);

 private:
  struct Job {
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t n = 0;
    int64_t chunk = 0;
    int64_t num_chunks = 0;
    int64_t next_chunk = 0;  // guarded by mu_
    int64_t done_chunks = 0;  // guarded by mu_
    int active_workers = 0;   // guarded by mu_
  };

  void WorkerLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // Runs chunks of `job` until none are left.
  void RunChunks(Job* job) ABSL_LOCKS_EXCLUDED(mu_);

  const int num_threads_;
  std::vector<std::thread> workers_;

  absl::Mutex call_mu_;  // serializes ParallelFor callers
  absl::Mutex mu_;
  Job* job_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace kernels
}  // namespace colo

#endif  // COLO_KERNELS_CPU_THREAD_POOL_H_
