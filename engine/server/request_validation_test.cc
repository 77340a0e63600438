#include "engine/server/request_validation.h"

#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo::engine {
namespace {

using ::testing::HasSubstr;

constexpr ModelLimits kLimits{.vocab_size = 100, .max_context_tokens = 64};

colo::v1::GenerateRequest ValidRequest() {
  colo::v1::GenerateRequest request;
  request.add_input_ids(1);
  request.add_input_ids(99);
  request.mutable_sampling_params()->set_max_new_tokens(8);
  return request;
}

TEST(RequestValidationTest, AcceptsValidRequest) {
  EXPECT_OK(ValidateGenerateRequest(ValidRequest(), kLimits));
}

TEST(RequestValidationTest, RejectsEmptyInput) {
  colo::v1::GenerateRequest request = ValidRequest();
  request.clear_input_ids();
  EXPECT_THAT(ValidateGenerateRequest(request, kLimits),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("input_ids is empty")));
}

TEST(RequestValidationTest, RejectsTokenOutsideVocabularyNamingIndex) {
  colo::v1::GenerateRequest request = ValidRequest();
  request.add_input_ids(100);
  EXPECT_THAT(ValidateGenerateRequest(request, kLimits),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("input_ids[2] = 100")));
  request.set_input_ids(2, -1);
  EXPECT_THAT(ValidateGenerateRequest(request, kLimits),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(RequestValidationTest, RejectsMaxNewTokensBeyondContext) {
  colo::v1::GenerateRequest request = ValidRequest();
  request.mutable_sampling_params()->set_max_new_tokens(63);
  EXPECT_THAT(ValidateGenerateRequest(request, kLimits),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exceeds the model's context")));
}

TEST(RequestValidationTest, RejectsBadSamplingParams) {
  colo::v1::GenerateRequest request = ValidRequest();
  request.mutable_sampling_params()->set_max_new_tokens(0);
  EXPECT_THAT(ValidateGenerateRequest(request, kLimits),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_new_tokens")));
  request = ValidRequest();
  request.mutable_sampling_params()->set_temperature(-1);
  EXPECT_THAT(ValidateGenerateRequest(request, kLimits),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("temperature")));
  request = ValidRequest();
  request.mutable_sampling_params()->set_top_p(1.5);
  EXPECT_THAT(ValidateGenerateRequest(request, kLimits),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_p")));
  request = ValidRequest();
  request.mutable_sampling_params()->set_top_k(-2);
  EXPECT_THAT(ValidateGenerateRequest(request, kLimits),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_k")));
  request = ValidRequest();
  request.mutable_sampling_params()->add_stop_token_ids(1000);
  EXPECT_THAT(ValidateGenerateRequest(request, kLimits),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stop_token_ids")));
  request = ValidRequest();
  request.clear_sampling_params();
  EXPECT_THAT(ValidateGenerateRequest(request, kLimits),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sampling_params")));
}

}  // namespace
}  // namespace colo::engine
