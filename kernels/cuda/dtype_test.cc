#include "kernels/cuda/dtype.h"

#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo::kernels::cuda {
namespace {

TEST(DTypeTest, ParsesNamesAndAliases) {
  EXPECT_THAT(ParseDType("bfloat16"), IsOkAndHolds(DType::kBFloat16));
  EXPECT_THAT(ParseDType("BF16"), IsOkAndHolds(DType::kBFloat16));
  EXPECT_THAT(ParseDType("float16"), IsOkAndHolds(DType::kFloat16));
  EXPECT_THAT(ParseDType("half"), IsOkAndHolds(DType::kFloat16));
  EXPECT_THAT(ParseDType("float32"), IsOkAndHolds(DType::kFloat32));
  EXPECT_THAT(ParseDType("fp8_e4m3"), IsOkAndHolds(DType::kFp8E4M3));
  EXPECT_THAT(ParseDType("int8"), StatusIs(absl::StatusCode::kInvalidArgument,
                                           testing::HasSubstr("bfloat16")));
}

TEST(DTypeTest, BytesAndNames) {
  EXPECT_EQ(DTypeBytes(DType::kFloat32), 4u);
  EXPECT_EQ(DTypeBytes(DType::kBFloat16), 2u);
  EXPECT_EQ(DTypeBytes(DType::kFloat16), 2u);
  EXPECT_EQ(DTypeBytes(DType::kFp8E4M3), 1u);
  for (DType d : {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFp8E4M3}) {
    EXPECT_THAT(ParseDType(DTypeName(d)), IsOkAndHolds(d));
  }
  EXPECT_TRUE(IsComputeDType(DType::kBFloat16));
  EXPECT_FALSE(IsComputeDType(DType::kFp8E4M3));
}

}  // namespace
}  // namespace colo::kernels::cuda
