#include "engine/tokenizer/utf8.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colo {
namespace tokenizer {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8Test, ValidSequences) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii text, long enough for the 8-byte path"));
  EXPECT_TRUE(IsValidUtf8("caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80"));
  EXPECT_TRUE(IsValidUtf8("\xF4\x8F\xBF\xBF"));   // U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xE0\x80\x80"));      // overlong
  EXPECT_FALSE(IsValidUtf8("abc\xE2\x82"));       // truncated
  EXPECT_FALSE(IsValidUtf8("\xFF"));
}

// The "maximal subpart" replacement Python's errors="replace" and Rust's
// from_utf8_lossy produce (expected strings from Python 3).
TEST(Utf8Test, LossyReplacesMaximalSubparts) {
  EXPECT_EQ(LossyUtf8("a\xE2\x82"
                      "b"),
            "a" + kFffd + "b");  // one FFFD for E2 82
  EXPECT_EQ(LossyUtf8("\xE2\x82\xE2\x82\xAC"), kFffd + "\xE2\x82\xAC");
  EXPECT_EQ(LossyUtf8("\xED\xA0\x80"), kFffd + kFffd + kFffd);  // ED A0: A0 not allowed after ED
  EXPECT_EQ(LossyUtf8("\xF0\x9F\x98"), kFffd);
  EXPECT_EQ(LossyUtf8("\xF8\x88\x80\x80\x80"), kFffd + kFffd + kFffd + kFffd + kFffd);
  EXPECT_EQ(LossyUtf8("\xC0\xAF"), kFffd + kFffd);
  EXPECT_EQ(LossyUtf8("ok"), "ok");
}

TEST(Utf8Test, CompletePrefixLeavesOutTruncatedTail) {
  EXPECT_EQ(CompletePrefixLength("abc"), 3u);
  EXPECT_EQ(CompletePrefixLength("ab\xE2\x82"), 2u);  // could still become a euro sign
  EXPECT_EQ(CompletePrefixLength("ab\xE2\x82\xAC"), 5u);
  EXPECT_EQ(CompletePrefixLength("ab\xFF"), 3u);  // invalid whatever follows
  EXPECT_EQ(CompletePrefixLength("\xE2\x82x\xF0\x9F"), 3u);
}

TEST(Utf8Test, CodePointsRoundTrip) {
  const std::string s = "a\xC3\xA9\xE4\xBD\xA0\xF0\x9F\x98\x80";
  std::vector<char32_t> cps = CodePoints(s);
  EXPECT_THAT(cps, ::testing::ElementsAre(U'a', U'\u00e9', U'\u4f60', U'\U0001F600'));
  std::string back;
  for (char32_t c : cps) AppendUtf8(c, &back);
  EXPECT_EQ(back, s);
}

TEST(Utf8Test, SplitRunsAlternate) {
  const std::string s =
      "ab\xFF\xFE"
      "cd\xE2\x82";
  std::vector<Utf8Run> runs = SplitUtf8Runs(s);
  ASSERT_EQ(runs.size(), 4u);
  EXPECT_TRUE(runs[0].valid);
  EXPECT_EQ(s.substr(runs[0].begin, runs[0].end - runs[0].begin), "ab");
  EXPECT_FALSE(runs[1].valid);
  EXPECT_EQ(runs[1].end - runs[1].begin, 2u);
  EXPECT_TRUE(runs[2].valid);
  EXPECT_FALSE(runs[3].valid);
  EXPECT_EQ(runs[3].end, s.size());
}

}  // namespace
}  // namespace tokenizer
}  // namespace colo
