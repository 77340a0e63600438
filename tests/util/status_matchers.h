// GoogleTest matchers for absl::Status / absl::StatusOr (Debian's Abseil
// 20220623 ships none).
//
//   EXPECT_THAT(pool.Release({"weights"}), IsOk());
//   EXPECT_THAT(pool.Release({"foo"}), StatusIs(absl::StatusCode::kInvalidArgument));
//   EXPECT_THAT(result, StatusIs(absl::StatusCode::kNotFound, HasSubstr("session")));
#ifndef COLO_TESTS_UTIL_STATUS_MATCHERS_H_
#define COLO_TESTS_UTIL_STATUS_MATCHERS_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace colo {
namespace testing_internal {

inline const absl::Status& GetStatus(const absl::Status& status) {
  return status;
}

template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

}  // namespace testing_internal

MATCHER(IsOk, negation ? "is not OK" : "is OK") {
  const absl::Status& status = testing_internal::GetStatus(arg);
  if (!status.ok()) *result_listener << "status is " << status;
  return status.ok();
}

MATCHER_P(StatusIs, code,
          std::string(negation ? "does not have" : "has") + " code " +
              absl::StatusCodeToString(code)) {
  const absl::Status& status = testing_internal::GetStatus(arg);
  *result_listener << "status is " << status;
  return status.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher,
           std::string(negation ? "does not have" : "has") + " code " +
               absl::StatusCodeToString(code) + " and a matching message") {
  const absl::Status& status = testing_internal::GetStatus(arg);
  *result_listener << "status is " << status;
  return status.code() == code &&
         ::testing::ExplainMatchResult(message_matcher,
                                       std::string(status.message()),
                                       result_listener);
}

// OK and the value matches `value_matcher`.
MATCHER_P(IsOkAndHolds, value_matcher,
          std::string(negation ? "is not OK or does not hold" : "is OK and holds") +
              " a matching value") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(value_matcher, *arg, result_listener);
}

#define ASSERT_OK(expr) ASSERT_THAT((expr), ::colo::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::colo::IsOk())

// `ASSERT_OK_AND_ASSIGN(auto value, StatusOrExpr())`.
#define ASSERT_OK_AND_ASSIGN(lhs, rexpr)                                   \
  COLO_ASSERT_OK_AND_ASSIGN_IMPL_(                                         \
      COLO_MATCHERS_CONCAT_(colo_statusor_, __LINE__), lhs, rexpr)
#define COLO_MATCHERS_CONCAT_INNER_(a, b) a##b
#define COLO_MATCHERS_CONCAT_(a, b) COLO_MATCHERS_CONCAT_INNER_(a, b)
#define COLO_ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                    \
  ASSERT_THAT(statusor.status(), ::colo::IsOk());             \
  lhs = std::move(statusor).value()

}  // namespace colo

#endif  // COLO_TESTS_UTIL_STATUS_MATCHERS_H_
