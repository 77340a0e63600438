#include "engine/model/safetensors.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

using ::testing::HasSubstr;

std::string Dir(const std::string& name) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string d = std::string(base ? base : "/tmp") + "/" + name;
  std::string cmd = "rm -rf '" + d + "' && mkdir -p '" + d + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  return d;
}

std::string ReadAll(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteAll(const std::string& p, const std::string& s) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << s;
}

TEST(SafetensorsTest, RoundTripsF32F16Bf16) {
  const std::string d = Dir("st_roundtrip");
  SafetensorsWriter w;
  std::vector<float> v = {1.0f, -2.5f, 0.125f, 3.0f, 65504.0f, 1e-3f};
  ASSERT_OK(w.AddFloat("a", TensorDtype::kF32, {2, 3}, v));
  ASSERT_OK(w.AddFloat("b", TensorDtype::kF16, {6}, v));
  ASSERT_OK(w.AddFloat("c", TensorDtype::kBF16, {3, 2}, v));
  EXPECT_THAT(w.AddFloat("a", TensorDtype::kF32, {6}, v),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK(w.Write(d + "/model.safetensors"));
  ASSERT_OK_AND_ASSIGN(auto ckpt, SafetensorsCheckpoint::Open(d));
  std::vector<float> out(6);
  ASSERT_OK(ckpt->ReadAsFloat("a", {2, 3}, out.data()));
  EXPECT_EQ(out, v);
  ASSERT_OK(ckpt->ReadAsFloat("b", {6}, out.data()));
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(out[i], v[i], std::abs(v[i]) * 1e-3);
  ASSERT_OK(ckpt->ReadAsFloat("c", {3, 2}, out.data()));
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(out[i], v[i], std::abs(v[i]) * 1e-2);
  EXPECT_THAT(ckpt->ReadAsFloat("a", {3, 2}, out.data()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"a\"")));
  EXPECT_THAT(ckpt->ReadAsFloat("zz", {1}, out.data()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("zz")));
}

TEST(SafetensorsTest, ShardedCheckpointWithIndex) {
  const std::string d = Dir("st_sharded");
  SafetensorsWriter a, b;
  ASSERT_OK(a.AddFloat("x", TensorDtype::kF32, {2}, {1, 2}));
  ASSERT_OK(b.AddFloat("y", TensorDtype::kF32, {1}, {3}));
  ASSERT_OK(a.Write(d + "/model-00001-of-00002.safetensors"));
  ASSERT_OK(b.Write(d + "/model-00002-of-00002.safetensors"));
  WriteAll(d + "/model.safetensors.index.json",
           R"({"metadata": {}, "weight_map": {"x": "model-00001-of-00002.safetensors",
               "y": "model-00002-of-00002.safetensors"}})");
  ASSERT_OK_AND_ASSIGN(auto ckpt, SafetensorsCheckpoint::Open(d));
  EXPECT_EQ(ckpt->tensors().size(), 2u);
  float y;
  ASSERT_OK(ckpt->ReadAsFloat("y", {1}, &y));
  EXPECT_EQ(y, 3.0f);
  WriteAll(d + "/model.safetensors.index.json",
           R"({"weight_map": {"x": "model-00001-of-00002.safetensors", "q": "model-00002-of-00002.safetensors"}})");
  EXPECT_THAT(SafetensorsCheckpoint::Open(d),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"q\"")));
}

TEST(SafetensorsTest, CorruptAndTruncatedFilesAreErrorsNotCrashes) {
  const std::string d = Dir("st_corrupt");
  SafetensorsWriter w;
  ASSERT_OK(w.AddFloat("t", TensorDtype::kF32, {4}, {1, 2, 3, 4}));
  ASSERT_OK(w.Write(d + "/good.safetensors"));
  const std::string good = ReadAll(d + "/good.safetensors");
  // Every truncation is rejected cleanly.
  for (size_t len = 0; len < good.size(); ++len) {
    WriteAll(d + "/bad.safetensors", good.substr(0, len));
    auto f = SafetensorsFile::Open(d + "/bad.safetensors");
    EXPECT_FALSE(f.ok()) << "length " << len;
  }
  // Flipped bytes: never crash (result may be ok when only data changed).
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] ^= 0x5a;
    WriteAll(d + "/bad.safetensors", bad);
    auto f = SafetensorsFile::Open(d + "/bad.safetensors");
    if (f.ok()) {
      for (const auto& [name, v] : (*f)->tensors()) EXPECT_LE(v.bytes, good.size());
    }
  }
  SafetensorsWriter w2;
  ASSERT_OK(w2.AddRaw("t", "F32", {4}, std::string(12, '\0')));  // 12 != 16 bytes
  ASSERT_OK(w2.Write(d + "/short.safetensors"));
  EXPECT_THAT(SafetensorsFile::Open(d + "/short.safetensors"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"t\"")));
  EXPECT_THAT(SafetensorsFile::Open(d + "/missing.safetensors"),
              StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace engine
}  // namespace colo
