#include "engine/server/dtype_options.h"

#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo::engine {
namespace {

namespace kc = ::colo::kernels::cuda;
using kc::DType;

TEST(DTypeOptionsTest, ValidatesTheFlagValues) {
  EXPECT_OK(ValidateDTypeFlags("auto", "auto"));
  EXPECT_OK(ValidateDTypeFlags("bfloat16", "fp8_e4m3"));
  EXPECT_THAT(ValidateDTypeFlags("bf16", "auto"),
              StatusIs(absl::StatusCode::kInvalidArgument, testing::HasSubstr("--dtype")));
  EXPECT_THAT(ValidateDTypeFlags("auto", "float32"),
              StatusIs(absl::StatusCode::kInvalidArgument, testing::HasSubstr("--kv_cache_dtype")));
}

TEST(DTypeOptionsTest, CudaAutoFollowsTheCheckpoint) {
  ASSERT_OK_AND_ASSIGN(EngineDTypes d, ResolveDTypes("auto", "auto", "cuda", DType::kBFloat16));
  EXPECT_EQ(d.compute, DType::kBFloat16);
  EXPECT_EQ(d.kv_cache, DType::kBFloat16);
  ASSERT_OK_AND_ASSIGN(d, ResolveDTypes("auto", "auto", "cuda", DType::kFloat32));
  EXPECT_EQ(d.compute, DType::kFloat32);
  EXPECT_EQ(d.kv_cache, DType::kFloat32);
  ASSERT_OK_AND_ASSIGN(d, ResolveDTypes("float16", "fp8_e4m3", "cuda", DType::kFloat32));
  EXPECT_EQ(d.compute, DType::kFloat16);
  EXPECT_EQ(d.kv_cache, DType::kFp8E4M3);
  ASSERT_OK_AND_ASSIGN(d, ResolveDTypes("bfloat16", "bfloat16", "cuda", DType::kFloat32));
  EXPECT_EQ(d.kv_cache, DType::kBFloat16);
}

TEST(DTypeOptionsTest, CudaRefusesAMixedSixteenBitCache) {
  EXPECT_THAT(ResolveDTypes("bfloat16", "float16", "cuda", DType::kBFloat16),
              StatusIs(absl::StatusCode::kInvalidArgument, testing::HasSubstr("fp8_e4m3")));
  EXPECT_THAT(ResolveDTypes("float32", "bfloat16", "cuda", DType::kBFloat16),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(DTypeOptionsTest, CpuIsFloat32OnlyForNow) {
  ASSERT_OK_AND_ASSIGN(EngineDTypes d, ResolveDTypes("auto", "auto", "cpu", DType::kBFloat16));
  EXPECT_EQ(d.compute, DType::kFloat32);  // bf16 checkpoints convert on load, as before
  EXPECT_EQ(d.kv_cache, DType::kFloat32);
  EXPECT_OK(ResolveDTypes("float32", "auto", "cpu", DType::kBFloat16).status());
  EXPECT_THAT(ResolveDTypes("bfloat16", "auto", "cpu", DType::kBFloat16),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       testing::HasSubstr("not built yet")));
  EXPECT_THAT(ResolveDTypes("float16", "auto", "cpu", DType::kFloat32),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(ResolveDTypes("auto", "fp8_e4m3", "cpu", DType::kFloat32),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       testing::HasSubstr("--kv_cache_dtype")));
}

}  // namespace
}  // namespace colo::engine
