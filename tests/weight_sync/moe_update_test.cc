// Weight updates of MoE models (Qwen3-MoE with per-expert tensors; GPT-OSS
// with MXFP4 experts) against real colo-engine processes: an engine started
// on checkpoint A and updated to B from disk, over a gRPC tensor stream and
// over a Gloo broadcast (weight_sync::WeightSender, rank 0 in this process)
// holds exactly what an engine started on B holds (GetWeightChecksums of
// every tensor, every expert included) and generates the same tokens. A
// partial update of one expert by name changes that tensor only.
//
// What an update of an MXFP4 model carries: the HF parameter names of the
// dequantized model ("mlp.experts.gate_up_proj" [E][hidden][2I], ...) in
// float32/bfloat16/float16, as a bf16 trainer holds them; the MXFP4 blocks
// and scales are read only from disk (UpdateWeightsFromDisk dequantizes).
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/model/model_config.h"
#include "engine/model/model_weights.h"
#include "engine/model/mxfp4.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"
#include "tests/weight_sync/weight_sync_fixture.h"
#include "weight_sync/sender.h"

namespace colo::test_util {
namespace {

engine::TinyModelOptions MoeOptions(const std::string& arch, uint64_t seed) {
  engine::TinyModelOptions m;
  m.arch = arch == "gpt_oss_mxfp4" ? "gpt_oss" : arch;
  m.layers = 2;
  m.hidden = 64;
  m.heads = 4;
  m.kv_heads = 2;
  m.vocab = 256;
  m.max_position = 2048;
  m.experts = 6;
  m.experts_per_token = 2;
  m.moe_intermediate = 32;
  m.sliding_window = 8;
  m.mxfp4 = arch == "gpt_oss_mxfp4";
  // bf16 checkpoints, as published (and so the trainer's bf16 copy below
  // holds exactly the checkpoint's values).
  m.dtype = engine::TensorDtype::kBF16;
  m.seed = seed;
  return m;
}

// The checkpoint a bf16 trainer of `dir`'s model would send: every tensor
// of the model under its HF name (MXFP4 experts dequantized), as bfloat16.
absl::StatusOr<std::string> TrainerCheckpoint(const std::string& dir, const std::string& out) {
  absl::StatusOr<engine::ModelConfig> config = engine::LoadModelConfig(dir + "/config.json");
  if (!config.ok()) return config.status();
  absl::StatusOr<std::unique_ptr<engine::SafetensorsCheckpoint>> ckpt =
      engine::SafetensorsCheckpoint::Open(dir);
  if (!ckpt.ok()) return ckpt.status();
  engine::SafetensorsWriter writer;
  for (const auto& [name, shape] : engine::ModelWeights::TensorShapes(*config)) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> values(n);
    absl::Status s = engine::ReadCheckpointTensor(**ckpt, name, shape, values.data());
    if (!s.ok()) return s;
    s = writer.AddFloat(name, engine::TensorDtype::kBF16, shape, values);
    if (!s.ok()) return s;
  }
  if (std::system(absl::StrCat("mkdir -p '", out, "'").c_str()) != 0) {
    return absl::InternalError("mkdir " + out);
  }
  absl::Status s = writer.Write(out + "/model.safetensors");
  if (!s.ok()) return s;
  return out;
}

class MoeUpdateTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string arch = GetParam();
    ASSERT_OK_AND_ASSIGN(a_, MakeTinyModel("moe_a_" + arch, MoeOptions(arch, 41)));
    ASSERT_OK_AND_ASSIGN(b_, MakeTinyModel("moe_b_" + arch, MoeOptions(arch, 42)));
    const char* tmp = std::getenv("TEST_TMPDIR");
    ASSERT_OK_AND_ASSIGN(b_trainer_, TrainerCheckpoint(b_, absl::StrCat(tmp ? tmp : "/tmp",
                                                                        "/moe_b_trainer_", arch)));
    ASSERT_OK_AND_ASSIGN(auto ref, StartEngine(b_, kVersionB));
    ASSERT_OK_AND_ASSIGN(outputs_b_, GreedyOutputs(*ref));
    ASSERT_OK_AND_ASSIGN(checksums_b_, WeightChecksums(*ref));
  }

  // A fresh engine on A, checked to differ from B.
  std::unique_ptr<TestEngine> EngineOnA() {
    auto engine = StartEngine(a_, kVersionA);
    EXPECT_OK(engine.status());
    if (!engine.ok()) return nullptr;
    auto outputs = GreedyOutputs(**engine);
    auto sums = WeightChecksums(**engine);
    EXPECT_OK(outputs.status());
    EXPECT_OK(sums.status());
    if (outputs.ok()) {
      EXPECT_NE(outputs->tokens, outputs_b_.tokens);
    }
    if (sums.ok()) {
      checksums_a_ = *sums;
      int differ = 0;
      for (const auto& [name, crc] : sums->crc) differ += checksums_b_.crc.at(name) != crc;
      EXPECT_EQ(differ, static_cast<int>(sums->crc.size())) << "A and B share tensors";
    }
    return *std::move(engine);
  }

  void ExpectServesB(TestEngine& engine, const std::string& path) {
    SCOPED_TRACE(path);
    ASSERT_OK_AND_ASSIGN(Outputs out, GreedyOutputs(engine));
    EXPECT_EQ(out.tokens, outputs_b_.tokens);
    EXPECT_THAT(out.versions, ::testing::Each(std::string(kVersionB)));
    ASSERT_OK_AND_ASSIGN(Checksums sums, WeightChecksums(engine));
    EXPECT_EQ(sums.crc, checksums_b_.crc);
    // Every expert tensor is covered.
    int experts = 0;
    for (const auto& [name, crc] : sums.crc) experts += name.find(".experts.") != std::string::npos;
    EXPECT_GE(experts, 4);
  }

  std::string a_, b_, b_trainer_;
  Outputs outputs_b_;
  Checksums checksums_b_, checksums_a_;
};

