#include "engine/device/fault_injecting_backend.h"

#include "engine/device/cpu_backend.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

TEST(FaultInjectingBackendTest, FailsNthPhysicalAllocation) {
  ASSERT_OK_AND_ASSIGN(auto cpu, CpuBackend::Create(CpuBackend::Options()));
  FaultInjectingBackend faulty(cpu.get());
  const size_t g = faulty.granularity();
  faulty.FailPhysicalAllocationAfter(2);
  ASSERT_OK_AND_ASSIGN(PhysicalAllocation a, faulty.CreateChunk(g));
  ASSERT_OK_AND_ASSIGN(PhysicalAllocation b, faulty.CreateChunk(g));
  EXPECT_THAT(faulty.CreateChunk(g),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       testing::HasSubstr("injected")));
  EXPECT_THAT(faulty.CreateChunk(g),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(faulty.injected_failures(), 2);
  faulty.ClearFaults();
  EXPECT_OK(faulty.CreateChunk(g).status());
  EXPECT_EQ(faulty.physical_allocations(), 3);
  EXPECT_EQ(faulty.kind(), "cpu");
}

TEST(FaultInjectingBackendTest, FailsMapAndLeavesNothingMapped) {
  ASSERT_OK_AND_ASSIGN(auto cpu, CpuBackend::Create(CpuBackend::Options()));
  FaultInjectingBackend faulty(cpu.get());
  const size_t g = faulty.granularity();
  ASSERT_OK_AND_ASSIGN(Reservation va, faulty.Reserve(g));
  ASSERT_OK_AND_ASSIGN(PhysicalAllocation a, faulty.CreateChunk(g));
  faulty.FailMapAfter(0);
  EXPECT_THAT(faulty.Map(va.base(), a),
              StatusIs(absl::StatusCode::kInternal));
  faulty.ClearFaults();
  // Really nothing mapped: mapping now succeeds.
  ASSERT_OK_AND_ASSIGN(Mapping m, faulty.Map(va.base(), a));
  EXPECT_TRUE(m.valid());
}

}  // namespace
}  // namespace engine
}  // namespace colo
