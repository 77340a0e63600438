// Tensor-parallel colo-engine processes (--tp_size: rank 0 starts the other
// ranks) against an unsharded one: greedy tokens agree (the row-parallel
// all-reduce sums in another order than one rank's GEMM, so logprobs differ
// in the last bits and a near-tie may flip: tests/util/greedy_agreement.h);
// a TP engine is itself batch invariant (its all-reduce adds in rank order),
// so a request alone gives exactly its tokens and logprobs from a batch;
// GetWeightChecksums agrees with the unsharded engine; each rank holds its
// share of the weights (tag bytes and RSS); SIGTERM on rank 0 stops every rank.
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/engine_fixture.h"
#include "tests/tp/tp_fixture.h"
#include "tests/util/greedy_agreement.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

constexpr int kVocab = 2048;
constexpr int kMaxNew = 24;

engine::TinyModelOptions Model() {
  engine::TinyModelOptions m;
  m.arch = "qwen3";
  m.layers = 3;
  m.hidden = 128;
  m.heads = 8;
  m.kv_heads = 2;  // replicated on 4 ranks
  m.vocab = kVocab;
  m.max_position = 512;
  m.seed = 13;
  return m;
}

std::vector<std::vector<int32_t>> Prompts(int n) {
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < n; ++i) prompts.push_back(Prompt(100 + i, 5 + 7 * i, kVocab));
  return prompts;
}

int64_t TagBytes(const colo::v1::MemoryInfo& m, const std::string& tag) {
  for (const auto& t : m.tags()) {
    if (t.tag() == tag) return t.resident_bytes();
  }
  return 0;
}

// Expects `got` (a TP engine's) to agree with `want` (TP=1) request by
// request; returns the fraction of positions that matched.
double ExpectAgreement(const std::vector<GenerateResult>& want,
                       const std::vector<GenerateResult>& got, const std::string& what) {
  int matched = 0, total = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TRUE(want[i].status.ok()) << want[i].status.error_message();
    EXPECT_TRUE(got[i].status.ok()) << got[i].status.error_message();
    matched += ExpectAgreeUpToNearTie(want[i].tokens, want[i].logprobs, got[i].tokens,
                                      got[i].logprobs, absl::StrCat(what, " request ", i));
    total += static_cast<int>(want[i].tokens.size());
  }
  return total == 0 ? 0.0 : static_cast<double>(matched) / total;
}

