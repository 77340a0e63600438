#include "engine/tokenizer/incremental_decoder.h"

#include <random>
#include <string>
#include <vector>

#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/testing/tiny_hf_tokenizer.h"
#include "engine/tokenizer/tiny_tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace tokenizer {
namespace {

TEST(IncrementalDecoderTest, NeverEmitsHalfACharacter) {
  ASSERT_OK_AND_ASSIGN(auto t, TinyHfTokenizer(300));
  // "é" as two byte tokens, then the euro sign as three.
  const std::vector<int32_t> ids = {'a', 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 'b'};
  IncrementalDecoder d(t.get());
  std::vector<std::string> deltas;
  for (int32_t id : ids) {
    ASSERT_OK_AND_ASSIGN(std::string delta, d.Append(id));
    EXPECT_TRUE(IsValidUtf8(delta)) << delta;
    deltas.push_back(delta);
  }
  EXPECT_THAT(deltas, ::testing::ElementsAre("a", "", "\xC3\xA9", "", "", "\xE2\x82\xAC", "b"));
  EXPECT_THAT(d.Finish(), IsOkAndHolds(""));
  EXPECT_EQ(d.text(),
            "a\xC3\xA9\xE2\x82\xAC"
            "b");
  EXPECT_EQ(d.num_ids(), ids.size());
}

TEST(IncrementalDecoderTest, FinishFlushesAnIncompleteCharacterAsReplacement) {
  ASSERT_OK_AND_ASSIGN(auto t, TinyHfTokenizer(300));
  IncrementalDecoder d(t.get());
  EXPECT_THAT(d.Append('x'), IsOkAndHolds("x"));
  EXPECT_THAT(d.Append({0xE2, 0x82}), IsOkAndHolds(""));
  EXPECT_THAT(d.Finish(), IsOkAndHolds("\xEF\xBF\xBD"));
  EXPECT_THAT(t->Decode({'x', 0xE2, 0x82}), IsOkAndHolds(d.text()));
}

TEST(IncrementalDecoderTest, RandomStreamsEqualFullDecode) {
  ASSERT_OK_AND_ASSIGN(auto t, TinyHfTokenizer(4096));
  std::mt19937 rng(12345);  // fixed seed
  for (int round = 0; round < 300; ++round) {
    std::vector<int32_t> ids(rng() % 40);
    for (int32_t& id : ids) id = static_cast<int32_t>(rng() % 4096);
    for (bool skip : {false, true}) {
      IncrementalDecoder d(t.get(), {.skip_special_tokens = skip});
      std::string streamed;
      size_t k = 0;
      while (k < ids.size()) {  // one to three ids at a time
        const size_t n = std::min<size_t>(1 + rng() % 3, ids.size() - k);
        ASSERT_OK_AND_ASSIGN(std::string delta, d.Append(absl::MakeConstSpan(ids).subspan(k, n)));
        streamed += delta;
        k += n;
        EXPECT_EQ(streamed, d.text());
      }
      ASSERT_OK_AND_ASSIGN(std::string last, d.Finish());
      streamed += last;
      ASSERT_OK_AND_ASSIGN(std::string full, t->Decode(ids, {.skip_special_tokens = skip}));
      EXPECT_EQ(streamed, full) << "round " << round;
    }
  }
}

TEST(IncrementalDecoderTest, ContextIsNotRepeated) {
  ASSERT_OK_AND_ASSIGN(auto t, TinyHfTokenizer(4096));
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> prompt,
                       t->Encode("The rollout", {.add_special_tokens = false}));
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> more,
                       t->Encode(" engine generates", {.add_special_tokens = false}));
  IncrementalDecoder d(t.get(), {}, prompt);
  for (int32_t id : more) ASSERT_OK(d.Append(id).status());
  ASSERT_OK(d.Finish().status());
  EXPECT_EQ(d.text(), " engine generates");
  EXPECT_EQ(d.num_ids(), more.size());
}

TEST(IncrementalDecoderTest, BadIdLeavesTheDecoderUnchanged) {
  ASSERT_OK_AND_ASSIGN(auto t, TinyHfTokenizer(300));
  IncrementalDecoder d(t.get());
  EXPECT_THAT(d.Append({'a', 5000}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(d.num_ids(), 0u);
  EXPECT_THAT(d.Append('a'), IsOkAndHolds("a"));
}

}  // namespace
}  // namespace tokenizer
}  // namespace colo
