#include "controller/metrics.h"


#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace controller {
namespace {

using ::testing::HasSubstr;

::colo::v1::NodeState SampleState() {
  ::colo::v1::NodeState state;
  state.set_phase(::colo::v1::TRAINING);
  state.set_step(12);
  auto* d = state.add_recent_phases();
  d->set_phase(::colo::v1::RELEASING);
  d->set_duration_us(1500000);
  d->set_step(12);
  auto* e = state.add_engines();
  e->set_address("10.0.0.1:5000");
  e->set_healthy(true);
  auto* t = e->mutable_memory()->add_tags();
  t->set_tag("kv_cache");
  t->set_resident_bytes(0);
  t->set_reserved_bytes(4096);
  e->mutable_memory()->mutable_device()->set_free_bytes(8192);
  return state;
}

TEST(MetricsTest, RendersPhaseDurationsAndBytes) {
  const std::string text = RenderMetrics(SampleState(), 3);
  EXPECT_THAT(text, HasSubstr("colo_controller_phase{phase=\"TRAINING\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("colo_controller_phase{phase=\"ROLLOUT\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("colo_controller_step 12\n"));
  EXPECT_THAT(
      text,
      HasSubstr("colo_controller_phase_duration_seconds{phase=\"RELEASING\",step=\"12\"} 1.5\n"));
  EXPECT_THAT(text, HasSubstr("colo_controller_engine_tag_reserved_bytes{engine=\"10.0.0.1:5000\","
                              "tag=\"kv_cache\"} 4096\n"));
  EXPECT_THAT(text,
              HasSubstr("colo_controller_engine_device_free_bytes{engine=\"10.0.0.1:5000\"} 8192"));
  EXPECT_THAT(text, HasSubstr("colo_controller_verification_failures_total 3\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE colo_controller_verification_failures_total counter\n"));
}

}  // namespace
}  // namespace controller
}  // namespace colo
