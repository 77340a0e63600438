// Small defects an adversarial run found on a real colo-engine process
// (issue 18), each checked over gRPC:
//  - UpdateWeightsFromDisk{model_path=""} is INVALID_ARGUMENT naming the
//    field (not NOT_FOUND for "/model.safetensors");
//  - a checkpoint tensor of an unsupported dtype is rejected naming the
//    file's dtype string ("F64"), not "unsupported dtype unsupported";
//  - GetServerInfo never says "serving" while a memory tag is released (it
//    says "released", or "paused" with the released tags in the reason), and
//    the "colo.generate" health service agrees with it;
//  - releasing kv_cache empties the caching allocator (reported like
//    ContinueGeneration's before/after), so its cached transients are not
//    kept through training.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/model/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/engine_fixture.h"
#include "tests/util/server_process.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

engine::TinyModelOptions Model() {
  engine::TinyModelOptions m;
  m.layers = 2;
  m.hidden = 128;
  m.heads = 4;
  m.kv_heads = 2;
  // A large vocabulary makes the lm_head's logits a large-pool transient of
  // the caching allocator.
  m.vocab = 8192;
  m.seed = 5;
  return m;
}

absl::Status ToStatus(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

absl::StatusOr<colo::v1::UpdateWeightsResponse> UpdateFromDisk(TestEngine& engine,
                                                               const std::string& path) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  colo::v1::UpdateWeightsFromDiskRequest request;
  request.set_model_path(path);
  request.set_weight_version("disk");
  colo::v1::UpdateWeightsResponse response;
  grpc::Status s = engine.stub().UpdateWeightsFromDisk(&context, request, &response);
  if (!s.ok()) return ToStatus(s);
  return response;
}

// A copy of the checkpoint in `dir` with tensor `f64_name` stored as F64
// (raw bytes of twice the size: the dtype is what matters).
absl::StatusOr<std::string> CheckpointWithF64(const std::string& dir, const std::string& f64_name) {
  absl::StatusOr<std::unique_ptr<engine::SafetensorsCheckpoint>> ckpt =
      engine::SafetensorsCheckpoint::Open(dir);
  if (!ckpt.ok()) return ckpt.status();
  engine::SafetensorsWriter writer;
  bool found = false;
  for (const auto& [name, view] : (*ckpt)->tensors()) {
    std::string bytes(reinterpret_cast<const char*>(view->data), view->bytes);
    std::string dtype = view->dtype_name;
    if (name == f64_name) {
      bytes += bytes;
      dtype = "F64";
      found = true;
    }
    if (absl::Status s = writer.AddRaw(name, dtype, view->shape, std::move(bytes)); !s.ok()) {
      return s;
    }
  }
  if (!found) return absl::NotFoundError(absl::StrCat("no tensor ", f64_name));
  const std::string out = MakeTempDir("f64_ckpt");
  if (absl::Status s = writer.Write(out + "/model.safetensors"); !s.ok()) return s;
  return out;
}

TEST(EngineReliabilityTest, EmptyModelPathIsInvalidArgumentNamingTheField) {
  ASSERT_OK_AND_ASSIGN(const std::string dir, MakeTinyModel("reliability", Model()));
  ASSERT_OK_AND_ASSIGN(auto engine, TestEngine::Start(dir));
  EXPECT_THAT(UpdateFromDisk(*engine, ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("model_path"), Not(HasSubstr("/model.safetensors")))));
  // The engine still serves its weights.
  ASSERT_OK_AND_ASSIGN(auto info, engine->Info());
  EXPECT_EQ(info.state(), "serving");
  EXPECT_EQ(info.weight_version(), "0");
}

TEST(EngineReliabilityTest, UnsupportedCheckpointDtypeIsNamed) {
  ASSERT_OK_AND_ASSIGN(const std::string dir, MakeTinyModel("reliability", Model()));
  ASSERT_OK_AND_ASSIGN(const std::string bad, CheckpointWithF64(dir, "model.norm.weight"));
  ASSERT_OK_AND_ASSIGN(auto engine, TestEngine::Start(dir));
  absl::StatusOr<colo::v1::UpdateWeightsResponse> update = UpdateFromDisk(*engine, bad);
  EXPECT_THAT(update, StatusIs(absl::StatusCode::kInvalidArgument,
                               AllOf(HasSubstr("model.norm.weight"), HasSubstr("F64"),
                                     Not(HasSubstr("dtype unsupported")))));
  ASSERT_OK_AND_ASSIGN(auto info, engine->Info());
  EXPECT_EQ(info.weight_version(), "0") << "a rejected update must not change the weights";
}

