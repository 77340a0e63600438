#include "engine/tokenizer/hf_tokenizer.h"

#include <random>
#include <string>

#include "engine/tokenizer/tiny_tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace tokenizer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A SentencePiece-style (Llama-2) tokenizer.json: Prepend/Replace
// normalizers, byte_fallback BPE, Replace/ByteFallback/Fuse/Strip decoder.
constexpr char kLlama2Style[] = R"({
  "added_tokens": [
    {"id": 0, "content": "<unk>", "special": true, "normalized": false},
    {"id": 1, "content": "<s>", "special": true, "normalized": false},
    {"id": 2, "content": "</s>", "special": true, "normalized": false}],
  "normalizer": {"type": "Sequence", "normalizers": [
    {"type": "Prepend", "prepend": "\u2581"},
    {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
  "pre_tokenizer": null,
  "post_processor": {"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
    "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
  "decoder": {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
    {"type": "ByteFallback"}, {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
  "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
    "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0xC3>": 3, "<0xA9>": 4, "\u2581": 5, "h": 6, "i": 7,
              "\u2581h": 8, "\u2581hi": 9},
    "merges": ["\u2581 h", "\u2581h i"]}
})";

TEST(HfTokenizerTest, SentencePieceStyleJson) {
  ASSERT_OK_AND_ASSIGN(auto t, HfTokenizer::FromJson(kLlama2Style));
  EXPECT_FALSE(t->byte_level());
  // " hi" -> "▁▁hi": ▁ + ▁hi; "é" falls back to bytes; "x" is unknown.
  EXPECT_THAT(t->Encode("hi hi\xC3\xA9x"), IsOkAndHolds(ElementsAre(1, 9, 9, 3, 4, 0)));
  EXPECT_THAT(t->Encode(" hi", {.add_special_tokens = false}), IsOkAndHolds(ElementsAre(5, 9)));
  EXPECT_THAT(t->Decode({1, 9, 9, 3, 4}), IsOkAndHolds("<s> hi hi\xC3\xA9"));
  EXPECT_THAT(t->Decode({1, 9, 9, 3, 4}, {.skip_special_tokens = true}),
              IsOkAndHolds("hi hi\xC3\xA9"));
  // An invalid byte run: one U+FFFD per byte, as tokenizers' ByteFallback.
  EXPECT_THAT(t->Decode({9, 3, 3}), IsOkAndHolds("hi\xEF\xBF\xBD\xEF\xBF\xBD"));
  EXPECT_TRUE(t->IsByteFallback(3));
  EXPECT_FALSE(t->IsByteFallback(9));
}

TEST(HfTokenizerTest, UnsupportedPartsNameTheField) {
  nlohmann::json j = nlohmann::json::parse(kLlama2Style);
  auto load = [](const nlohmann::json& v) { return HfTokenizer::FromJson(v.dump()); };

  nlohmann::json m = j;
  m["model"]["type"] = "Unigram";
  EXPECT_THAT(load(m), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model.type")));
  m = j;
  m["normalizer"] = {{"type", "Precompiled"}};
  EXPECT_THAT(load(m), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("normalizer.type")));
  m = j;
  m["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(("}}}, {"behavior", "Isolated"}};
  EXPECT_THAT(load(m),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pre_tokenizer.pattern")));
  m = j;
  m["decoder"]["decoders"][3] = {{"type", "CTC"}};
  EXPECT_THAT(load(m),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("decoder.decoders[3].type")));
  m = j;
  m["post_processor"]["single"][0]["SpecialToken"]["id"] = "<missing>";
  EXPECT_THAT(load(m), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("<missing>")));
  m = j;
  m["added_tokens"][1]["id"] = "one";
  EXPECT_THAT(load(m),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("added_tokens[1].id")));
  m = j;
  m.erase("model");
  EXPECT_THAT(load(m), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model: missing")));
  EXPECT_THAT(HfTokenizer::FromJson("[1, 2]"), StatusIs(absl::StatusCode::kInvalidArgument));
  m = j;
  m["model"]["merges"] = {"h \u2581"};
  EXPECT_THAT(load(m), StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("tokenizer.json: model.merges[0]: \"h\" \"\u2581\"")));
  std::string deep = "{\"normalizer\": ";
  for (int i = 0; i < 100000; ++i) deep += "{\"type\": \"Sequence\", \"normalizers\": [";
  EXPECT_THAT(HfTokenizer::FromJson(deep),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nested")));
  EXPECT_THAT(HfTokenizer::FromJson("{\"model\": "), StatusIs(absl::StatusCode::kInvalidArgument));
}

// Random damage to a valid tokenizer.json (fixed seed): loading returns a
// status and never crashes; what loads encodes and decodes.
TEST(HfTokenizerTest, MalformedFilesNeverCrash) {
  TinyTokenizerOptions o;
  o.vocab = 300;
  ASSERT_OK_AND_ASSIGN(TinyTokenizerFiles files, MakeTinyTokenizer(o));
  const std::string good = files.tokenizer_json;
  std::mt19937 rng(20240607);
  const char kJunk[] = "{}[]\":,0-9 \\nulltruefalse\x80\xFF";
  int loaded = 0;
  for (int round = 0; round < 400; ++round) {
    std::string bad = good;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % bad.size();
      switch (rng() % 4) {
        case 0:
          bad.erase(pos, 1 + rng() % 8);
          break;
        case 1:
          bad[pos] = kJunk[rng() % (sizeof(kJunk) - 1)];
          break;
        case 2:
          bad.insert(pos, 1, kJunk[rng() % (sizeof(kJunk) - 1)]);
          break;
        case 3:
          bad.resize(pos);
          break;
      }
    }
    absl::StatusOr<std::unique_ptr<HfTokenizer>> t = HfTokenizer::FromJson(bad);
    if (!t.ok()) {
      EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << t.status();
      continue;
    }
    ++loaded;
    absl::StatusOr<std::vector<int32_t>> ids = (*t)->Encode("Hello, world! 123 \xE4\xBD\xA0");
    if (ids.ok()) {
      for (int32_t& id : *ids) id = std::min(id, (*t)->vocab_size() - 1);
      (void)(*t)->Decode(*ids);
    }
  }
  EXPECT_GT(loaded, 0);  // some damage (e.g. inside a token string) still loads
}

}  // namespace
}  // namespace tokenizer
}  // namespace colo
