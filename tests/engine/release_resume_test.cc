// ReleaseTags / ResumeTags on a real engine process: release lowers the
// process RSS by the bytes the engine reported; weights come back with a
// host backup, or after a weight update (the engine refuses to generate in
// between); releasing kv_cache frees the SWA pool too; ContinueGeneration's
// torch_empty_cache keeps the caching allocator flat across 200 in-place
// pause / weight-update / continue cycles, and without it reserved bytes grow.
#include <cstring>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/model/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/engine_fixture.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

using ::testing::HasSubstr;

engine::TinyModelOptions MediumModel() {
  engine::TinyModelOptions m;
  m.layers = 4;
  m.hidden = 256;
  m.heads = 8;
  m.kv_heads = 4;
  m.vocab = 4096;
  m.max_position = 1024;
  m.seed = 21;
  return m;
}

int64_t SumBytes(const google::protobuf::RepeatedPtrField<colo::v1::TagBytes>& tags) {
  int64_t sum = 0;
  for (const auto& t : tags) sum += t.bytes();
  return sum;
}

const colo::v1::TagMemory* FindTag(const colo::v1::GetMemoryInfoResponse& m, const std::string& tag) {
  for (const auto& t : m.memory().tags()) {
    if (t.tag() == tag) return &t;
  }
  return nullptr;
}

// Streams the whole checkpoint in `dir` as WeightChunks of `chunk` bytes,
// converting the tensors named in `as_f16` to float16 on the wire.
absl::StatusOr<colo::v1::UpdateWeightsResponse> UpdateFromTensors(
    TestEngine& engine, const std::string& dir, const std::string& version,
    const std::function<bool(const std::string&)>& include = nullptr,
    const std::function<bool(const std::string&)>& as_f16 = nullptr, size_t chunk = 100000) {
  absl::StatusOr<std::unique_ptr<engine::SafetensorsCheckpoint>> ckpt =
      engine::SafetensorsCheckpoint::Open(dir);
  if (!ckpt.ok()) return ckpt.status();
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  colo::v1::UpdateWeightsResponse response;
  std::unique_ptr<grpc::ClientWriter<colo::v1::WeightChunk>> writer =
      engine.stub().UpdateWeightsFromTensor(&context, &response);
  for (const auto& [name, view] : (*ckpt)->tensors()) {
    if (include && !include(name)) continue;
    std::string bytes(reinterpret_cast<const char*>(view->data), view->bytes);
    std::string dtype = "float32";
    if (as_f16 && as_f16(name)) {
      const float* f = reinterpret_cast<const float*>(view->data);
      std::string half(view->NumElements() * 2, '\0');
      for (int64_t i = 0; i < view->NumElements(); ++i) {
        const uint16_t h = engine::FloatToFp16(f[i]);
        std::memcpy(&half[2 * i], &h, 2);
      }
      bytes = std::move(half);
      dtype = "float16";
    }
    for (size_t off = 0; off < bytes.size(); off += chunk) {
      colo::v1::WeightChunk c;
      colo::v1::TensorChunk* t = c.mutable_tensor();
      t->set_name(name);
      t->set_dtype(dtype);
      for (int64_t d : view->shape) t->mutable_shape()->add_dims(d);
      t->set_offset_bytes(static_cast<int64_t>(off));
      t->set_data(bytes.substr(off, chunk));
      if (!writer->Write(c)) break;
    }
  }
  colo::v1::WeightChunk commit;
  commit.mutable_commit()->set_weight_version(version);
  writer->Write(commit);
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  if (!s.ok()) return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  return response;
}

