#include "engine/tokenizer/tokenizer.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/tokenizer/tiny_tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace tokenizer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TestDir(const std::string& name) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(base ? base : "/tmp") + "/" + name;
  mkdir(dir.c_str(), 0755);
  return dir;
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::trunc | std::ios::binary);
  out << content;
}

// A tiny-tokenizer model directory with `vocab` ids.
std::string TinyDir(const std::string& name, int64_t vocab) {
  const std::string dir = TestDir(name);
  TinyTokenizerOptions o;
  o.vocab = vocab;
  EXPECT_OK(WriteTinyTokenizer(o, dir));
  return dir;
}

TEST(TokenizerTest, MissingDirectoryOrTokenizerIsNotFound) {
  EXPECT_THAT(Tokenizer::Load("/nonexistent/model"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/model")));
  const std::string empty = TestDir("empty_model");
  WriteFile(empty + "/config.json", "{}");
  EXPECT_THAT(Tokenizer::Load(empty), StatusIs(absl::StatusCode::kNotFound, HasSubstr(empty)));
}

TEST(TokenizerTest, LoadsTinyTokenizerWithConfig) {
  const std::string dir = TinyDir("tiny_load", 300);
  ASSERT_OK_AND_ASSIGN(auto t, Tokenizer::Load(dir));
  EXPECT_EQ(t->source(), "tokenizer.json");
  EXPECT_EQ(t->vocab_size(), 300);
  EXPECT_EQ(t->bos_id(), 297);
  EXPECT_EQ(t->eos_id(), 298);
  EXPECT_EQ(t->pad_id(), 299);
  EXPECT_THAT(t->eos_ids(), ElementsAre(298));
  EXPECT_TRUE(t->IsSpecial(297));
  EXPECT_FALSE(t->IsSpecial(5));
  EXPECT_EQ(t->TokenToId("<|eos|>"), 298);
  EXPECT_EQ(t->IdToToken(298), "<|eos|>");
  EXPECT_EQ(t->IdToToken(32), "\xC4\xA0");  // byte 0x20 (space) is "Ġ"
  EXPECT_EQ(t->IdToToken(300), std::nullopt);
  EXPECT_EQ(t->TokenToId("not a token"), std::nullopt);

  const std::string text =
      "Hello world!\n\tcaf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80 <|eos|>";
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, t->Encode(text));
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), 297);  // BOS from the post-processor
  EXPECT_EQ(ids.back(), 298);   // the special token in the text
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> plain, t->Encode(text, {.add_special_tokens = false}));
  EXPECT_EQ(plain.size() + 1, ids.size());
  EXPECT_THAT(t->Decode(ids), IsOkAndHolds("<|bos|>" + text));
  EXPECT_THAT(t->Decode(ids, {.skip_special_tokens = true}),
              IsOkAndHolds(text.substr(0, text.size() - 7)));
}

