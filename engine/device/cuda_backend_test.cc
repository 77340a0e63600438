// Runs on every machine: without a GPU it checks the UNAVAILABLE path; with
// one it checks real VMM behaviour against cuMemGetInfo.
#include "engine/device/cuda_backend.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

TEST(CudaBackendTest, CreateSucceedsOrIsUnavailableWithReason) {
  absl::StatusOr<std::unique_ptr<CudaBackend>> b =
      CudaBackend::Create(CudaBackend::Options());
  if (b.ok()) {
    EXPECT_EQ((*b)->kind(), "cuda");
    EXPECT_GT((*b)->granularity(), 0u);
  } else {
    EXPECT_THAT(b.status(), StatusIs(absl::StatusCode::kUnavailable,
                                     testing::HasSubstr("CUDA backend")));
  }
}

TEST(CudaBackendTest, ReleaseRaisesDriverFreeMemory) {
  absl::StatusOr<std::unique_ptr<CudaBackend>> b =
      CudaBackend::Create(CudaBackend::Options());
  if (!b.ok()) GTEST_SKIP() << "no CUDA device: " << b.status();
  CudaBackend& backend = **b;
  const size_t bytes = backend.RoundUp(512 * kMiB);
  ASSERT_OK_AND_ASSIGN(Reservation va, backend.Reserve(bytes));
  ASSERT_OK_AND_ASSIGN(PhysicalAllocation chunk, backend.CreateChunk(bytes));
  ASSERT_OK_AND_ASSIGN(Mapping m, backend.Map(va.base(), chunk));
  std::vector<unsigned char> pattern(bytes / 64, 0x5a);
  ASSERT_OK(backend.CopyToDevice(va.base(), pattern.data(), pattern.size()));
  std::vector<unsigned char> back(pattern.size());
  ASSERT_OK(backend.CopyToHost(back.data(), va.base(), back.size()));
  EXPECT_EQ(back, pattern);
  ASSERT_OK(backend.Synchronize());
  ASSERT_OK_AND_ASSIGN(DeviceMemoryInfo before, backend.MemoryInfo());
  ASSERT_OK(m.Reset());
  ASSERT_OK(chunk.Reset());
  ASSERT_OK_AND_ASSIGN(DeviceMemoryInfo after, backend.MemoryInfo());
  EXPECT_GE(after.free_bytes, before.free_bytes + bytes * 99 / 100);
  // Same VA, new memory.
  ASSERT_OK_AND_ASSIGN(PhysicalAllocation chunk2, backend.CreateChunk(bytes));
  ASSERT_OK_AND_ASSIGN(Mapping m2, backend.Map(va.base(), chunk2));
  EXPECT_EQ(m2.address(), va.base());
}

TEST(CudaBackendTest, OversizedCreateIsResourceExhausted) {
  absl::StatusOr<std::unique_ptr<CudaBackend>> b =
      CudaBackend::Create(CudaBackend::Options());
  if (!b.ok()) GTEST_SKIP() << "no CUDA device: " << b.status();
  ASSERT_OK_AND_ASSIGN(DeviceMemoryInfo info, (*b)->MemoryInfo());
  const size_t bytes = (*b)->RoundUp(info.total_bytes * 2);
  EXPECT_THAT((*b)->CreatePhysical(bytes),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       testing::HasSubstr("cuMemCreate")));
}

}  // namespace
}  // namespace engine
}  // namespace colo
