// The Scheduler over a ModelRunner that is not the CPU one, on the CPU
// backend: a runner reporting another device gets each request's page list
// (the live part of its request-table row, as for a GPU whose table is device
// memory) that matches the request table, greedy outputs equal the CPU
// runner's, and weight commits call WeightsCommitted (a failure there leaves
// the engine needing weights).
#include <memory>
#include <string>
#include <vector>

#include "engine/model/cpu_model_runner.h"
#include "engine/model/model_runner.h"
#include "engine/model/test_env.h"
#include "engine/model/tiny_model.h"
#include "engine/scheduler/read_to_end.h"
#include "engine/scheduler/scheduler.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo::engine {
namespace {

constexpr int kVocab = 64;
constexpr int kPageSize = 4;
constexpr int kRowLength = 128;

// Runs the CPU model but claims another device, and checks the page lists it
// is handed against the (host) request table.
class OtherDeviceRunner : public ModelRunner {
 public:
  OtherDeviceRunner(TransformerModel* model, const kvcache::KvCacheManager* kv)
      : model_(model), kv_(kv) {}
  const ModelConfig& config() const override { return model_->config(); }
  absl::string_view device_kind() const override { return "other"; }
  absl::StatusOr<ForwardResult> Forward(absl::Span<const ForwardRequest> batch,
                                        const KvCacheView& kv,
                                        const ForwardOptions& options) override {
    const int32_t* table = kv_->req_to_token();
    EXPECT_EQ(kv.page_size, kPageSize);
    std::vector<std::vector<int32_t>> slots(batch.size());
    std::vector<ForwardRequest> cpu_batch(batch.begin(), batch.end());
    for (size_t i = 0; i < batch.size(); ++i) {
      const ForwardRequest& r = batch[i];
      const int64_t n = r.cached_len + static_cast<int64_t>(r.new_tokens.size());
      EXPECT_TRUE(r.slots.empty()) << "a non-CPU runner gets page lists, not slots";
      EXPECT_EQ(static_cast<int64_t>(r.pages.size()), (n + kPageSize - 1) / kPageSize);
      for (int64_t p = 0; p < n; ++p) {
        slots[i].push_back(r.pages[p / kPageSize] * kPageSize + static_cast<int32_t>(p % kPageSize));
      }
      // Find the row holding these slots (the table is host memory here).
      bool found = false;
      for (int32_t row = 1; row <= kv_->options().max_requests && !found; ++row) {
        found = std::equal(slots[i].begin(), slots[i].end(), table + int64_t{row} * kRowLength);
      }
      EXPECT_TRUE(found) << "pages of a request (" << n << " positions) match no table row";
      ++requests_checked_;
      cpu_batch[i].slots = slots[i];
      cpu_batch[i].pages = {};
    }
    return model_->Forward(cpu_batch, kv, options);
  }
  absl::Status WithHostWeights(
      const std::function<absl::Status(const ModelWeights&)>& fn) override {
    return fn(model_->weights());
  }
  absl::Status PrepareWeightsCommit() override {
    ++prepares_;
    return absl::OkStatus();
  }
  void AbortWeightsCommit() override { ++aborts_; }
  absl::Status WeightsCommitted() override {
    ++commits_;
    return commit_error_;
  }
  void WeightsDiscarded() override { model_->weights().MarkAllStale(); }
  int64_t NumStaleWeights() const override { return model_->weights().num_stale(); }

  int requests_checked_ = 0;
  int prepares_ = 0;
  int aborts_ = 0;
  int commits_ = 0;
  absl::Status commit_error_;

