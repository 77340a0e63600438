// The seed-000 guarantee on a real architecture: a GPT-OSS engine (CPU;
// alternating sliding-window and full-attention layers, so its KV cache is a
// full pool plus an SWA pool, both in the kv_cache tag) goes through a real
// colocated cycle with colo-controller (release verification on, the
// default 0.95 of the reported bytes): PrepareTraining releases kv_cache and
// weights and the process RSS falls by both KV pools and the weights; the
// weights come back over a Gloo broadcast from the demo trainer; after
// FinishWeightSync the engine generates token-identically to before (the
// trainer sends the same weights: perturb 0) and to the offline oracle.
// Prompts are longer than the window, so sliding layers and sinks matter.
//
// A second test is the negative control: an engine whose kv_cache release
// keeps its memory (test-only --debug_skip_release_tag) makes PrepareTraining
// fail naming kv_cache, so a GPT-OSS release that silently kept the SWA pool
// (the failure this project exists to prevent) could not pass verification.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/engine/engine_fixture.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

using ::colo::controller::demo::DemoTrainer;
using ::colo::controller::demo::RolloutReport;
using ::testing::HasSubstr;

absl::StatusOr<std::string> GptOssModel() {
  engine::TinyModelOptions o;
  o.arch = "gpt_oss";
  o.layers = 4;  // sliding, full, sliding, full
  o.hidden = 128;
  o.heads = 4;
  o.kv_heads = 2;
  o.head_dim = 64;
  o.vocab = 4096;
  o.experts = 8;
  o.experts_per_token = 2;
  o.moe_intermediate = 128;
  o.sliding_window = 16;
  o.dtype = engine::TensorDtype::kBF16;
  o.seed = 23;
  return MakeTinyModel("e2e_gpt_oss", o);
}

NodeOptions GptOssNode() {
  NodeOptions options;
  options.num_engines = 1;
  options.engine_flags = {"--kv_cache_bytes=33554432", "--page_size=16"};
  return options;
}

controller::demo::DemoTrainerOptions Trainer(const E2ENode& node) {
  controller::demo::DemoTrainerOptions o = node.TrainerOptions();
  o.num_prompts = 3;
  o.prompt_len = 40;  // > sliding_window
  o.max_new_tokens = 24;
  o.perturb = 0.0;    // the trainer sends back the same weights
  return o;
}

int64_t PoolBytes(const colo::v1::GetMemoryInfoResponse& memory, const std::string& pool) {
  int64_t bytes = 0;
  for (const auto& p : memory.memory().kv_pools()) {
    if (p.pool() == pool) bytes += p.bytes();
  }
  return bytes;
}

