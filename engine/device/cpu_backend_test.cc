#include "engine/device/cpu_backend.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
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

// Two mapped regions of `bytes` each for the exchange tests.
struct TwoRegions {
  Reservation va_a, va_b;
  PhysicalAllocation chunk_a, chunk_b;
  Mapping map_a, map_b;
  char* a = nullptr;
  char* b = nullptr;
};

TwoRegions MapTwo(CpuBackend* backend, size_t bytes) {
  TwoRegions r;
  r.va_a = std::move(backend->Reserve(bytes)).value();
  r.va_b = std::move(backend->Reserve(bytes)).value();
  r.chunk_a = std::move(backend->CreateChunk(bytes)).value();
  r.chunk_b = std::move(backend->CreateChunk(bytes)).value();
  r.map_a = std::move(backend->Map(r.va_a.base(), r.chunk_a)).value();
  r.map_b = std::move(backend->Map(r.va_b.base(), r.chunk_b)).value();
  r.a = static_cast<char*>(r.va_a.base());
  r.b = static_cast<char*>(r.va_b.base());
  return r;
}

// Byte i of a region filled by Fill(seed).
unsigned char Pattern(uint32_t seed, size_t i) {
  return static_cast<unsigned char>((i * 2654435761u + seed) >> 7);
}
void Fill(char* p, size_t bytes, uint32_t seed) {
  for (size_t i = 0; i < bytes; ++i) p[i] = static_cast<char>(Pattern(seed, i));
}
// First mismatching index, or -1.
int64_t FirstMismatch(const char* p, size_t bytes, uint32_t seed, size_t shift = 0) {
  for (size_t i = 0; i < bytes; ++i) {
    if (static_cast<unsigned char>(p[i]) != Pattern(seed, i + shift)) {
      return static_cast<int64_t>(i);
    }
  }
  return -1;
}

TEST(CpuBackendTest, ExchangePagesSwapsContentsAtFixedAddresses) {
  auto backend = MakeBackend();
  ASSERT_EQ(backend->exchange_page_bytes(), static_cast<size_t>(sysconf(_SC_PAGESIZE)));
  const size_t bytes = 16 * kMiB;
  TwoRegions r = MapTwo(backend.get(), bytes);
  Fill(r.a, bytes, 1);
  Fill(r.b, bytes, 2);
  ASSERT_OK_AND_ASSIGN(uint64_t rss_before, ReadProcessResidentBytes());
  ASSERT_OK(backend->ExchangePages(r.a, r.b, bytes));
  ASSERT_OK_AND_ASSIGN(uint64_t rss_after, ReadProcessResidentBytes());
  // The addresses are unchanged (r.a/r.b are read through again) and hold
  // each other's bytes; no page was duplicated.
  EXPECT_EQ(FirstMismatch(r.a, bytes, 2), -1);
  EXPECT_EQ(FirstMismatch(r.b, bytes, 1), -1);
  EXPECT_LE(rss_after, rss_before + bytes / 16);
  EXPECT_GE(rss_after + bytes / 16, rss_before);
  // Both ranges stay writable and exchange back.
  r.a[0] = 7;
  r.b[bytes - 1] = 9;
  ASSERT_OK(backend->ExchangePages(r.a, r.b, bytes));
  EXPECT_EQ(r.b[0], 7);
  EXPECT_EQ(r.a[bytes - 1], 9);
  EXPECT_EQ(FirstMismatch(r.a + 1, bytes - 2, 1, 1), -1);
  // The mappings still unmap (RSS drops) after the pages moved.
  ASSERT_OK(r.map_a.Reset());
  ASSERT_OK(r.map_b.Reset());
  ASSERT_OK_AND_ASSIGN(uint64_t rss_unmapped, ReadProcessResidentBytes());
  EXPECT_LE(rss_unmapped + bytes, rss_after);
}

TEST(CpuBackendTest, ExchangePagesOfAnInteriorRangeLeavesTheRest) {
  auto backend = MakeBackend();
  const size_t bytes = 4 * kMiB;
  const size_t page = backend->exchange_page_bytes();
  TwoRegions r = MapTwo(backend.get(), bytes);
  Fill(r.a, bytes, 3);
  Fill(r.b, bytes, 4);
  // a's pages [1, 1 + n) <-> b's pages [5, 5 + n): different offsets.
  const size_t n = 100 * page;
  ASSERT_OK(backend->ExchangePages(r.a + page, r.b + 5 * page, n));
  EXPECT_EQ(FirstMismatch(r.a, page, 3), -1);
  EXPECT_EQ(FirstMismatch(r.a + page, n, 4, 5 * page), -1);
  EXPECT_EQ(FirstMismatch(r.a + page + n, bytes - page - n, 3, page + n), -1);
  EXPECT_EQ(FirstMismatch(r.b, 5 * page, 4), -1);
  EXPECT_EQ(FirstMismatch(r.b + 5 * page, n, 3, page), -1);
  EXPECT_EQ(FirstMismatch(r.b + 5 * page + n, bytes - 5 * page - n, 4, 5 * page + n),
            -1);
}

