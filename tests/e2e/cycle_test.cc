// Five full colocated cycles with two CPU engines, a controller and the demo
// trainer (real processes): every cycle's rollouts come from the weights the
// trainer broadcast in the previous cycle (weight_version increments and the
// tokens equal the offline oracle loaded from that checkpoint), every
// release is verified, and each engine's RSS after release stays within 5%
// of its idle baseline.
//
// Idle baseline: before the first cycle (after one warm-up rollout), each
// engine is paused and all its tags are released directly (no controller);
// its RSS then is the engine with nothing but the process itself. It is restored with
// UpdateWeightsFromDisk(base model) after resuming (weights have no host
// backup, so they come back "needs_weights").
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/engine/engine_fixture.h"
#include "proto/status/status_macros.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

using ::colo::controller::demo::CycleReport;
using ::colo::controller::demo::DemoTrainer;
using ::colo::controller::demo::RolloutReport;

constexpr int kCycles = 5;

absl::Status Check(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

// Pauses, releases everything, measures RSS, resumes and reloads the base
// weights from disk. Returns the RSS with everything released.
absl::StatusOr<int64_t> IdleBaseline(colo::v1::RolloutEngine::Stub& stub,
                                     const std::string& model_dir) {
  auto deadline = [] { return std::chrono::system_clock::now() + std::chrono::seconds(60); };
  {
    grpc::ClientContext c;
    c.set_deadline(deadline());
    colo::v1::PauseGenerationRequest r;
    r.set_mode("abort");
    colo::v1::PauseGenerationResponse o;
    RETURN_IF_ERROR(Check(stub.PauseGeneration(&c, r, &o)));
  }
  colo::v1::ReleaseTagsResponse released;
  {
    grpc::ClientContext c;
    c.set_deadline(deadline());
    RETURN_IF_ERROR(Check(stub.ReleaseTags(&c, colo::v1::ReleaseTagsRequest(), &released)));
  }
  ASSIGN_OR_RETURN(auto memory, EngineMemory(stub));
  const int64_t rss = ProcessRss(memory);
  {
    grpc::ClientContext c;
    c.set_deadline(deadline());
    colo::v1::ResumeTagsResponse o;
    RETURN_IF_ERROR(Check(stub.ResumeTags(&c, colo::v1::ResumeTagsRequest(), &o)));
  }
  {
    grpc::ClientContext c;
    c.set_deadline(deadline());
    colo::v1::UpdateWeightsFromDiskRequest r;
    r.set_model_path(model_dir);
    r.set_weight_version("0");
    r.set_flush_cache(true);
    colo::v1::UpdateWeightsResponse o;
    RETURN_IF_ERROR(Check(stub.UpdateWeightsFromDisk(&c, r, &o)));
  }
  {
    grpc::ClientContext c;
    c.set_deadline(deadline());
    colo::v1::ContinueGenerationRequest r;
    r.set_torch_empty_cache(true);
    colo::v1::ContinueGenerationResponse o;
    RETURN_IF_ERROR(Check(stub.ContinueGeneration(&c, r, &o)));
  }
  return rss;
}

// Rollout tokens of every engine equal the oracle for `model_dir`, and every
// response carries `version`.
void ExpectRolloutFrom(const RolloutReport& rollout, const std::string& model_dir,
                       const std::string& version, int max_new_tokens) {
  ASSERT_OK_AND_ASSIGN(auto oracle, OfflineGreedy(model_dir, rollout.prompts, max_new_tokens));
  for (const auto& e : rollout.engines) {
    SCOPED_TRACE(absl::StrCat("engine ", e.engine, ", expected weights ", model_dir));
    for (const std::string& v : e.weight_versions) EXPECT_EQ(v, version);
    EXPECT_EQ(e.tokens, oracle);
  }
}

TEST(CycleTest, FiveCyclesServeEachNewCheckpointAndReleaseToBaseline) {
  ASSERT_OK_AND_ASSIGN(const std::string model, E2EModel());
  ASSERT_OK_AND_ASSIGN(auto node, E2ENode::Start(model, NodeOptions()));

  controller::demo::DemoTrainerOptions options = node->TrainerOptions();
  ASSERT_OK_AND_ASSIGN(auto trainer, DemoTrainer::Create(options));
  // Warm the generation path once, so the baseline includes what serving
  // itself allocates for good (threads, gRPC buffers).
  ASSERT_OK(trainer->Rollout().status());
  std::vector<int64_t> baseline(node->num_engines());
  for (int i = 0; i < node->num_engines(); ++i) {
    ASSERT_OK_AND_ASSIGN(baseline[i], IdleBaseline(node->engine_stub(i), model));
    ASSERT_OK_AND_ASSIGN(auto memory, EngineMemory(node->engine_stub(i)));
    // The baseline is meaningful: the tagged memory is a large part of RSS.
    const int64_t tagged = TagResidentBytes(memory.memory(), "weights") +
                           TagResidentBytes(memory.memory(), "kv_cache");
    EXPECT_GT(tagged, 30 << 20);
    std::printf("engine %d: idle baseline RSS %.1f MiB, tagged %.1f MiB, serving RSS %.1f MiB\n",
                i, baseline[i] / 1048576.0, tagged / 1048576.0, ProcessRss(memory) / 1048576.0);
  }

  std::string weights = model;  // what the engines should be serving
  std::vector<std::vector<std::vector<int32_t>>> outputs;
  for (int step = 1; step <= kCycles; ++step) {
    SCOPED_TRACE(absl::StrCat("cycle ", step));
    ASSERT_OK_AND_ASSIGN(RolloutReport rollout, trainer->Rollout());
    ExpectRolloutFrom(rollout, weights, absl::StrCat(step - 1), options.max_new_tokens);
    outputs.push_back(rollout.engines[0].tokens);

    ASSERT_OK_AND_ASSIGN(auto prepared, trainer->PrepareTraining(step));
    EXPECT_FALSE(prepared.replayed());
    EXPECT_EQ(prepared.state().phase(), colo::v1::TRAINING);
    ASSERT_EQ(prepared.state().engines_size(), node->num_engines());
    for (int i = 0; i < node->num_engines(); ++i) {
      const auto& memory = prepared.state().engines(i).memory();
      for (const char* tag : {"weights", "kv_cache", "cuda_graph"}) {
        EXPECT_EQ(TagResidentBytes(memory, tag), 0) << tag << " on engine " << i;
      }
      const int64_t rss = memory.device().process_resident_bytes();
      std::printf("cycle %d engine %d: RSS after release %.2f MiB (baseline %.2f, %+.2f%%)\n",
                  step, i, rss / 1048576.0, baseline[i] / 1048576.0,
                  100.0 * (rss - baseline[i]) / baseline[i]);
      EXPECT_LE(std::abs(rss - baseline[i]), baseline[i] / 20)
          << "engine " << i << " RSS after release " << rss << " vs idle baseline "
          << baseline[i];
    }

    ASSERT_OK_AND_ASSIGN(weights, trainer->Train(step));
    ASSERT_OK_AND_ASSIGN(auto group, trainer->BeginWeightSync(step));
    EXPECT_EQ(group.state().phase(), colo::v1::WEIGHT_SYNC);
    std::vector<weight_sync::EngineUpdateResult> updates;
    ASSERT_OK_AND_ASSIGN(auto sent, trainer->Broadcast(step, group, &updates));
    EXPECT_GT(sent.bytes, 15 << 20);
    ASSERT_EQ(updates.size(), 2u);
    for (const auto& u : updates) EXPECT_EQ(u.response.weight_version(), absl::StrCat(step));
    EXPECT_FALSE(trainer->holds_weights());
    ASSERT_OK_AND_ASSIGN(auto finished, trainer->FinishWeightSync(step));
    EXPECT_EQ(finished.state().phase(), colo::v1::ROLLOUT);
    for (const auto& e : finished.state().engines()) EXPECT_EQ(e.weight_version(), absl::StrCat(step));
  }
  ASSERT_OK_AND_ASSIGN(RolloutReport last, trainer->Rollout());
  ExpectRolloutFrom(last, weights, absl::StrCat(kCycles), options.max_new_tokens);
  outputs.push_back(last.engines[0].tokens);
  // The updates changed what the engines generate.
  int changes = 0;
  for (size_t k = 1; k < outputs.size(); ++k) changes += outputs[k] != outputs[k - 1];
  EXPECT_GT(changes, 0);

  // RunCycle (the binary's path) works on top and records all six phases.
  ASSERT_OK_AND_ASSIGN(CycleReport report, trainer->RunCycle(kCycles + 1));
  ASSERT_EQ(report.phases.size(), 6u);
  EXPECT_EQ(report.phases.back().state.phase(), colo::v1::ROLLOUT);
  std::printf("%s", controller::demo::FormatCycle(report).c_str());
  EXPECT_THAT(node->controller().Terminate(), IsOkAndHolds(0));
}

}  // namespace
}  // namespace colo::test_util