TEST(TpGenerateTest, Tp2AgreesWithTp1IsBatchInvariantAndChecksumsMatch) {
  ASSERT_OK_AND_ASSIGN(std::string dir, MakeTinyModel("tp_generate", Model()));
  ASSERT_OK_AND_ASSIGN(auto tp1, TestEngine::Start(dir, TpFlags(1, {"--kv_cache_bytes=8000000"})));
  ASSERT_OK_AND_ASSIGN(auto tp2, TestEngine::Start(dir, TpFlags(2, {"--kv_cache_bytes=8000000"})));
  const std::vector<std::vector<int32_t>> prompts = Prompts(6);
  const std::vector<GenerateResult> want = GreedyTogether(*tp1, prompts, kMaxNew);
  const std::vector<GenerateResult> got = GreedyTogether(*tp2, prompts, kMaxNew);
  EXPECT_GE(ExpectAgreement(want, got, "tp2"), 0.9);

  // Alone, every request gives the bits it gave in the batch.
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerateResult alone = tp2->Greedy(prompts[i], kMaxNew);
    ASSERT_TRUE(alone.status.ok()) << alone.status.error_message();
    EXPECT_EQ(alone.tokens, got[i].tokens) << "request " << i;
    EXPECT_EQ(alone.logprobs, got[i].logprobs) << "request " << i;
  }

  ASSERT_OK_AND_ASSIGN(auto info, tp2->Info());
  EXPECT_EQ(info.state(), "serving");
  EXPECT_EQ(info.tp_size(), 2);
  ASSERT_EQ(info.ranks_size(), 2);
  EXPECT_GT(info.tp_stats().steps(), 0);
  EXPECT_GT(info.tp_stats().collective_bytes(), 0);
  ASSERT_OK_AND_ASSIGN(auto info1, tp1->Info());
  EXPECT_EQ(info1.tp_size(), 1);
  EXPECT_EQ(info1.ranks_size(), 0);

  // Checksums of the full tensors, combined from the ranks' shards.
  ASSERT_OK_AND_ASSIGN(auto sums1, tp1->Checksums());
  ASSERT_OK_AND_ASSIGN(auto sums2, tp2->Checksums());
  ASSERT_EQ(sums2.checksums_size(), sums1.checksums_size());
  for (int i = 0; i < sums1.checksums_size(); ++i) {
    EXPECT_EQ(sums2.checksums(i).name(), sums1.checksums(i).name());
    EXPECT_EQ(sums2.checksums(i).shape().SerializeAsString(),
              sums1.checksums(i).shape().SerializeAsString());
    EXPECT_EQ(sums2.checksums(i).crc32c(), sums1.checksums(i).crc32c())
        << sums1.checksums(i).name();
  }

  // SIGTERM on rank 0 stops every rank.
  ASSERT_OK_AND_ASSIGN(int64_t rank1, RankPid(*tp2, 1));
  EXPECT_THAT(tp2->process().Terminate(), IsOkAndHolds(0));
  EXPECT_TRUE(ProcessGone(rank1, absl::Seconds(30))) << "rank 1 (pid " << rank1 << ") survived";
  EXPECT_THAT(tp1->process().Terminate(), IsOkAndHolds(0));
}

TEST(TpGenerateTest, Tp4ReplicatesKvHeadsAndAgreesWithTp1) {
  ASSERT_OK_AND_ASSIGN(std::string dir, MakeTinyModel("tp_generate", Model()));
  ASSERT_OK_AND_ASSIGN(auto tp1, TestEngine::Start(dir, TpFlags(1, {"--kv_cache_bytes=8000000"})));
  ASSERT_OK_AND_ASSIGN(auto tp4, TestEngine::Start(dir, TpFlags(4, {"--kv_cache_bytes=8000000"})));
  const std::vector<std::vector<int32_t>> prompts = Prompts(3);
  EXPECT_GE(ExpectAgreement(GreedyTogether(*tp1, prompts, kMaxNew),
                            GreedyTogether(*tp4, prompts, kMaxNew), "tp4"),
            0.9);
  ASSERT_OK_AND_ASSIGN(auto info, tp4->Info());
  ASSERT_EQ(info.ranks_size(), 4);
  for (const auto& r : info.ranks()) EXPECT_TRUE(r.error().empty()) << r.error();
}

// MoE models shard their experts on the intermediate size (every rank runs
// its slice of every expert; routing is replicated): qwen3_moe with a dense
// layer, and gpt-oss (MXFP4 experts, attention sinks, sliding + full layers).
TEST(TpGenerateTest, Tp2MoeModelsAgreeWithTp1) {
  for (const std::string arch : {"qwen3_moe", "gpt_oss"}) {
    SCOPED_TRACE(arch);
    engine::TinyModelOptions m;
    m.arch = arch;
    m.layers = 3;
    m.hidden = 64;
    m.heads = 4;
    m.kv_heads = 2;
    m.vocab = kVocab;
    m.experts = 6;
    m.experts_per_token = 2;
    m.moe_intermediate = 64;
    m.max_position = 512;
    m.seed = 19;
    if (arch == "qwen3_moe") m.mlp_only_layers = {1};
    if (arch == "gpt_oss") {
      m.sliding_window = 8;
      m.mxfp4 = true;
    }
    ASSERT_OK_AND_ASSIGN(std::string dir, MakeTinyModel("tp_" + arch, m));
    ASSERT_OK_AND_ASSIGN(auto tp1, TestEngine::Start(dir, TpFlags(1, {"--kv_cache_bytes=8000000"})));
    ASSERT_OK_AND_ASSIGN(auto tp2, TestEngine::Start(dir, TpFlags(2, {"--kv_cache_bytes=8000000"})));
    const std::vector<std::vector<int32_t>> prompts = Prompts(3);
    EXPECT_GE(ExpectAgreement(GreedyTogether(*tp1, prompts, kMaxNew),
                              GreedyTogether(*tp2, prompts, kMaxNew), "tp2 " + arch),
              0.9);
    ASSERT_OK_AND_ASSIGN(auto sums1, tp1->Checksums());
    ASSERT_OK_AND_ASSIGN(auto sums2, tp2->Checksums());
    ASSERT_EQ(sums2.checksums_size(), sums1.checksums_size());
    for (int i = 0; i < sums1.checksums_size(); ++i) {
      EXPECT_EQ(sums2.checksums(i).crc32c(), sums1.checksums(i).crc32c())
          << sums1.checksums(i).name();
    }
    EXPECT_THAT(tp2->process().Terminate(), IsOkAndHolds(0));
  }
}

