// Exercises absl::Mutex / CondVar from several threads with real contention,
// so a TSan build shows whether Debian's (uninstrumented) Abseil produces
// reports. The counter must also come out exact.
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace {

TEST(MutexTsanProbeTest, ContendedCounterIsExact) {
  absl::Mutex mu;
  int64_t counter = 0;  // guarded by mu
  std::vector<int64_t> log;
  constexpr int kThreads = 4;
  constexpr int kIters = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIters; ++i) {
        absl::MutexLock lock(&mu);
        ++counter;
        if (i % 1000 == 0) log.push_back(counter);
      }
    });
  }
  for (auto& t : threads) t.join();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(counter, int64_t{kThreads} * kIters);
  EXPECT_EQ(log.size(), static_cast<size_t>(kThreads * kIters / 1000));
}

TEST(MutexTsanProbeTest, CondVarHandoff) {
  absl::Mutex mu;
  absl::CondVar cv;
  int stage = 0;
  std::thread other([&] {
    absl::MutexLock lock(&mu);
    while (stage != 1) cv.Wait(&mu);
    stage = 2;
    cv.SignalAll();
  });
  {
    absl::MutexLock lock(&mu);
    stage = 1;
    cv.SignalAll();
    while (stage != 2) cv.Wait(&mu);
  }
  other.join();
  EXPECT_EQ(stage, 2);
}

}  // namespace