TEST_P(MoeUpdateTest, DiskStreamAndGlooEachReproduceCheckpointB) {
  {
    std::unique_ptr<TestEngine> engine = EngineOnA();
    ASSERT_NE(engine, nullptr);
    ASSERT_OK(UpdateFromDisk(*engine, b_, kVersionB).status());
    ExpectServesB(*engine, "UpdateWeightsFromDisk of B (MXFP4 blocks dequantized)");
  }
  ASSERT_OK_AND_ASSIGN(auto trainer, engine::SafetensorsCheckpoint::Open(b_trainer_));
  {
    std::unique_ptr<TestEngine> engine = EngineOnA();
    ASSERT_NE(engine, nullptr);
    ASSERT_OK(UpdateFromTensor(*engine, CheckpointChunks(*trainer, 997, kVersionB)).status());
    ExpectServesB(*engine, "UpdateWeightsFromTensor (bf16, HF names)");
  }
  {
    std::unique_ptr<TestEngine> engine = EngineOnA();
    ASSERT_NE(engine, nullptr);
    weight_sync::WeightSenderOptions so;
    so.engines = {engine->address()};
    so.bucket_bytes = 65536;
    so.init_timeout = absl::Seconds(30);
    so.transfer_timeout = absl::Seconds(30);
    ASSERT_OK_AND_ASSIGN(auto sender, weight_sync::WeightSender::Connect(so));
    ASSERT_OK_AND_ASSIGN(auto tensors, weight_sync::TensorsFromCheckpoint(*trainer));
    std::vector<weight_sync::EngineUpdateResult> results;
    ASSERT_OK(sender->Update(tensors, kVersionB, /*flush_cache=*/true, &results).status());
    ASSERT_OK(sender->DestroyGroup());
    ExpectServesB(*engine, "UpdateWeightsFromDistributed (Gloo, bf16, HF names)");
  }
}

TEST_P(MoeUpdateTest, PartialUpdateOfOneExpertTensorByName) {
  std::unique_ptr<TestEngine> engine = EngineOnA();
  ASSERT_NE(engine, nullptr);
  const std::string name = GetParam() == "qwen3_moe"
                               ? "model.layers.1.mlp.experts.4.down_proj.weight"
                               : "model.layers.1.mlp.experts.down_proj";
  ASSERT_OK_AND_ASSIGN(auto trainer, engine::SafetensorsCheckpoint::Open(b_trainer_));
  std::vector<v1::WeightChunk> chunks;
  for (v1::WeightChunk& c : CheckpointChunks(*trainer, 4096, kVersionB)) {
    if (c.has_commit() || c.tensor().name() == name) chunks.push_back(std::move(c));
  }
  ASSERT_GE(chunks.size(), 2u);
  ASSERT_OK(UpdateFromTensor(*engine, chunks).status());
  ASSERT_OK_AND_ASSIGN(Checksums sums, WeightChecksums(*engine));
  for (const auto& [tensor, crc] : sums.crc) {
    EXPECT_EQ(crc, tensor == name ? checksums_b_.crc.at(tensor) : checksums_a_.crc.at(tensor))
        << tensor;
  }
  ASSERT_OK_AND_ASSIGN(auto info, engine->Info());
  EXPECT_EQ(info.weight_version(), kVersionB);
}

INSTANTIATE_TEST_SUITE_P(Archs, MoeUpdateTest, ::testing::Values("qwen3_moe", "gpt_oss_mxfp4"));

}  // namespace
}  // namespace colo::test_util
