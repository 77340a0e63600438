#include "controller/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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

TEST(MetricsTest, HttpServerServesTheText) {
  ASSERT_OK_AND_ASSIGN(auto server,
                       MetricsHttpServer::Start({}, [] { return std::string("colo 1\n"); }));
  ASSERT_GT(server->port(), 0);
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server->port()));
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(::send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  std::string response;
  char buf[512];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) response.append(buf, static_cast<size_t>(n));
  ::close(fd);
  EXPECT_THAT(response, HasSubstr("200 OK"));
  EXPECT_THAT(response, HasSubstr("\r\n\r\ncolo 1\n"));
  server->Stop();
}

TEST(MetricsTest, BusyPortIsUnavailable) {
  ASSERT_OK_AND_ASSIGN(auto first, MetricsHttpServer::Start({}, [] { return std::string(); }));
  EXPECT_THAT(MetricsHttpServer::Start({.port = first->port()}, [] { return std::string(); }),
              StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace controller
}  // namespace colo
