#include "engine/tokenizer/bpe_model.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace tokenizer {
namespace {

using ::testing::ElementsAre;

std::vector<int32_t> Tokenize(const BpeModel& m, const std::string& word) {
  std::vector<int32_t> ids;
  m.Tokenize(word, &ids);
  return ids;
}

std::unique_ptr<BpeModel> Make(std::vector<std::pair<std::string, int32_t>> vocab,
                               std::vector<std::pair<std::string, std::string>> merges,
                               BpeOptions o = {}) {
  absl::StatusOr<std::unique_ptr<BpeModel>> m =
      BpeModel::Create(std::move(vocab), merges, std::move(o));
  EXPECT_OK(m.status());
  return m.ok() ? std::move(*m) : nullptr;
}

TEST(BpeModelTest, LowestRankFirstLeftmostAmongEquals) {
  // "aaa" with (a a): the leftmost pair merges first -> [aa, a].
  auto m = Make({{"a", 0}, {"b", 1}, {"aa", 2}, {"ab", 3}, {"aab", 4}},
                {{"a", "a"}, {"a", "b"}, {"aa", "b"}});
  EXPECT_THAT(Tokenize(*m, "aaa"), ElementsAre(2, 0));
  // "aab": (a a) has rank 0 < (a b) rank 1 -> aa + b -> aab.
  EXPECT_THAT(Tokenize(*m, "aab"), ElementsAre(4));
  // Cached: the same again.
  EXPECT_THAT(Tokenize(*m, "aab"), ElementsAre(4));
}

TEST(BpeModelTest, UnknownCharactersWithAndWithoutUnk) {
  auto plain = Make({{"a", 0}}, {});
  EXPECT_THAT(Tokenize(*plain, "axa"), ElementsAre(0, 0));  // dropped, as tokenizers does

  BpeOptions o;
  o.unk_token = "<unk>";
  auto unk = Make({{"a", 0}, {"<unk>", 1}}, {}, o);
  EXPECT_THAT(Tokenize(*unk, "axya"), ElementsAre(0, 1, 1, 0));
  o.fuse_unk = true;
  auto fused = Make({{"a", 0}, {"<unk>", 1}}, {}, o);
  EXPECT_THAT(Tokenize(*fused, "axya"), ElementsAre(0, 1, 0));
}

TEST(BpeModelTest, ByteFallback) {
  BpeOptions o;
  o.byte_fallback = true;
  o.unk_token = "<unk>";
  auto m = Make({{"<unk>", 0}, {"<0xC3>", 1}, {"<0xA9>", 2}, {"a", 3}}, {}, o);
  EXPECT_THAT(Tokenize(*m, "a\xC3\xA9"), ElementsAre(3, 1, 2));
  // A character whose bytes are not all present falls back to unk.
  EXPECT_THAT(Tokenize(*m, "\xC3\xB1"), ElementsAre(0));
}

TEST(BpeModelTest, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  BpeOptions o;
  o.ignore_merges = true;
  auto m = Make({{"a", 0}, {"b", 1}, {"ab", 2}, {"abb", 3}}, {{"a", "b"}}, o);
  EXPECT_THAT(Tokenize(*m, "abb"), ElementsAre(3));  // no merge reaches "abb"
  EXPECT_THAT(Tokenize(*m, "abab"), ElementsAre(2, 2));
}

TEST(BpeModelTest, ContinuingSubwordPrefix) {
  BpeOptions o;
  o.continuing_subword_prefix = "##";
  auto m = Make({{"a", 0}, {"##b", 1}, {"ab", 2}}, {{"a", "##b"}}, o);
  EXPECT_THAT(Tokenize(*m, "ab"), ElementsAre(2));
}

TEST(BpeModelTest, MalformedMergesAreInvalidArgument) {
  EXPECT_THAT(BpeModel::Create({{"a", 0}}, {{"a", "b"}}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("merges[0]")));
  EXPECT_THAT(BpeModel::Create({{"a", 0}, {"b", 1}}, {{"a", "b"}}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("\"ab\"")));
  BpeOptions o;
  o.unk_token = "<unk>";
  EXPECT_THAT(BpeModel::Create({{"a", 0}}, {}, o),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("unk_token")));
  EXPECT_THAT(BpeModel::Create({{"a", -3}}, {}, {}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(BpeModelTest, FromJsonAcceptsBothMergeFormats) {
  Json model = Json::parse(R"({"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2},
                               "merges": ["a b"]})");
  ASSERT_OK_AND_ASSIGN(auto m1, BpeModel::FromJson(model, "model"));
  model["merges"] = Json::parse(R"([["a", "b"]])");
  ASSERT_OK_AND_ASSIGN(auto m2, BpeModel::FromJson(model, "model"));
  EXPECT_THAT(Tokenize(*m1, "ab"), ElementsAre(2));
  EXPECT_THAT(Tokenize(*m2, "ab"), ElementsAre(2));
  model["merges"] = Json::parse(R"(["a b c"])");
  EXPECT_THAT(BpeModel::FromJson(model, "model"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("merges[0]")));
  model["dropout"] = 0.1;
  EXPECT_THAT(BpeModel::FromJson(model, "model"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("dropout")));
}

}  // namespace
}  // namespace tokenizer
}  // namespace colo
