#include "engine/model/mxfp4.h"

#include <cmath>
#include <random>

#include "engine/model/test_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

using ::testing::HasSubstr;

// One expert, rows = 2, cols = 32: codes by hand, transpose checked.
TEST(Mxfp4Test, DequantizesCodesScalesAndTransposes) {
  std::vector<uint8_t> blocks(2 * 16), scales = {127, 129};  // 2^0, 2^2
  for (int j = 0; j < 16; ++j) {
    blocks[j] = static_cast<uint8_t>((j % 16) | (((j + 3) % 16) << 4));  // row 0
    blocks[16 + j] = 0x7F;  // row 1: low 0xF (-6), high 0x7 (+6)
  }
  std::vector<float> out(32 * 2);
  DequantizeMxfp4(blocks.data(), scales.data(), 1, 2, 32, out.data());
  for (int j = 0; j < 16; ++j) {
    // out is [cols][rows]: column c of row r at out[c * 2 + r].
    EXPECT_EQ(out[(2 * j) * 2 + 0], kFp4Values[j % 16]) << j;
    EXPECT_EQ(out[(2 * j + 1) * 2 + 0], kFp4Values[(j + 3) % 16]) << j;
    EXPECT_EQ(out[(2 * j) * 2 + 1], -6.0f * 4);
    EXPECT_EQ(out[(2 * j + 1) * 2 + 1], 6.0f * 4);
  }
}

TEST(Mxfp4Test, QuantizeRoundTripsRepresentableValuesAndBoundsTheError) {
  const int64_t E = 2, rows = 3, cols = 64;
  // Every block (32 values along cols) holds codes times 2^s with a 6 first,
  // so its scale is 2^s exactly and every value is representable.
  std::vector<float> exact(E * cols * rows), noisy(E * cols * rows);
  for (int64_t e = 0; e < E; ++e)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const int s = static_cast<int>((c / 32 + r + e) % 3) - 1;
        const float code = c % 32 == 0 ? 6.0f : kFp4Values[(c * 7 + r) % 16];
        exact[(e * cols + c) * rows + r] = std::ldexp(code, s);
      }
  std::mt19937 rng(1);
  for (float& v : noisy) v = std::uniform_real_distribution<float>(-3, 3)(rng);
  std::vector<uint8_t> blocks, scales;
  std::vector<float> back(exact.size());
  QuantizeMxfp4(exact.data(), E, rows, cols, &blocks, &scales);
  ASSERT_EQ(blocks.size(), static_cast<size_t>(E * rows * cols / 2));
  ASSERT_EQ(scales.size(), static_cast<size_t>(E * rows * cols / 32));
  DequantizeMxfp4(blocks.data(), scales.data(), E, rows, cols, back.data());
  EXPECT_EQ(back, exact);
  QuantizeMxfp4(noisy.data(), E, rows, cols, &blocks, &scales);
  DequantizeMxfp4(blocks.data(), scales.data(), E, rows, cols, back.data());
  for (size_t i = 0; i < noisy.size(); ++i) {
    // Scale 2^s with block max <= 6 * 2^s <= 3 * 2: the widest e2m1 gap is 2
    // units, so |error| <= 2^s <= 1.
    EXPECT_LE(std::fabs(back[i] - noisy[i]), 1.0f) << i;
  }
}

class Mxfp4CheckpointTest : public ::testing::Test {
 protected:
  // gate_up_proj [E=2][cols=32][rows=4] as blocks/scales; `scale_shape` and
  // `dtype` of the scales are overridable.
  std::string Write(std::vector<int64_t> scale_shape, const std::string& scale_dtype,
                    bool with_scales = true) {
    const std::string d = TestDir("mxfp4_ckpt");
    SafetensorsWriter w;
    std::vector<float> values(2 * 32 * 4);
    for (size_t i = 0; i < values.size(); ++i) values[i] = 0.25f * static_cast<float>(i % 9) - 1;
    std::vector<uint8_t> blocks, scales;
    QuantizeMxfp4(values.data(), 2, 4, 32, &blocks, &scales);
    expected_.assign(values.size(), 0);
    DequantizeMxfp4(blocks.data(), scales.data(), 2, 4, 32, expected_.data());
    EXPECT_OK(w.AddRaw("p_blocks", "U8", {2, 4, 1, 16}, std::string(blocks.begin(), blocks.end())));
    int64_t n = 1;
    for (int64_t v : scale_shape) n *= v;
    std::string scale_bytes(scales.begin(), scales.end());
    scale_bytes.resize(n * (scale_dtype == "U8" ? 1 : 2), '\x7f');
    if (with_scales) {
      EXPECT_OK(w.AddRaw("p_scales", scale_dtype, scale_shape, scale_bytes));
    }
    EXPECT_OK(w.Write(d + "/model.safetensors"));
    return d;
  }
  std::vector<float> expected_;
};

TEST_F(Mxfp4CheckpointTest, ReadsTheDequantizedTensor) {
  ASSERT_OK_AND_ASSIGN(auto ckpt, SafetensorsCheckpoint::Open(Write({2, 4, 1}, "U8")));
  EXPECT_TRUE(CheckpointHasMxfp4(*ckpt, "p"));
  std::vector<float> got(2 * 32 * 4);
  ASSERT_OK(ReadCheckpointTensor(*ckpt, "p", {2, 32, 4}, got.data()));
  EXPECT_EQ(got, expected_);
}

TEST_F(Mxfp4CheckpointTest, BadScalesAndMissingTensorsAreNamed) {
  std::vector<float> got(2 * 32 * 4);
  ASSERT_OK_AND_ASSIGN(auto wrong_shape, SafetensorsCheckpoint::Open(Write({2, 4, 2}, "U8")));
  EXPECT_THAT(ReadCheckpointTensor(*wrong_shape, "p", {2, 32, 4}, got.data()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"p_scales\" has shape [2, 4, 2] but config.json implies [2, 4, 1]")));
  ASSERT_OK_AND_ASSIGN(auto wrong_dtype, SafetensorsCheckpoint::Open(Write({2, 4, 1}, "BF16")));
  EXPECT_THAT(ReadCheckpointTensor(*wrong_dtype, "p", {2, 32, 4}, got.data()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("p_scales")));
  ASSERT_OK_AND_ASSIGN(auto no_scales, SafetensorsCheckpoint::Open(Write({}, "U8", false)));
  EXPECT_THAT(ReadCheckpointTensor(*no_scales, "p", {2, 32, 4}, got.data()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("p_scales")));
  // The model expects more experts than the blocks hold.
  ASSERT_OK_AND_ASSIGN(auto ckpt, SafetensorsCheckpoint::Open(Write({2, 4, 1}, "U8")));
  std::vector<float> three(3 * 32 * 4);
  EXPECT_THAT(ReadCheckpointTensor(*ckpt, "p", {3, 32, 4}, three.data()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("p_blocks")));
  EXPECT_THAT(ReadCheckpointTensor(*ckpt, "q", {2, 32, 4}, got.data()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("\"q\" (nor its MXFP4 \"q_blocks\"")));
}

}  // namespace
}  // namespace engine
}  // namespace colo