TEST(EngineReliabilityTest, ServerInfoAndHealthSayReleasedWhileATagIsReleased) {
  ASSERT_OK_AND_ASSIGN(const std::string dir, MakeTinyModel("reliability", Model()));
  ASSERT_OK_AND_ASSIGN(auto engine, TestEngine::Start(dir));
  ASSERT_OK_AND_ASSIGN(auto serving, engine->Info());
  EXPECT_EQ(serving.state(), "serving");
  EXPECT_THAT(CheckHealth(engine->address(), "colo.generate"), IsOkAndHolds("SERVING"));

  // Idle engine, not paused: releasing kv_cache is allowed; it cannot
  // generate until the tag is back.
  ASSERT_OK(engine->Release({"kv_cache"}).status());
  ASSERT_OK_AND_ASSIGN(auto released, engine->Info());
  EXPECT_EQ(released.state(), "released");
  EXPECT_THAT(released.reason(), HasSubstr("kv_cache"));
  EXPECT_THAT(CheckHealth(engine->address(), "colo.generate"), IsOkAndHolds("NOT_SERVING"));

  // Paused with tags released: "paused", and the reason still names them.
  ASSERT_OK(engine->Pause("retract").status());
  ASSERT_OK_AND_ASSIGN(auto paused, engine->Info());
  EXPECT_EQ(paused.state(), "paused");
  EXPECT_THAT(paused.reason(), HasSubstr("kv_cache"));
  EXPECT_THAT(CheckHealth(engine->address(), "colo.generate"), IsOkAndHolds("NOT_SERVING"));

  ASSERT_OK(engine->Resume({"kv_cache"}).status());
  ASSERT_OK(engine->Continue().status());
  ASSERT_OK_AND_ASSIGN(auto back, engine->Info());
  EXPECT_EQ(back.state(), "serving");
  EXPECT_EQ(back.reason(), "");
  EXPECT_THAT(CheckHealth(engine->address(), "colo.generate"), IsOkAndHolds("SERVING"));
  // Generation works again.
  GenerateResult r = engine->Greedy(Prompt(1, 8, Model().vocab), 4);
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.tokens.size(), 4u);
}

TEST(EngineReliabilityTest, ReleasingKvCacheEmptiesTheCachingAllocator) {
  ASSERT_OK_AND_ASSIGN(const std::string dir, MakeTinyModel("reliability", Model()));
  ASSERT_OK_AND_ASSIGN(auto engine, TestEngine::Start(dir));
  // A batch of prompts leaves transient segments cached in the allocator.
  std::vector<std::unique_ptr<GenerateStream>> streams;
  for (int i = 0; i < 8; ++i) {
    streams.push_back(std::make_unique<GenerateStream>(
        engine->stub(), GreedyRequest(Prompt(10 + i, 96, Model().vocab), 8)));
  }
  for (auto& s : streams) ASSERT_TRUE(s->Finish().status.ok());
  ASSERT_OK_AND_ASSIGN(auto before, engine->Memory());
  const int64_t reserved = before.memory().caching_allocator().reserved_bytes();
  ASSERT_GT(reserved, 0) << "generation should leave cached segments";

  ASSERT_OK(engine->Pause("retract").status());
  // Releasing only weights does not touch the allocator.
  ASSERT_OK_AND_ASSIGN(auto weights, engine->Release({"weights"}));
  EXPECT_EQ(weights.caching_allocator_reserved_bytes_before(), 0);
  ASSERT_OK_AND_ASSIGN(auto kv, engine->Release({"kv_cache", "cuda_graph"}));
  EXPECT_EQ(kv.caching_allocator_reserved_bytes_before(), reserved);
  EXPECT_EQ(kv.caching_allocator_reserved_bytes_after(), 0);
  ASSERT_OK_AND_ASSIGN(auto after, engine->Memory());
  EXPECT_EQ(after.memory().caching_allocator().reserved_bytes(), 0)
      << "the caching allocator must not keep segments through training";
  std::printf("caching allocator reserved %lld -> %lld bytes on release of kv_cache\n",
              static_cast<long long>(kv.caching_allocator_reserved_bytes_before()),
              static_cast<long long>(kv.caching_allocator_reserved_bytes_after()));
}

}  // namespace
}  // namespace colo::test_util