TEST(CpuBackendTest, ExchangePagesRejectsBadRanges) {
  auto backend = MakeBackend();
  const size_t bytes = 2 * kMiB;
  const size_t page = backend->exchange_page_bytes();
  TwoRegions r = MapTwo(backend.get(), bytes);
  EXPECT_THAT(backend->ExchangePages(r.a + 64, r.b, page),
              StatusIs(absl::StatusCode::kInvalidArgument, testing::HasSubstr("page size")));
  EXPECT_THAT(backend->ExchangePages(r.a, r.b, page + 64),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend->ExchangePages(r.a, r.b, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend->ExchangePages(r.a, r.a + page, 2 * page),
              StatusIs(absl::StatusCode::kInvalidArgument, testing::HasSubstr("overlap")));
  // Beyond the mapping of b, and memory the backend did not map.
  EXPECT_THAT(backend->ExchangePages(r.a, r.b + page, bytes),
              StatusIs(absl::StatusCode::kInvalidArgument, testing::HasSubstr("not mapped")));
  ASSERT_OK_AND_ASSIGN(void* host, backend->AllocateHost(page));
  EXPECT_THAT(backend->ExchangePages(r.a, host, page),
              StatusIs(absl::StatusCode::kInvalidArgument, testing::HasSubstr("not mapped")));
  EXPECT_OK(backend->FreeHost(host, page));
}

// Each of the three moves failing: the first two leave both ranges as they
// were (error); a failed last move is finished by a copy (OK, exchanged).
TEST(CpuBackendTest, FailedExchangeStepsKeepContents) {
  auto backend = MakeBackend();
  const size_t bytes = 2 * kMiB;
  TwoRegions r = MapTwo(backend.get(), bytes);
  Fill(r.a, bytes, 5);
  Fill(r.b, bytes, 6);
  backend->FailExchangeStepForTesting(1);
  EXPECT_THAT(backend->ExchangePages(r.a, r.b, bytes),
              StatusIs(absl::StatusCode::kInternal, testing::HasSubstr("a -> scratch")));
  EXPECT_EQ(FirstMismatch(r.a, bytes, 5), -1);
  EXPECT_EQ(FirstMismatch(r.b, bytes, 6), -1);
  backend->FailExchangeStepForTesting(2);
  EXPECT_THAT(backend->ExchangePages(r.a, r.b, bytes),
              StatusIs(absl::StatusCode::kInternal, testing::HasSubstr("b -> a")));
  EXPECT_EQ(FirstMismatch(r.a, bytes, 5), -1);
  EXPECT_EQ(FirstMismatch(r.b, bytes, 6), -1);
  r.a[100] = 1;  // still writable after the pages moved back
  r.a[100] = static_cast<char>(Pattern(5, 100));
  backend->FailExchangeStepForTesting(3);
  ASSERT_OK(backend->ExchangePages(r.a, r.b, bytes));
  EXPECT_EQ(FirstMismatch(r.a, bytes, 6), -1);
  EXPECT_EQ(FirstMismatch(r.b, bytes, 5), -1);
  backend->FailExchangeStepForTesting(0);
  ASSERT_OK(backend->ExchangePages(r.a, r.b, bytes));
  EXPECT_EQ(FirstMismatch(r.a, bytes, 5), -1);
  EXPECT_EQ(FirstMismatch(r.b, bytes, 6), -1);
}

// Ranges made of several kernel mappings (one page read-only in the middle):
// on kernels that cannot move across mappings the exchange fails and keeps
// both ranges; on newer ones it succeeds. Either way no byte is lost.
TEST(CpuBackendTest, ExchangeAcrossKernelMappingsLosesNothing) {
  auto backend = MakeBackend();
  const size_t bytes = 2 * kMiB;
  const size_t page = backend->exchange_page_bytes();
  TwoRegions r = MapTwo(backend.get(), bytes);
  Fill(r.a, bytes, 7);
  Fill(r.b, bytes, 8);
  ASSERT_EQ(mprotect(r.b + 8 * page, page, PROT_READ), 0);
  const absl::Status st = backend->ExchangePages(r.a, r.b, bytes);
  if (st.ok()) {
    EXPECT_EQ(FirstMismatch(r.a, bytes, 8), -1);
    EXPECT_EQ(FirstMismatch(r.b, bytes, 7), -1);
    ASSERT_EQ(mprotect(r.a + 8 * page, page, PROT_READ | PROT_WRITE), 0);
  } else {
    EXPECT_THAT(st, StatusIs(absl::StatusCode::kInternal));
    EXPECT_EQ(FirstMismatch(r.a, bytes, 7), -1);
    EXPECT_EQ(FirstMismatch(r.b, bytes, 8), -1);
    ASSERT_EQ(mprotect(r.b + 8 * page, page, PROT_READ | PROT_WRITE), 0);
  }
}

}  // namespace
}  // namespace engine
}  // namespace colo
