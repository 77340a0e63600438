// A CPU-backed TaggedPool for kvcache tests and benchmarks (4 KiB
// granularity so small test caches do not round up to 2 MiB per allocation).
#ifndef COLO_KVCACHE_TESTING_TEST_POOL_H_
#define COLO_KVCACHE_TESTING_TEST_POOL_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/memory/tagged_pool.h"

namespace colo::kvcache::test_support {

// Owns the backend and the pool (pool destroyed first).
class TestPool {
 public:
  static absl::StatusOr<std::unique_ptr<TestPool>> Create();
  ~TestPool();
  engine::TaggedPool* pool() const { return pool_.get(); }
  // Info of the kv_cache tag.
  engine::TagInfo KvInfo() const;

 private:
  TestPool() = default;
  std::unique_ptr<engine::DeviceBackend> backend_;
  std::unique_ptr<engine::TaggedPool> pool_;
};

}  // namespace colo::kvcache::test_support

#endif  // COLO_KVCACHE_TESTING_TEST_POOL_H_
