#include "engine/model/checkpoint_dtype.h"

#include <fstream>
#include <string>

#include "engine/model/test_env.h"
#include "engine/model/tiny_model.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo::engine {
namespace {

namespace kc = ::colo::kernels::cuda;

TEST(CheckpointDTypeTest, FromTheTensors) {
  for (auto [stored, want] : {std::pair{TensorDtype::kF32, kc::DType::kFloat32},
                              std::pair{TensorDtype::kF16, kc::DType::kFloat16},
                              std::pair{TensorDtype::kBF16, kc::DType::kBFloat16}}) {
    TinyModelOptions o;
    o.dtype = stored;
    const std::string dir = TestDir("ckpt_dtype_" + std::string(TensorDtypeName(stored)));
    ASSERT_OK(WriteTinyModel(o, dir));
    EXPECT_THAT(CheckpointDType(dir), IsOkAndHolds(want));
  }
}

// colo-tiny-model writes torch_dtype float32 whatever it stores; a config
// that disagrees with the tensors loses to them.
TEST(CheckpointDTypeTest, TheTensorsWinOverConfig) {
  TinyModelOptions o;
  o.dtype = TensorDtype::kF32;
  const std::string dir = TestDir("ckpt_dtype_config");
  ASSERT_OK(WriteTinyModel(o, dir));
  // Rewrite config.json with a torch_dtype.
  std::ifstream in(dir + "/config.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  const size_t brace = text.find('{');
  ASSERT_NE(brace, std::string::npos);
  text.insert(brace + 1, "\"torch_dtype\": \"bfloat16\", ");
  std::ofstream(dir + "/config.json") << text;
  EXPECT_THAT(CheckpointDType(dir), IsOkAndHolds(kc::DType::kFloat32));
}

TEST(CheckpointDTypeTest, MissingCheckpointIsAnError) {
  EXPECT_FALSE(CheckpointDType(TestDir("ckpt_dtype_missing")).ok());
}

}  // namespace
}  // namespace colo::engine
