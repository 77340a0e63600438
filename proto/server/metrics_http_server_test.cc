#include "proto/server/metrics_http_server.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/http_get.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace {

using ::testing::HasSubstr;

TEST(MetricsHttpServerTest, HttpServerServesTheText) {
  ASSERT_OK_AND_ASSIGN(auto server,
                       MetricsHttpServer::Start({}, [] { return std::string("colo 1\n"); }));
  ASSERT_GT(server->port(), 0);
  ASSERT_OK_AND_ASSIGN(std::string response, test_util::HttpGet(server->port(), "/metrics"));
  EXPECT_THAT(response, HasSubstr("200 OK"));
  EXPECT_THAT(response, HasSubstr("\r\n\r\ncolo 1\n"));
  server->Stop();
}

TEST(MetricsHttpServerTest, BusyPortIsUnavailable) {
  ASSERT_OK_AND_ASSIGN(auto first, MetricsHttpServer::Start({}, [] { return std::string(); }));
  EXPECT_THAT(MetricsHttpServer::Start({.port = first->port()}, [] { return std::string(); }),
              StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace colo
