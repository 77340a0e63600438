// TaggedPool on a real GPU. Skips (with the reason) where no CUDA device is
// present. Verifies release at the driver level (cuMemGetInfo), not just the
// pool's own counters.
#include <cstring>
#include <random>
#include <vector>

#include "engine/device/cuda_backend.h"
#include "engine/device/fault_injecting_backend.h"
#include "engine/memory/tagged_pool.h"
#include "gtest/gtest.h"
#include "tests/util/gpu_required.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

std::unique_ptr<CudaBackend> MaybeCuda(std::string* reason) {
  absl::StatusOr<std::unique_ptr<CudaBackend>> b =
      CudaBackend::Create(CudaBackend::Options());
  if (!b.ok()) {
    *reason = std::string(b.status().message());
    return nullptr;
  }
  return std::move(*b);
}

TEST(TaggedPoolCudaTest, ReleaseRaisesDriverFreeMemoryAndResumeRestores) {
  std::string reason;
  auto cuda = MaybeCuda(&reason);
  COLO_SKIP_OR_FAIL_WITHOUT_GPU(cuda == nullptr ? absl::UnavailableError(reason)
                                                : absl::OkStatus());
  TaggedPool::Options options;
  options.backend = cuda.get();
  options.backup[static_cast<int>(MemoryTag::kWeights)] = BackupPolicy::kHostCopy;
  ASSERT_OK_AND_ASSIGN(auto pool, TaggedPool::Create(options));
  const size_t w_bytes = 256 * kMiB, kv_bytes = 1024 * kMiB;
  ASSERT_OK_AND_ASSIGN(void* w, pool->Allocate(MemoryTag::kWeights, w_bytes, "w"));
  ASSERT_OK_AND_ASSIGN(void* kv, pool->Allocate(MemoryTag::kKvCache, kv_bytes, "kv"));
  std::vector<uint32_t> pattern(w_bytes / 4);
  std::mt19937 rng(11);
  for (auto& x : pattern) x = rng();
  ASSERT_OK(cuda->CopyToDevice(w, pattern.data(), w_bytes));

  ASSERT_OK_AND_ASSIGN(DeviceMemoryInfo before, cuda->MemoryInfo());
  ASSERT_OK_AND_ASSIGN(ReleaseReport r, pool->Release({}));
  ASSERT_OK_AND_ASSIGN(DeviceMemoryInfo after, cuda->MemoryInfo());
  uint64_t freed = 0;
  for (const auto& t : r.tags) freed += t.bytes_freed;
  EXPECT_EQ(freed, w_bytes + kv_bytes);
  EXPECT_GE(after.free_bytes, before.free_bytes + freed * 99 / 100);

  ASSERT_OK(pool->Resume({}).status());
  std::vector<uint32_t> back(pattern.size());
  ASSERT_OK(cuda->CopyToHost(back.data(), w, w_bytes));
  EXPECT_EQ(back, pattern);
  ASSERT_OK_AND_ASSIGN(size_t kv_size, pool->AllocationSize(kv));
  EXPECT_EQ(kv_size, kv_bytes);
}

TEST(TaggedPoolCudaTest, ResumeOomRollsBack) {
  std::string reason;
  auto cuda = MaybeCuda(&reason);
  COLO_SKIP_OR_FAIL_WITHOUT_GPU(cuda == nullptr ? absl::UnavailableError(reason)
                                                : absl::OkStatus());
  FaultInjectingBackend faulty(cuda.get());
  TaggedPool::Options options;
  options.backend = &faulty;
  options.physical_chunk_bytes = 64 * kMiB;
  ASSERT_OK_AND_ASSIGN(auto pool, TaggedPool::Create(options));
  ASSERT_OK(pool->Allocate(MemoryTag::kKvCache, 512 * kMiB, "kv").status());
  ASSERT_OK(pool->Release({}).status());
  ASSERT_OK_AND_ASSIGN(DeviceMemoryInfo released, cuda->MemoryInfo());
  faulty.FailPhysicalAllocationAfter(4);
  EXPECT_THAT(pool->Resume({}), StatusIs(absl::StatusCode::kResourceExhausted));
  ASSERT_OK_AND_ASSIGN(DeviceMemoryInfo after, cuda->MemoryInfo());
  EXPECT_GE(after.free_bytes + 32 * kMiB, released.free_bytes);
  EXPECT_TRUE(pool->IsReleased(MemoryTag::kKvCache));
}

}  // namespace
}  // namespace engine
}  // namespace colo