 private:
  TransformerModel* const model_;
  const kvcache::KvCacheManager* const kv_;
};

class SchedulerRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TinyModelOptions m;
    m.hidden = 32;
    m.vocab = kVocab;
    m.max_position = 512;
    m.seed = 4;
    const std::string dir = TestDir("runner_model");
    ASSERT_OK(WriteTinyModel(m, dir));
    threads_ = std::make_unique<kernels::ThreadPool>(1);
    TransformerModel::Options mo;
    mo.model_dir = dir;
    mo.weights_pool = env_.pool.get();
    mo.allocator = env_.allocator.get();
    mo.threads = threads_.get();
    model_ = std::move(TransformerModel::Load(mo)).value();
  }

  std::unique_ptr<kvcache::KvCacheManager> MakeKv() {
    kvcache::KvCacheManager::Options ko;
    ko.page_size = kPageSize;
    ko.num_layers = model_->config().num_layers;
    ko.layer_is_sliding.assign(ko.num_layers, false);
    ko.kv_heads = model_->config().num_kv_heads;
    ko.head_dim = model_->config().head_dim;
    ko.full_capacity_tokens = 2048;
    ko.max_requests = 16;
    ko.max_context_tokens = kRowLength;
    return std::move(kvcache::KvCacheManager::Create(ko, env_.pool.get())).value();
  }

  static SchedulerOptions Options() {
    SchedulerOptions so;
    so.max_running_requests = 8;
    so.chunked_prefill_tokens = 8;  // several chunks per prompt
    so.max_batch_tokens = 32;
    return so;
  }

  static std::vector<std::vector<int32_t>> Run(Scheduler& s) {
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (int i = 0; i < 6; ++i) {
      GenerateSpec spec;
      // Prompts 0..2 and 3..5 share a prefix (radix cache pages in the rows).
      for (int t = 0; t < 10 + 3 * (i % 3); ++t) spec.input_ids.push_back((t * 7 + i / 3) % kVocab);
      spec.max_new_tokens = 12;
      spec.ignore_eos = true;
      streams.push_back(std::move(s.Submit(spec)).value());
    }
    std::vector<std::vector<int32_t>> out;
    for (auto& stream : streams) {
      StreamOutput o = ReadToEnd(*stream, absl::Now() + absl::Seconds(60));
      EXPECT_OK(o.error);
      out.push_back(o.tokens);
    }
    return out;
  }

  ModelTestEnv env_;
  std::unique_ptr<kernels::ThreadPool> threads_;
  std::unique_ptr<TransformerModel> model_;
};

TEST_F(SchedulerRunnerTest, NonCpuRunnerGetsPageListsAndSameTokens) {
  std::vector<std::vector<int32_t>> want;
  {
    auto kv = MakeKv();
    CpuModelRunner cpu(model_.get());
    Scheduler s(Options(), &cpu, kv.get(), env_.pool.get(), env_.allocator.get());
    s.Start();
    want = Run(s);
    s.Stop();
  }
  auto kv = MakeKv();
  OtherDeviceRunner other(model_.get(), kv.get());
  Scheduler s(Options(), &other, kv.get(), env_.pool.get(), env_.allocator.get());
  s.Start();
  const std::vector<std::vector<int32_t>> got = Run(s);
  s.Stop();
  EXPECT_EQ(got, want);
  for (const auto& t : want) EXPECT_EQ(t.size(), 12u);
  EXPECT_GT(other.requests_checked_, 6 * 12);
}

TEST_F(SchedulerRunnerTest, CommitCallsWeightsCommittedAndAFailureNeedsWeights) {
  auto kv = MakeKv();
  OtherDeviceRunner other(model_.get(), kv.get());
  Scheduler s(Options(), &other, kv.get(), env_.pool.get(), env_.allocator.get());
  s.Start();
  int applied = 0;
  auto apply = [&applied] {
    ++applied;
    return absl::OkStatus();
  };
  ASSERT_OK(s.CommitWeights(apply, "v2", false));
  EXPECT_EQ(applied, 1);
  EXPECT_EQ(other.commits_, 1);
  EXPECT_EQ(s.Snapshot().weight_version, "v2");

  other.commit_error_ = absl::InternalError("upload failed");
  EXPECT_THAT(s.CommitWeights(apply, "v3", false), StatusIs(absl::StatusCode::kInternal));
  EXPECT_EQ(other.commits_, 2);
  EXPECT_TRUE(s.Snapshot().state.needs_weights);
  EXPECT_EQ(s.Snapshot().weight_version, "v2");
  GenerateSpec spec;
  spec.input_ids = {1, 2, 3};
  spec.max_new_tokens = 2;
  spec.fail_if_unavailable = true;
  EXPECT_THAT(s.Submit(spec).status(), StatusIs(absl::StatusCode::kUnavailable));

  other.commit_error_ = absl::OkStatus();
  ASSERT_OK(s.CommitWeights(apply, "v4", false));
  EXPECT_FALSE(s.Snapshot().state.needs_weights);
  EXPECT_EQ(s.Snapshot().weight_version, "v4");
  EXPECT_EQ(other.prepares_, 3);
  EXPECT_EQ(other.aborts_, 0);

  // An update that fails while writing: the runner is told (it releases
  // what it prepared), WeightsCommitted is not called, the old weights serve.
  EXPECT_THAT(s.CommitWeights([] { return absl::InvalidArgumentError("bad tensor"); }, "v5",
                              false),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(other.prepares_, 4);
  EXPECT_EQ(other.aborts_, 1);
  EXPECT_EQ(other.commits_, 3);
  EXPECT_EQ(s.Snapshot().weight_version, "v4");
  EXPECT_FALSE(s.Snapshot().state.needs_weights);
  s.Stop();
}

}  // namespace
}  // namespace colo::engine
