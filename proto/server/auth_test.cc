#include "proto/server/auth.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace {

using ::testing::HasSubstr;

TEST(AuthTest, LoopbackHosts) {
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackHost("127.1.2.3"));
  EXPECT_TRUE(IsLoopbackHost("localhost"));
  EXPECT_TRUE(IsLoopbackHost("::1"));
  EXPECT_TRUE(IsLoopbackHost("[::1]"));
  EXPECT_FALSE(IsLoopbackHost("0.0.0.0"));
  EXPECT_FALSE(IsLoopbackHost("::"));
  EXPECT_FALSE(IsLoopbackHost("10.0.0.7"));
  EXPECT_FALSE(IsLoopbackHost("example.com"));
}

TEST(AuthTest, NonLoopbackBindNeedsToken) {
  EXPECT_OK(CheckBindSecurity("127.0.0.1", false));
  EXPECT_OK(CheckBindSecurity("0.0.0.0", true));
  EXPECT_THAT(CheckBindSecurity("0.0.0.0", false),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("--auth_token_file")));
}

TEST(AuthTest, CheckHeader) {
  TokenChecker checker("s3cret");
  ASSERT_TRUE(checker.enabled());
  EXPECT_OK(checker.CheckHeader("Bearer s3cret"));
  EXPECT_THAT(checker.CheckHeader("Bearer s3cre"), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(checker.CheckHeader("Bearer s3cretX"), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(checker.CheckHeader("Bearer other"), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(checker.CheckHeader("s3cret"),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("Bearer")));
  EXPECT_THAT(checker.CheckHeader(""), StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST(AuthTest, DisabledCheckerPassesEverything) {
  TokenChecker checker("");
  EXPECT_FALSE(checker.enabled());
  EXPECT_OK(checker.CheckHeader(""));
  EXPECT_OK(checker.Check(nullptr));
}

TEST(AuthTest, ReadTokenFile) {
  const std::string path = ::testing::TempDir() + "/token";
  {
    std::ofstream out(path);
    out << "  abc123\n";
  }
  ASSERT_OK_AND_ASSIGN(std::string token, ReadTokenFile(path));
  EXPECT_EQ(token, "abc123");
  {
    std::ofstream out(path, std::ios::trunc);
    out << "\n";
  }
  EXPECT_THAT(ReadTokenFile(path), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ReadTokenFile(path + ".missing"), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace colo