TEST(GptOssCycleTest, ReleaseReturnsBothKvPoolsVerifiedAndResumeIsTokenIdentical) {
  ASSERT_OK_AND_ASSIGN(const std::string model, GptOssModel());
  ASSERT_OK_AND_ASSIGN(auto node, E2ENode::Start(model, GptOssNode()));
  ASSERT_OK_AND_ASSIGN(auto info, EngineInfo(node->engine_stub(0)));
  EXPECT_EQ(info.model().architecture(), "gpt_oss");

  const controller::demo::DemoTrainerOptions options = Trainer(*node);
  ASSERT_OK_AND_ASSIGN(auto trainer, DemoTrainer::Create(options));
  ASSERT_OK_AND_ASSIGN(RolloutReport before, trainer->Rollout());
  ASSERT_OK_AND_ASSIGN(auto oracle, OfflineGreedy(model, before.prompts, options.max_new_tokens));
  ASSERT_EQ(before.engines.size(), 1u);
  EXPECT_EQ(before.engines[0].tokens, oracle);

  ASSERT_OK_AND_ASSIGN(auto serving, EngineMemory(node->engine_stub(0)));
  const int64_t full = PoolBytes(serving, "full"), swa = PoolBytes(serving, "swa");
  const int64_t weights = TagResidentBytes(serving.memory(), "weights");
  std::printf("serving: full KV pool %.1f MiB, SWA KV pool %.1f MiB, weights %.1f MiB, RSS %.1f MiB\n",
              full / 1048576.0, swa / 1048576.0, weights / 1048576.0,
              ProcessRss(serving) / 1048576.0);
  ASSERT_GT(full, 8 << 20);
  ASSERT_GT(swa, 8 << 20) << "the SWA pool must be a real part of kv_cache";
  EXPECT_GE(TagResidentBytes(serving.memory(), "kv_cache"), full + swa);

  // The controller pauses, releases and verifies (it would fail the step if
  // the engine's RSS did not fall by what it reported).
  ASSERT_OK_AND_ASSIGN(auto prepared, trainer->PrepareTraining(1));
  EXPECT_EQ(prepared.state().phase(), colo::v1::TRAINING);
  ASSERT_EQ(prepared.state().engines_size(), 1);
  const colo::v1::MemoryInfo& released = prepared.state().engines(0).memory();
  EXPECT_EQ(TagResidentBytes(released, "kv_cache"), 0);
  EXPECT_EQ(TagResidentBytes(released, "weights"), 0);
  const int64_t drop = ProcessRss(serving) - released.device().process_resident_bytes();
  std::printf("released: RSS %.1f MiB (fell %.1f MiB for %.1f MiB of KV + weights)\n",
              released.device().process_resident_bytes() / 1048576.0, drop / 1048576.0,
              (full + swa + weights) / 1048576.0);
  EXPECT_GE(drop, (full + swa + weights) * 95 / 100)
      << "RSS fell by " << drop << " bytes; full pool " << full << ", SWA pool " << swa
      << ", weights " << weights;

  ASSERT_OK(trainer->Train(1).status());
  ASSERT_OK_AND_ASSIGN(auto group, trainer->BeginWeightSync(1));
  EXPECT_EQ(group.state().phase(), colo::v1::WEIGHT_SYNC);
  std::vector<weight_sync::EngineUpdateResult> updates;
  ASSERT_OK(trainer->Broadcast(1, group, &updates).status());
  ASSERT_EQ(updates.size(), 1u);
  EXPECT_EQ(updates[0].response.weight_version(), "1");
  ASSERT_OK_AND_ASSIGN(auto finished, trainer->FinishWeightSync(1));
  EXPECT_EQ(finished.state().phase(), colo::v1::ROLLOUT);

  ASSERT_OK_AND_ASSIGN(RolloutReport after, trainer->Rollout());
  EXPECT_EQ(after.engines[0].tokens, before.engines[0].tokens);
  for (const std::string& v : after.engines[0].weight_versions) EXPECT_EQ(v, "1");
  ASSERT_OK_AND_ASSIGN(auto resumed, EngineMemory(node->engine_stub(0)));
  EXPECT_EQ(PoolBytes(resumed, "full"), full);
  EXPECT_EQ(PoolBytes(resumed, "swa"), swa);
  ASSERT_OK_AND_ASSIGN(auto end_info, EngineInfo(node->engine_stub(0)));
  EXPECT_EQ(end_info.kv_audit_violations(), 0) << end_info.last_kv_audit_error();
  EXPECT_THAT(node->controller().Terminate(), IsOkAndHolds(0));
}

TEST(GptOssCycleTest, KvCacheReleaseThatKeepsMemoryFailsVerification) {
  ASSERT_OK_AND_ASSIGN(const std::string model, GptOssModel());
  NodeOptions options = GptOssNode();
  options.engine_flags.push_back("--debug_skip_release_tag=kv_cache");
  ASSERT_OK_AND_ASSIGN(auto node, E2ENode::Start(model, options));
  ASSERT_OK_AND_ASSIGN(auto trainer, DemoTrainer::Create(Trainer(*node)));
  ASSERT_OK(trainer->Rollout().status());
  EXPECT_THAT(trainer->PrepareTraining(1),
              StatusIs(absl::StatusCode::kAborted,
                       HasSubstr("release verification failed on engine " +
                                 node->engine_address(0))));
  ASSERT_OK_AND_ASSIGN(auto state, GetNodeState(node->stub(), false));
  EXPECT_EQ(state.phase(), colo::v1::FAILED);
  EXPECT_THAT(state.reason(), HasSubstr("kv_cache"));
}

}  // namespace
}  // namespace colo::test_util
