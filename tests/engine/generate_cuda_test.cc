// colo-engine --device=cuda as a process, over gRPC, against --device=cpu:
// GetServerInfo / GetMemoryInfo report the CUDA device, greedy tokens agree
// except at near-ties (checked by their logprobs), ReleaseTags of every tag
// gives the memory back to the driver, and after ResumeTags a weight update
// from disk (another checkpoint) reaches the GPU: the engine then generates
// what a CPU engine started on that checkpoint generates.
// --config=cuda only; skips (with the reason) where no GPU is usable.
#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/device/device_backend_factory.h"
#include "gtest/gtest.h"
#include "tests/engine/engine_fixture.h"
#include "tests/util/gpu_required.h"
#include "tests/util/greedy_agreement.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

constexpr int kVocab = 512;
constexpr int kNewTokens = 24;

const std::vector<std::string> kFlags = {"--kv_cache_bytes=33554432", "--page_size=16",
                                         "--cpu_threads=2"};

engine::TinyModelOptions Model(uint64_t seed) {
  engine::TinyModelOptions m;
  m.arch = "qwen3";
  m.layers = 4;
  m.hidden = 128;
  m.heads = 4;
  m.kv_heads = 2;
  m.vocab = kVocab;
  m.max_position = 1024;
  m.layer_types = {engine::LayerType::kSlidingAttention, engine::LayerType::kFullAttention,
                   engine::LayerType::kSlidingAttention, engine::LayerType::kFullAttention};
  m.sliding_window = 32;
  m.seed = seed;
  return m;
}

std::vector<std::vector<int32_t>> Prompts() {
  std::vector<std::vector<int32_t>> p;
  for (int i = 0; i < 4; ++i) p.push_back(Prompt(i, 8 + 20 * i, kVocab));
  return p;
}

std::vector<GenerateResult> GreedyAll(TestEngine& engine) {
  std::vector<GenerateResult> out;
  for (const auto& p : Prompts()) out.push_back(engine.Greedy(p, kNewTokens));
  return out;
}

// Every request's outputs agree up to a near-tie (tests/util/greedy_agreement.h);
// returns the number of positions that matched.
int ExpectAgree(const std::vector<GenerateResult>& want, const std::vector<GenerateResult>& got,
                const std::string& what) {
  int matched = 0;
  EXPECT_EQ(want.size(), got.size()) << what;
  for (size_t r = 0; r < want.size() && r < got.size(); ++r) {
    EXPECT_TRUE(want[r].status.ok()) << what << ": " << want[r].status.error_message();
    EXPECT_TRUE(got[r].status.ok()) << what << ": " << got[r].status.error_message();
    matched += ExpectAgreeUpToNearTie(want[r].tokens, want[r].logprobs, got[r].tokens,
                                      got[r].logprobs, absl::StrCat(what, " request ", r));
  }
  return matched;
}

TEST(GenerateCudaTest, MatchesCpuAndServesAnUpdateAfterReleaseResume) {
  absl::StatusOr<std::unique_ptr<engine::DeviceBackend>> gpu = engine::CreateDeviceBackend("cuda");
  COLO_SKIP_OR_FAIL_WITHOUT_GPU(gpu.status());
  gpu->reset();  // the engine process owns the device

  ASSERT_OK_AND_ASSIGN(std::string dir_a, MakeTinyModel("cuda_gen_a", Model(31)));
  ASSERT_OK_AND_ASSIGN(std::string dir_b, MakeTinyModel("cuda_gen_b", Model(32)));
  std::vector<std::string> cuda_flags = kFlags;
  cuda_flags.push_back("--device=cuda");
  ASSERT_OK_AND_ASSIGN(auto cuda, TestEngine::Start(dir_a, cuda_flags));
  ASSERT_OK_AND_ASSIGN(auto cpu_a, TestEngine::Start(dir_a, kFlags));

  ASSERT_OK_AND_ASSIGN(auto info, cuda->Info());
  EXPECT_EQ(info.device(), "cuda");
  ASSERT_OK_AND_ASSIGN(auto memory, cuda->Memory());
  EXPECT_EQ(memory.memory().device().kind(), "cuda");
  EXPECT_GT(memory.memory().device().total_bytes(), 0);

  const std::vector<GenerateResult> want_a = GreedyAll(*cpu_a);
  EXPECT_GE(ExpectAgree(want_a, GreedyAll(*cuda), "model a"), 4 * kNewTokens * 3 / 4);
  EXPECT_EQ(cpu_a->process().Terminate().value_or(-1), 0);

  // The colocated cycle: release everything, resume, update, serve.
  ASSERT_OK(cuda->Pause("retract").status());
  ASSERT_OK_AND_ASSIGN(auto released, cuda->Release({}));
  int64_t reported = 0;
  for (const auto& t : released.tags()) reported += t.bytes();
  EXPECT_GT(reported, 32 << 20);
  EXPECT_GE(released.device_free_bytes_after() - released.device_free_bytes_before(),
            reported * 95 / 100)
      << "device free " << released.device_free_bytes_before() << " -> "
      << released.device_free_bytes_after() << " for " << reported << " released bytes";
  ASSERT_OK(cuda->Resume({"weights"}).status());
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    colo::v1::UpdateWeightsFromDiskRequest disk;
    disk.set_model_path(dir_b);
    disk.set_weight_version("v2");
    colo::v1::UpdateWeightsResponse update;
    const grpc::Status s = cuda->stub().UpdateWeightsFromDisk(&context, disk, &update);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  ASSERT_OK(cuda->Resume({"kv_cache", "cuda_graph"}).status());
  ASSERT_OK(cuda->Continue().status());

  ASSERT_OK_AND_ASSIGN(auto cpu_b, TestEngine::Start(dir_b, kFlags));
  const std::vector<GenerateResult> want_b = GreedyAll(*cpu_b);
  const std::vector<GenerateResult> got_b = GreedyAll(*cuda);
  int changed = 0;
  for (size_t r = 0; r < want_b.size(); ++r) changed += want_b[r].tokens != want_a[r].tokens;
  ASSERT_GT(changed, 0) << "checkpoints a and b generate alike: the update is not checked";
  EXPECT_GE(ExpectAgree(want_b, got_b, "model b after the update"), 4 * kNewTokens * 3 / 4);
  for (const GenerateResult& g : got_b) EXPECT_EQ(g.weight_version, "v2");
  EXPECT_EQ(cuda->process().Terminate().value_or(-1), 0);
  EXPECT_EQ(cpu_b->process().Terminate().value_or(-1), 0);
}

}  // namespace
}  // namespace colo::test_util