TEST(ReleaseResumeTest, ReleaseLowersRssAndWeightsNeedAnUpdateWithoutBackup) {
  ASSERT_OK_AND_ASSIGN(std::string dir, MakeTinyModel("release_medium", MediumModel()));
  ASSERT_OK_AND_ASSIGN(auto engine,
                       TestEngine::Start(dir, {"--kv_cache_bytes=33554432", "--page_size=16"}));
  const std::vector<int32_t> prompt = Prompt(1, 30, 4096);
  GenerateResult before = engine->Greedy(prompt, 16);
  ASSERT_TRUE(before.status.ok());
  ASSERT_OK(engine->Pause("retract").status());
  ASSERT_OK_AND_ASSIGN(auto released, engine->Release({}));
  const int64_t reported = SumBytes(released.tags());
  ASSERT_GT(reported, 40 << 20);
  const int64_t drop =
      released.process_resident_bytes_before() - released.process_resident_bytes_after();
  EXPECT_GE(drop, reported * 95 / 100)
      << "RSS " << released.process_resident_bytes_before() << " -> "
      << released.process_resident_bytes_after() << " for " << reported << " released bytes";
  ASSERT_OK_AND_ASSIGN(auto memory, engine->Memory());
  for (const char* tag : {"weights", "kv_cache"}) {
    const colo::v1::TagMemory* t = FindTag(memory, tag);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->state(), colo::v1::TAG_STATE_RELEASED) << tag;
    EXPECT_EQ(t->resident_bytes(), 0) << tag;
    EXPECT_GT(t->reserved_bytes(), 0) << tag;  // the virtual range is kept
  }
  // Repeating the release is a reported no-op.
  ASSERT_OK_AND_ASSIGN(auto again, engine->Release({"weights"}));
  ASSERT_EQ(again.tags_size(), 1);
  EXPECT_TRUE(again.tags(0).no_op());
  // Generate while released: queued, or UNAVAILABLE when it must not wait.
  colo::v1::GenerateRequest fast = GreedyRequest(prompt, 4);
  fast.set_fail_if_unavailable(true);
  GenerateResult refused = engine->Generate(fast);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(refused.status.error_message(), HasSubstr("released"));

  ASSERT_OK_AND_ASSIGN(auto resumed, engine->Resume({}));
  EXPECT_GE(SumBytes(resumed.tags()), reported);
  ASSERT_OK_AND_ASSIGN(auto info, engine->Info());
  EXPECT_EQ(info.state(), "needs_weights");
  EXPECT_THAT(engine->Continue(), StatusIs(absl::StatusCode::kFailedPrecondition));
  // A weight update (here: the same checkpoint, new version) makes it serve.
  grpc::ClientContext context;
  colo::v1::UpdateWeightsFromDiskRequest disk;
  disk.set_model_path(dir);
  disk.set_weight_version("v2");
  colo::v1::UpdateWeightsResponse update;
  ASSERT_TRUE(engine->stub().UpdateWeightsFromDisk(&context, disk, &update).ok());
  ASSERT_OK(engine->Continue().status());
  GenerateResult after = engine->Greedy(prompt, 16);
  ASSERT_TRUE(after.status.ok());
  EXPECT_EQ(after.tokens, before.tokens);
  EXPECT_EQ(after.weight_version, "v2");
  EXPECT_EQ(engine->process().Terminate().value_or(-1), 0);
}

TEST(ReleaseResumeTest, HostBackupRestoresWeightsBitExact) {
  ASSERT_OK_AND_ASSIGN(std::string dir, MakeTinyModel("release_medium", MediumModel()));
  ASSERT_OK_AND_ASSIGN(auto engine,
                       TestEngine::Start(dir, {"--kv_cache_bytes=16777216", "--page_size=16",
                                               "--weights_host_backup"}));
  std::vector<std::vector<int32_t>> prompts = {Prompt(2, 12, 4096), Prompt(3, 50, 4096)};
  std::vector<GenerateResult> before;
  for (const auto& p : prompts) before.push_back(engine->Greedy(p, 20));
  for (int cycle = 0; cycle < 3; ++cycle) {
    ASSERT_OK(engine->Pause("abort").status());
    ASSERT_OK_AND_ASSIGN(auto released, engine->Release({"weights", "kv_cache"}));
    EXPECT_GT(released.tags(0).backup_bytes(), 0);
    ASSERT_OK(engine->Resume({"kv_cache"}).status());  // two-stage resume
    ASSERT_OK(engine->Resume({"weights"}).status());
    ASSERT_OK(engine->Continue().status());
    for (size_t i = 0; i < prompts.size(); ++i) {
      GenerateResult r = engine->Greedy(prompts[i], 20);
      ASSERT_TRUE(r.status.ok());
      EXPECT_EQ(r.tokens, before[i].tokens) << "cycle " << cycle;
      EXPECT_EQ(r.logprobs, before[i].logprobs) << "cycle " << cycle;
    }
  }
}

TEST(ReleaseResumeTest, ReleasingKvCacheFreesTheSlidingWindowPoolToo) {
  engine::TinyModelOptions m = MediumModel();
  m.layer_types = {engine::LayerType::kSlidingAttention, engine::LayerType::kFullAttention,
                   engine::LayerType::kSlidingAttention, engine::LayerType::kSlidingAttention};
  m.sliding_window = 16;
  ASSERT_OK_AND_ASSIGN(std::string dir, MakeTinyModel("release_swa", m));
  ASSERT_OK_AND_ASSIGN(auto engine, TestEngine::Start(dir, {"--kv_cache_bytes=33554432",
                                                           "--page_size=4"}));
  const std::vector<int32_t> prompt = Prompt(4, 40, 4096);
  ASSERT_OK_AND_ASSIGN(auto expected, OfflineGreedy(dir, {prompt}, 30));
  GenerateResult r = engine->Greedy(prompt, 30);
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.tokens, expected[0]);
  ASSERT_OK_AND_ASSIGN(auto memory, engine->Memory());
  int64_t full_bytes = 0, swa_bytes = 0;
  for (const auto& p : memory.memory().kv_pools()) {
    if (p.pool() == "full") full_bytes = p.bytes();
    if (p.pool() == "swa") swa_bytes = p.bytes();
  }
  ASSERT_GT(swa_bytes, 8 << 20) << "the SWA pool must be a real part of kv_cache";
  ASSERT_GT(full_bytes, 0);
  ASSERT_OK(engine->Pause("retract").status());
  ASSERT_OK_AND_ASSIGN(auto released, engine->Release({"kv_cache"}));
  ASSERT_EQ(released.tags_size(), 1);
  EXPECT_GE(released.tags(0).bytes(), full_bytes + swa_bytes);
  const int64_t drop =
      released.process_resident_bytes_before() - released.process_resident_bytes_after();
  EXPECT_GE(drop, (full_bytes + swa_bytes) * 95 / 100)
      << "RSS fell by " << drop << " bytes; full pool " << full_bytes << ", SWA pool "
      << swa_bytes;
  ASSERT_OK_AND_ASSIGN(auto after, engine->Memory());
  EXPECT_EQ(FindTag(after, "kv_cache")->resident_bytes(), 0);
  ASSERT_OK(engine->Resume({"kv_cache"}).status());
  ASSERT_OK(engine->Continue().status());
  GenerateResult again = engine->Greedy(prompt, 30);
  EXPECT_EQ(again.tokens, expected[0]);
  ASSERT_OK_AND_ASSIGN(auto info, engine->Info());
  EXPECT_EQ(info.kv_audit_violations(), 0) << info.last_kv_audit_error();
}

