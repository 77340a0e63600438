#include "engine/tokenizer/tiny_tokenizer.h"

#include <string>

#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/testing/tiny_hf_tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace tokenizer {
namespace {

TEST(TinyTokenizerTest, HasExactlyTheModelsVocabulary) {
  for (int64_t vocab : {5, 64, 246, 247, 256, 258, 259, 300, 4096, 32000}) {
    ASSERT_OK_AND_ASSIGN(auto t, TinyHfTokenizer(vocab));
    EXPECT_EQ(t->vocab_size(), vocab);
    // Every id decodes.
    for (int32_t id = 0; id < vocab; id += std::max<int64_t>(1, vocab / 997)) {
      EXPECT_OK(t->Decode({id}).status()) << "vocab " << vocab << " id " << id;
    }
    EXPECT_TRUE(t->IsSpecial(static_cast<int32_t>(vocab - 1)));  // <|pad|>
  }
}

TEST(TinyTokenizerTest, IsDeterministic) {
  TinyTokenizerOptions o;
  o.vocab = 4096;
  ASSERT_OK_AND_ASSIGN(TinyTokenizerFiles a, MakeTinyTokenizer(o));
  ASSERT_OK_AND_ASSIGN(TinyTokenizerFiles b, MakeTinyTokenizer(o));
  EXPECT_EQ(a.tokenizer_json, b.tokenizer_json);
  EXPECT_EQ(a.tokenizer_config_json, b.tokenizer_config_json);
  EXPECT_EQ(a.generation_config_json, b.generation_config_json);
}

TEST(TinyTokenizerTest, RoundTripsText) {
  const std::string text =
      "The rollout engine, 42 tokens:\n\tcaf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80!";
  for (int64_t vocab : {247, 256, 300, 4096}) {
    ASSERT_OK_AND_ASSIGN(auto t, TinyHfTokenizer(vocab));
    ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, t->Encode(text, {.add_special_tokens = false}));
    EXPECT_THAT(t->Decode(ids), IsOkAndHolds(text)) << vocab;
  }
  // Merges make common English words single tokens at 4096.
  ASSERT_OK_AND_ASSIGN(auto big, TinyHfTokenizer(4096));
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids,
                       big->Encode(" the", {.add_special_tokens = false}));
  EXPECT_EQ(ids.size(), 1u);
  // Small vocabularies keep lowercase ASCII; other bytes become <|unk|>.
  ASSERT_OK_AND_ASSIGN(auto small, TinyHfTokenizer(64));
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> low,
                       small->Encode("hello world", {.add_special_tokens = false}));
  EXPECT_THAT(small->Decode(low), IsOkAndHolds("hello world"));
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> other,
                       small->Encode("~", {.add_special_tokens = false}));
  EXPECT_THAT(small->Decode(other), IsOkAndHolds("<|unk|>"));
}

TEST(TinyTokenizerTest, RejectsTooSmallVocabulary) {
  TinyTokenizerOptions o;
  o.vocab = 4;
  EXPECT_THAT(MakeTinyTokenizer(o), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_OK(WriteTinyTokenizer(o, "/nonexistent"));  // nothing to write
}

}  // namespace
}  // namespace tokenizer
}  // namespace colo
