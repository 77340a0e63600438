#include "weight_sync/finite_check.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "engine/model/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace weight_sync {
namespace {

using ::testing::HasSubstr;

TEST(FirstNonFiniteTest, Float32) {
  std::vector<float> v(5000, 1.5f);
  EXPECT_EQ(FirstNonFinite(TensorDtype::kF32, v.data(), v.size()), -1);
  v[4321] = std::numeric_limits<float>::infinity();
  v[4999] = std::nanf("");
  EXPECT_EQ(FirstNonFinite(TensorDtype::kF32, v.data(), v.size()), 4321);
  v[7] = -std::numeric_limits<float>::infinity();
  EXPECT_EQ(FirstNonFinite(TensorDtype::kF32, v.data(), v.size()), 7);
  // Largest finite and denormals are fine.
  std::vector<float> ok = {std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                           std::numeric_limits<float>::denorm_min(), 0.f, -0.f};
  EXPECT_EQ(FirstNonFinite(TensorDtype::kF32, ok.data(), ok.size()), -1);
}

TEST(FirstNonFiniteTest, SixteenBitFormats) {
  std::vector<uint16_t> bf(1000, engine::FloatToBf16(2.f));
  EXPECT_EQ(FirstNonFinite(TensorDtype::kBF16, bf.data(), bf.size()), -1);
  bf[999] = 0x7fc0;  // bf16 NaN
  EXPECT_EQ(FirstNonFinite(TensorDtype::kBF16, bf.data(), bf.size()), 999);
  std::vector<uint16_t> h(600, 0x3c00);  // 1.0 in float16
  h[1] = 0x7bff;                          // largest finite float16
  EXPECT_EQ(FirstNonFinite(TensorDtype::kF16, h.data(), h.size()), -1);
  h[513] = 0xfc00;  // -inf
  EXPECT_EQ(FirstNonFinite(TensorDtype::kF16, h.data(), h.size()), 513);
}

TEST(CheckFiniteTest, NamesTheTensorTheIndexAndTheKind) {
  TensorSpec spec{"model.norm.weight", TensorDtype::kF32, {2, 3}};
  std::vector<float> v(6, 0.f);
  EXPECT_OK(CheckFinite(spec, v.data()));
  v[4] = std::nanf("");
  EXPECT_THAT(CheckFinite(spec, v.data()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tensor \"model.norm.weight\": element 4 (flat, row-major) is NaN")));
  v[4] = -std::numeric_limits<float>::infinity();
  EXPECT_THAT(CheckFinite(spec, v.data()), StatusIs(absl::StatusCode::kInvalidArgument,
                                                    HasSubstr("is -inf")));
}

}  // namespace
}  // namespace weight_sync
}  // namespace colo