// Each rank's process holds about 1/N of the weights: its weights tag is
// half of the unsharded engine's, and releasing it lowers that rank's RSS
// by as much.
TEST(TpGenerateTest, EachRankHoldsItsShareOfTheWeights) {
  engine::TinyModelOptions m = Model();
  m.vocab = 16384;  // 2 x 8 MiB of embedding and LM head dominate
  m.hidden = 128;
  ASSERT_OK_AND_ASSIGN(std::string dir, MakeTinyModel("tp_rss", m));
  int64_t unsharded = 0;
  {
    ASSERT_OK_AND_ASSIGN(auto tp1, TestEngine::Start(dir, TpFlags(1, {"--kv_cache_bytes=4000000"})));
    ASSERT_OK_AND_ASSIGN(auto memory, tp1->Memory());
    unsharded = TagBytes(memory.memory(), "weights");
    EXPECT_THAT(tp1->process().Terminate(), IsOkAndHolds(0));
  }
  ASSERT_GT(unsharded, 16 << 20);
  ASSERT_OK_AND_ASSIGN(auto tp2, TestEngine::Start(dir, TpFlags(2, {"--kv_cache_bytes=4000000"})));
  ASSERT_TRUE(tp2->Greedy(Prompt(1, 9, m.vocab), 4).status.ok());
  ASSERT_OK_AND_ASSIGN(auto memory, tp2->Memory());
  ASSERT_EQ(memory.memory().ranks_size(), 2);
  for (const auto& rank : memory.memory().ranks()) {
    const int64_t held = TagBytes(rank.memory(), "weights");
    // (Allocations are rounded to 2 MiB pages.)
    EXPECT_NEAR(static_cast<double>(held), unsharded / 2.0, unsharded * 0.05 + (2 << 20))
        << "rank " << rank.rank();
  }
  EXPECT_EQ(TagBytes(memory.memory(), "weights"),
            TagBytes(memory.memory().ranks(0).memory(), "weights") +
                TagBytes(memory.memory().ranks(1).memory(), "weights"));
  ASSERT_OK(tp2->Pause("abort").status());
  ASSERT_OK_AND_ASSIGN(auto released, tp2->Release({"weights"}));
  ASSERT_EQ(released.ranks_size(), 2);
  for (const auto& rank : released.ranks()) {
    const int64_t drop = rank.process_resident_bytes_before() - rank.process_resident_bytes_after();
    ASSERT_EQ(rank.tags_size(), 1);
    EXPECT_GE(drop, rank.tags(0).bytes() * 95 / 100) << "rank " << rank.rank();
    EXPECT_NEAR(static_cast<double>(drop), unsharded / 2.0, unsharded * 0.1 + (2 << 20))
        << "rank " << rank.rank();
  }
  EXPECT_THAT(tp2->process().Terminate(), IsOkAndHolds(0));
}

}  // namespace
}  // namespace colo::test_util
