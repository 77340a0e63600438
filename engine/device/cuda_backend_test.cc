// Runs on every machine: without a GPU it checks the UNAVAILABLE path; with
// one it checks real VMM behaviour against cuMemGetInfo.
#include "engine/device/cuda_backend.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "tests/util/gpu_required.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

TEST(CudaBackendTest, CreateSucceedsOrIsUnavailableWithReason) {
  absl::StatusOr<std::unique_ptr<CudaBackend>> b =
      CudaBackend::Create(CudaBackend::Options());
  if (test_util::GpuRequired()) {
    ASSERT_OK(b.status()) << "COLO_REQUIRE_GPU=1";
  }
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
  COLO_SKIP_OR_FAIL_WITHOUT_GPU(b.status());
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
  COLO_SKIP_OR_FAIL_WITHOUT_GPU(b.status());
  ASSERT_OK_AND_ASSIGN(DeviceMemoryInfo info, (*b)->MemoryInfo());
  const size_t bytes = (*b)->RoundUp(info.total_bytes * 2);
  EXPECT_THAT((*b)->CreatePhysical(bytes),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       testing::HasSubstr("cuMemCreate")));
}

// Destroying a backend releases its primary-context reference without
// leaving a destroyed context current: a new backend on the same thread
// works.
TEST(CudaBackendTest, DestroyThenCreateAgainOnTheSameThread) {
  absl::StatusOr<std::unique_ptr<CudaBackend>> b =
      CudaBackend::Create(CudaBackend::Options());
  COLO_SKIP_OR_FAIL_WITHOUT_GPU(b.status());
  {
    ASSERT_OK_AND_ASSIGN(Reservation va, (*b)->Reserve((*b)->granularity()));
    ASSERT_OK_AND_ASSIGN(PhysicalAllocation chunk, (*b)->CreateChunk((*b)->granularity()));
    ASSERT_OK_AND_ASSIGN(Mapping m, (*b)->Map(va.base(), chunk));
  }
  b->reset();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<CudaBackend> again,
                       CudaBackend::Create(CudaBackend::Options()));
  ASSERT_OK_AND_ASSIGN(DeviceMemoryInfo info, again->MemoryInfo());
  EXPECT_GT(info.total_bytes, 0u);
  ASSERT_OK_AND_ASSIGN(PhysicalAllocation chunk, again->CreateChunk(again->granularity()));
  EXPECT_TRUE(chunk.valid());
}

TEST(CudaBackendTest, OrdinalOutOfRangeIsRefused) {
  CudaBackend::Options o;
  o.device = 4096;
  absl::StatusOr<std::unique_ptr<CudaBackend>> b = CudaBackend::Create(o);
  EXPECT_FALSE(b.ok());
  // Without a driver: UNAVAILABLE; with one: INVALID_ARGUMENT naming the ordinal.
  if (b.status().code() == absl::StatusCode::kInvalidArgument) {
    EXPECT_THAT(b.status().message(), testing::HasSubstr("4096"));
  } else {
    EXPECT_THAT(b.status(), StatusIs(absl::StatusCode::kUnavailable));
  }
}

}  // namespace
}  // namespace engine
}  // namespace colo
