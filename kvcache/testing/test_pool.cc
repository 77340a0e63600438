#include "kvcache/testing/test_pool.h"

#include <utility>

#include "engine/device/cpu_backend.h"
#include "proto/status/status_macros.h"

namespace colo::kvcache::test_support {

absl::StatusOr<std::unique_ptr<TestPool>> TestPool::Create() {
  std::unique_ptr<TestPool> t(new TestPool());
  engine::CpuBackend::Options backend_options;
  backend_options.granularity = 4096;
  ASSIGN_OR_RETURN(t->backend_, engine::CpuBackend::Create(backend_options));
  engine::TaggedPool::Options options;
  options.backend = t->backend_.get();
  ASSIGN_OR_RETURN(t->pool_, engine::TaggedPool::Create(options));
  return t;
}

TestPool::~TestPool() { pool_.reset(); }

engine::TagInfo TestPool::KvInfo() const {
  for (const engine::TagInfo& info : pool_->Info().tags) {
    if (info.tag == engine::MemoryTag::kKvCache) return info;
  }
  return engine::TagInfo();
}

}  // namespace colo::kvcache::test_support
