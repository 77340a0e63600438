#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

namespace colo {
namespace kernels {
namespace {
thread_local bool in_parallel_region = false;
}  // namespace

ThreadPool::ThreadPool(int num_threads)
    : num_threads_(std::max(1, num_threads)) {
  for (int i = 1; i < num_threads_; ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
}

ThreadPool::~ThreadPool() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (std::thread& t : workers_) t.join();
}

ThreadPool* ThreadPool::Default() {
  static ThreadPool* pool = [] {
    int n = static_cast<int>(std::thread::hardware_concurrency());
    if (const char* env = std::getenv("COLO_NUM_THREADS")) {
      int v = std::atoi(env);
      if (v > 0) n = v;
    }
    return new ThreadPool(std::max(1, n));
  }();
  return pool;
}

void ThreadPool::RunChunks(Job* job) {
  bool was_in_region = in_parallel_region;
  in_parallel_region = true;
  while (true) {
    int64_t c;
    {
      absl::MutexLock lock(&mu_);
      if (job->next_chunk >= job->num_chunks) break;
      c = job->next_chunk++;
    }
    int64_t begin = c * job->chunk;
    int64_t end = std::min(job->n, begin + job->chunk);
    (*job->fn)(begin, end);
    absl::MutexLock lock(&mu_);
    ++job->done_chunks;
  }
  in_parallel_region = was_in_region;
}

void ThreadPool::WorkerLoop() {
  uint64_t seen = 0;
  while (true) {
    Job* job = nullptr;
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this, &seen]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return stop_ || generation_ != seen;
      };
      mu_.Await(absl::Condition(&wake));
      if (stop_) return;
      seen = generation_;
      job = job_;
      if (job == nullptr) continue;
      ++job->active_workers;
    }
    RunChunks(job);
    absl::MutexLock lock(&mu_);
    --job->active_workers;
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t min_chunk,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  min_chunk = std::max<int64_t>(1, min_chunk);
  if (workers_.empty() || n <= min_chunk || in_parallel_region) {
    fn(0, n);
    return;
  }
  absl::MutexLock call_lock(&call_mu_);
  Job job;
  job.fn = &fn;
  job.n = n;
  // Up to 4 chunks per thread for load balance.
  int64_t max_chunks = static_cast<int64_t>(num_threads_) * 4;
  job.chunk = std::max(min_chunk, (n + max_chunks - 1) / max_chunks);
  job.num_chunks = (n + job.chunk - 1) / job.chunk;
  {
    absl::MutexLock lock(&mu_);
    job_ = &job;
    ++generation_;
  }
  RunChunks(&job);
  absl::MutexLock lock(&mu_);
  auto finished = [&job]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return job.done_chunks == job.num_chunks && job.active_workers == 0;
  };
  mu_.Await(absl::Condition(&finished));
  job_ = nullptr;
}

}  // namespace kernels
}  // namespace colo
