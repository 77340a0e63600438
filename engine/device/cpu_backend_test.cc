#include "engine/device/cpu_backend.h"

#include <cstring>
#include <memory>

#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

std::unique_ptr<CpuBackend> MakeBackend() {
  absl::StatusOr<std::unique_ptr<CpuBackend>> b =
      CpuBackend::Create(CpuBackend::Options());
  EXPECT_TRUE(b.ok()) << b.status();
  return std::move(*b);
}

TEST(CpuBackendTest, RejectsBadGranularity) {
  CpuBackend::Options options;
  options.granularity = 3 * 4096;
  EXPECT_THAT(CpuBackend::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       testing::HasSubstr("power of two")));
}

TEST(CpuBackendTest, ReportsKindAndGranularity) {
  auto backend = MakeBackend();
  EXPECT_EQ(backend->kind(), "cpu");
  EXPECT_EQ(backend->granularity(), 2 * kMiB);
  EXPECT_EQ(backend->RoundUp(1), 2 * kMiB);
  EXPECT_EQ(backend->RoundUp(0), 0u);
}

TEST(CpuBackendTest, ReserveRejectsUnalignedSizes) {
  auto backend = MakeBackend();
  EXPECT_THAT(backend->Reserve(0), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend->Reserve(4096),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       testing::HasSubstr("granularity")));
}

TEST(CpuBackendTest, MapCommitsAndUnmapReleasesRss) {
  auto backend = MakeBackend();
  const size_t bytes = 64 * kMiB;
  ASSERT_OK_AND_ASSIGN(Reservation va, backend->Reserve(bytes));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(va.base()) % backend->granularity(),
            0u);
  ASSERT_OK_AND_ASSIGN(PhysicalAllocation chunk, backend->CreateChunk(bytes));
  ASSERT_OK_AND_ASSIGN(uint64_t rss_before, ReadProcessResidentBytes());
  ASSERT_OK_AND_ASSIGN(Mapping mapping, backend->Map(va.base(), chunk));
  ASSERT_OK_AND_ASSIGN(uint64_t rss_mapped, ReadProcessResidentBytes());
  EXPECT_GE(rss_mapped, rss_before + bytes * 99 / 100);
  // Write before measuring again: sanitizer shadow memory grows on writes.
  std::memset(va.base(), 0xab, bytes);
  ASSERT_OK_AND_ASSIGN(rss_mapped, ReadProcessResidentBytes());
  ASSERT_OK(mapping.Reset());
  ASSERT_OK_AND_ASSIGN(uint64_t rss_unmapped, ReadProcessResidentBytes());
  EXPECT_LE(rss_unmapped + bytes * 99 / 100, rss_mapped);
  // Map again at the same address: fresh zero pages.
  ASSERT_OK_AND_ASSIGN(Mapping again, backend->Map(va.base(), chunk));
  EXPECT_EQ(static_cast<unsigned char*>(va.base())[12345], 0);
}

TEST(CpuBackendTest, MapOutsideReservationFails) {
  auto backend = MakeBackend();
  const size_t g = backend->granularity();
  ASSERT_OK_AND_ASSIGN(Reservation va, backend->Reserve(2 * g));
  ASSERT_OK_AND_ASSIGN(PhysicalAllocation chunk, backend->CreateChunk(2 * g));
  EXPECT_THAT(backend->Map(static_cast<char*>(va.base()) + g, chunk),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       testing::HasSubstr("inside a reservation")));
}

TEST(CpuBackendTest, OverlappingMapFails) {
  auto backend = MakeBackend();
  const size_t g = backend->granularity();
  ASSERT_OK_AND_ASSIGN(Reservation va, backend->Reserve(2 * g));
  ASSERT_OK_AND_ASSIGN(PhysicalAllocation a, backend->CreateChunk(2 * g));
  ASSERT_OK_AND_ASSIGN(PhysicalAllocation b, backend->CreateChunk(g));
  ASSERT_OK_AND_ASSIGN(Mapping m, backend->Map(va.base(), a));
  EXPECT_THAT(backend->Map(static_cast<char*>(va.base()) + g, b),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(CpuBackendTest, FreeReservationWithMappingFails) {
  auto backend = MakeBackend();
  const size_t g = backend->granularity();
  ASSERT_OK_AND_ASSIGN(Reservation va, backend->Reserve(g));
  ASSERT_OK_AND_ASSIGN(PhysicalAllocation a, backend->CreateChunk(g));
  ASSERT_OK_AND_ASSIGN(Mapping m, backend->Map(va.base(), a));
  EXPECT_THAT(backend->FreeAddressRange(va.base(), g),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(m.Reset());
  EXPECT_OK(va.Reset());
  EXPECT_FALSE(va.valid());
}

TEST(CpuBackendTest, UnknownHandleAndBadUnmapFail) {
  auto backend = MakeBackend();
  EXPECT_THAT(backend->ReleasePhysical(12345),
              StatusIs(absl::StatusCode::kInvalidArgument));
  int x = 0;
  EXPECT_THAT(backend->UnmapRange(&x, backend->granularity()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(CpuBackendTest, MemoryInfoIsPlausible) {
  auto backend = MakeBackend();
  ASSERT_OK_AND_ASSIGN(DeviceMemoryInfo info, backend->MemoryInfo());
  EXPECT_GT(info.total_bytes, 0u);
  EXPECT_LE(info.free_bytes, info.total_bytes);
  EXPECT_GT(info.process_resident_bytes, 0u);
}

TEST(CpuBackendTest, HostBuffersAndCopies) {
  auto backend = MakeBackend();
  ASSERT_OK_AND_ASSIGN(void* host, backend->AllocateHost(4096));
  const char msg[] = "hello";
  ASSERT_OK(backend->CopyToDevice(host, msg, sizeof(msg)));
  char out[sizeof(msg)] = {};
  ASSERT_OK(backend->CopyToHost(out, host, sizeof(msg)));
  EXPECT_STREQ(out, "hello");
  EXPECT_OK(backend->FreeHost(host, 4096));
}

TEST(CpuBackendTest, RaiiTypesMoveOwnership) {
  auto backend = MakeBackend();
  const size_t g = backend->granularity();
  ASSERT_OK_AND_ASSIGN(Reservation a, backend->Reserve(g));
  void* base = a.base();
  Reservation b = std::move(a);
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(b.base(), base);
  EXPECT_EQ(b.device(), 0);
  EXPECT_EQ(b.bytes(), g);
}

}  // namespace
}  // namespace engine
}  // namespace colo