TEST(TokenizerTest, DecodeRejectsIdsOutsideTheVocabulary) {
  ASSERT_OK_AND_ASSIGN(auto t, Tokenizer::Load(TinyDir("tiny_bad_ids", 300)));
  EXPECT_THAT(t->Decode({1, 2, 300}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ids[2]")));
  EXPECT_THAT(t->Decode({-1}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ids[0]")));
}

TEST(TokenizerTest, InvalidUtf8KeepsItsBytesAndDecodesToReplacement) {
  ASSERT_OK_AND_ASSIGN(auto t, Tokenizer::Load(TinyDir("tiny_invalid", 300)));
  const std::string text =
      "ab\xFF\xE2\x82"
      "cd";
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, t->Encode(text, {.add_special_tokens = false}));
  // Byte-level tokens: 0xFF and E2 82 are their own byte tokens.
  EXPECT_THAT(ids, ::testing::Contains(0xFF));
  EXPECT_THAT(t->Decode(ids), IsOkAndHolds("ab\xEF\xBF\xBD\xEF\xBF\xBD"
                                           "cd"));
}

TEST(TokenizerTest, GenerationConfigAndAddBosOverride) {
  const std::string dir = TinyDir("tiny_config", 300);
  WriteFile(dir + "/generation_config.json",
            R"({"eos_token_id": [5, 298, 7], "temperature": 0.6, "top_p": 0.9, "top_k": 20,
                "repetition_penalty": 1.1, "do_sample": true, "max_new_tokens": 64})");
  WriteFile(dir + "/tokenizer_config.json",
            R"({"bos_token": {"content": "<|bos|>"}, "eos_token": "<|eos|>", "add_bos_token": false,
                "add_eos_token": true})");
  ASSERT_OK_AND_ASSIGN(auto t, Tokenizer::Load(dir));
  EXPECT_THAT(t->eos_ids(), ElementsAre(5, 298, 7));
  const GenerationDefaults& g = t->generation_defaults();
  EXPECT_EQ(g.temperature, 0.6);
  EXPECT_EQ(g.top_p, 0.9);
  EXPECT_EQ(g.top_k, 20);
  EXPECT_EQ(g.repetition_penalty, 1.1);
  EXPECT_EQ(g.do_sample, true);
  EXPECT_EQ(g.max_new_tokens, 64);
  EXPECT_EQ(g.min_p, std::nullopt);
  // As in transformers: the flags replace tokenizer.json's post-processor.
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, t->Encode("hi"));
  EXPECT_NE(ids.front(), 297);
  EXPECT_EQ(ids.back(), 298);
}

TEST(TokenizerTest, MalformedConfigFilesNameTheField) {
  const std::string dir = TinyDir("tiny_bad_config", 300);
  WriteFile(dir + "/generation_config.json", R"({"eos_token_id": "x"})");
  EXPECT_THAT(Tokenizer::Load(dir), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("generation_config.json: eos_token_id")));
  WriteFile(dir + "/generation_config.json", "{not json");
  EXPECT_THAT(Tokenizer::Load(dir),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("generation_config.json")));
  WriteFile(dir + "/generation_config.json", "{}");
  WriteFile(dir + "/tokenizer_config.json", R"({"eos_token": "<|nope|>"})");
  EXPECT_THAT(Tokenizer::Load(dir), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("tokenizer_config.json: eos_token")));
  WriteFile(dir + "/tokenizer_config.json", R"({"pad_token": 5})");
  EXPECT_THAT(Tokenizer::Load(dir),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pad_token")));
  WriteFile(dir + "/tokenizer_config.json", R"({"pad_token": "<|not in vocab|>"})");
  ASSERT_OK_AND_ASSIGN(auto lenient, Tokenizer::Load(dir));
  EXPECT_EQ(lenient->pad_id(), std::nullopt);
  WriteFile(dir + "/tokenizer_config.json", R"({"add_bos_token": "yes"})");
  EXPECT_THAT(Tokenizer::Load(dir),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("add_bos_token")));
}

TEST(TokenizerTest, MalformedTokenizerModelIsInvalidArgument) {
  const std::string dir = TestDir("bad_sentencepiece");
  WriteFile(dir + "/tokenizer.model", "this is not a protobuf");
  EXPECT_THAT(Tokenizer::Load(dir),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tokenizer.model")));
}

TEST(TokenizerTest, ConcurrentEncodesAgree) {
  ASSERT_OK_AND_ASSIGN(auto t, Tokenizer::Load(TinyDir("tiny_threads", 4096)));
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) {
    texts.push_back("sample " + std::to_string(i * 7919) +
                    " of the rollout engine, tokens and weights " + std::string(i % 5, ' ') +
                    "\xE4\xBD\xA0" + std::to_string(i));
  }
  std::vector<std::vector<int32_t>> expected;
  for (const std::string& s : texts) {
    ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, t->Encode(s));
    expected.push_back(ids);
  }
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int round = 0; round < 5; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          absl::StatusOr<std::vector<int32_t>> ids = t->Encode(texts[(i + k * 31) % texts.size()]);
          if (!ids.ok() || *ids != expected[(i + k * 31) % texts.size()]) ++mismatches[k];
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_THAT(mismatches, ElementsAre(0, 0, 0, 0));
}

}  // namespace
}  // namespace tokenizer
}  // namespace colo
