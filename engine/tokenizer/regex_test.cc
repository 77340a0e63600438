#include "engine/tokenizer/regex.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace tokenizer {
namespace {

std::vector<std::string> Matches(const Regex& re, const std::string& text) {
  std::vector<std::string> out;
  EXPECT_OK(
      re.ForEachMatch(text, [&](size_t b, size_t e) { out.push_back(text.substr(b, e - b)); }));
  return out;
}

TEST(RegexTest, TranslatesOnigurumaClasses) {
  EXPECT_EQ(OnigurumaToPcre2(R"(\s+(?!\S))"), R"(\p{White_Space}+(?!\P{White_Space}))");
  EXPECT_EQ(OnigurumaToPcre2(R"([^\s\p{L}])"), R"([^\p{White_Space}\p{L}])");
  EXPECT_EQ(OnigurumaToPcre2(R"(\w+)"), R"([\p{L}\p{M}\p{Nd}\p{Pc}]+)");
  EXPECT_EQ(OnigurumaToPcre2(R"(\\s)"), R"(\\s)");  // an escaped backslash, then 's'
  EXPECT_EQ(OnigurumaToPcre2(R"(\Q\s\E\s)"), R"(\Q\s\E\p{White_Space})");
  EXPECT_EQ(OnigurumaToPcre2(R"([]\s])"), R"([]\p{White_Space}])");
  EXPECT_EQ(OnigurumaToPcre2(R"(\h+[\h_])"), R"([0-9a-fA-F]+[0-9a-fA-F_])");
}

TEST(RegexTest, Llama3PatternSplits) {
  ASSERT_OK_AND_ASSIGN(
      auto re,
      Regex::Compile(
          R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"));
  EXPECT_THAT(
      Matches(*re, "Hello world's 12345  !!\n\nx"),
      ::testing::ElementsAre("Hello", " world", "'s", " ", "123", "45", " ", " !!\n\n", "x"));
  // (?i:) with UCP: the long s folds to 's'.
  EXPECT_THAT(Matches(*re, "it'\xC5\xBF"), ::testing::ElementsAre("it", "'\xC5\xBF"));
}

TEST(RegexTest, MongolianVowelSeparatorIsNotWhitespace) {
  ASSERT_OK_AND_ASSIGN(auto re, Regex::Compile(R"(\s+)"));
  EXPECT_TRUE(Matches(*re, "\xE1\xA0\x8E").empty());  // U+180E (Cf since Unicode 6.3)
  EXPECT_THAT(Matches(*re,
                      "a\xC2\x85"
                      "b"),
              ::testing::ElementsAre("\xC2\x85"));  // U+0085 is
}

TEST(RegexTest, EmptyMatchesAreSkipped) {
  ASSERT_OK_AND_ASSIGN(auto re, Regex::Compile("x*"));
  EXPECT_THAT(Matches(*re, "ab\xC3\xA9xxc"), ::testing::ElementsAre("xx"));
}

TEST(RegexTest, BadPatternIsInvalidArgument) {
  EXPECT_THAT(Regex::Compile("(unclosed"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("(unclosed")));
}

}  // namespace
}  // namespace tokenizer
}  // namespace colo
