#include "engine/memory/memory_info.h"

#include "engine/device/cpu_backend.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

TEST(MemoryInfoTest, CombinesPoolAllocatorAndDevice) {
  ASSERT_OK_AND_ASSIGN(auto cpu, CpuBackend::Create(CpuBackend::Options()));
  TaggedPool::Options pool_options;
  pool_options.backend = cpu.get();
  ASSERT_OK_AND_ASSIGN(auto pool, TaggedPool::Create(pool_options));
  CachingAllocator::Options alloc_options;
  alloc_options.backend = cpu.get();
  ASSERT_OK_AND_ASSIGN(auto alloc, CachingAllocator::Create(alloc_options));
  ASSERT_OK(pool->Allocate(MemoryTag::kWeights, 3 << 20, "w").status());
  ASSERT_OK(alloc->Allocate(1000).status());

  ASSERT_OK_AND_ASSIGN(MemoryInfo info, CollectMemoryInfo(*pool, alloc.get()));
  EXPECT_EQ(info.backend_kind, "cpu");
  ASSERT_EQ(info.pool.tags.size(), 3u);
  EXPECT_EQ(info.pool.tags[1].tag, MemoryTag::kWeights);
  EXPECT_EQ(info.pool.tags[1].resident_bytes, 4u << 20);
  EXPECT_EQ(info.allocator.allocated_bytes, 1024u);
  EXPECT_EQ(info.allocator.reserved_bytes, 2u << 20);
  EXPECT_GT(info.device_memory.total_bytes, 0u);
  EXPECT_GE(info.device_memory.process_resident_bytes, 6u << 20);

  ASSERT_OK_AND_ASSIGN(MemoryInfo no_alloc, CollectMemoryInfo(*pool, nullptr));
  EXPECT_EQ(no_alloc.allocator.reserved_bytes, 0u);
}

}  // namespace
}  // namespace engine
}  // namespace colo