// The fragmentation scenario behind torch_empty_cache: every cycle pauses in
// place (KV kept, nothing flushed), runs a weight update whose transient
// shadow buffers vary in size (some tensors float32, some float16 on the
// wire), and continues.
void RunUpdateCycles(TestEngine& engine, const std::string& dir, bool empty_cache, int cycles,
                     std::vector<int64_t>* reserved_after) {
  for (int i = 0; i < cycles; ++i) {
    GenerateStream stream(engine.stub(), GreedyRequest(Prompt(i, 8, 4096), 4));
    ASSERT_OK(engine.Pause("in_place").status());
    auto include = [i](const std::string& name) {
      return name.find("embed") != std::string::npos || name.find("lm_head") != std::string::npos ||
             (i % 3 == 0 && name.find("mlp") != std::string::npos);
    };
    // Transients that get bigger over the first cycles, as post-update
    // processing of growing buffers does: both float16, then the embedding
    // float32, then both float32. Freed blocks are too small for the next
    // cycle's buffers, so a cache that is never emptied keeps them all.
    auto half = [i](const std::string& name) {
      const bool embed = name.find("embed") != std::string::npos;
      const bool lm_head = name.find("lm_head") != std::string::npos;
      if (i == 0) return embed || lm_head;
      if (i == 1) return lm_head;
      return false;
    };
    ASSERT_OK(UpdateFromTensors(engine, dir, absl::StrCat("c", i), include, half).status());
    ASSERT_OK_AND_ASSIGN(auto cont, engine.Continue(empty_cache));
    reserved_after->push_back(cont.reserved_bytes_after());
    ASSERT_TRUE(stream.Finish().status.ok());
  }
}

TEST(ReleaseResumeTest, EmptyCacheKeepsReservedFlatAcrossInPlaceUpdateCycles) {
  engine::TinyModelOptions m = MediumModel();
  m.vocab = 12288;  // 12 MiB embedding + 12 MiB lm_head: large-pool transients
  m.hidden = 256;
  m.layers = 2;
  ASSERT_OK_AND_ASSIGN(std::string dir, MakeTinyModel("empty_cache_model", m));
  ASSERT_OK_AND_ASSIGN(auto with, TestEngine::Start(dir, {"--kv_cache_bytes=8388608"}));
  std::vector<int64_t> flat;
  RunUpdateCycles(*with, dir, /*empty_cache=*/true, 200, &flat);
  ASSERT_EQ(flat.size(), 200u);
  const int64_t segment = 2 << 20;
  for (size_t i = 0; i < flat.size(); ++i) {
    EXPECT_LE(flat[i], flat[0] + segment) << "cycle " << i;
  }
  ASSERT_OK_AND_ASSIGN(auto without, TestEngine::Start(dir, {"--kv_cache_bytes=8388608"}));
  std::vector<int64_t> grow;
  RunUpdateCycles(*without, dir, /*empty_cache=*/false, 12, &grow);
  ASSERT_EQ(grow.size(), 12u);
  for (size_t i = 1; i < grow.size(); ++i) EXPECT_GE(grow[i], grow[i - 1]) << "cycle " << i;
  EXPECT_GT(grow.back(), grow.front()) << "reserved bytes should grow without empty_cache";
  EXPECT_GT(grow.back(), flat.back() + (20 << 20));
  std::cout << "reserved after continue: empty_cache=true flat at " << flat.back()
            << " bytes over 200 cycles; empty_cache=false " << grow.front() << " -> "
            << grow.back() << " bytes over 12 cycles\n";
}

}  // namespace
}  // namespace colo::test_util
