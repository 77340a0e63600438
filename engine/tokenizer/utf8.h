// UTF-8 helpers shared by the tokenizer stages: code point iteration, the
// Unicode-recommended ("maximal subpart") replacement of ill-formed sequences
// by U+FFFD that Rust's String::from_utf8_lossy and Python's
// bytes.decode(errors="replace") both implement, and splitting text into
// valid and invalid runs.
#ifndef COLO_ENGINE_TOKENIZER_UTF8_H_
#define COLO_ENGINE_TOKENIZER_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace colo {
namespace tokenizer {

inline constexpr char32_t kReplacementChar = 0xFFFD;
inline constexpr absl::string_view kReplacementUtf8 = "\xEF\xBF\xBD";

// Length of the well-formed UTF-8 sequence starting at s[i], or 0 when the
// bytes there are not one (the maximal invalid subpart is then given by
// InvalidPrefixLength).
size_t ValidSequenceLength(absl::string_view s, size_t i);

// Number of bytes, >= 1, forming the maximal subpart of an ill-formed
// sequence at s[i] (precondition: ValidSequenceLength(s, i) == 0).
size_t InvalidPrefixLength(absl::string_view s, size_t i);

bool IsValidUtf8(absl::string_view s);

// `s` with every maximal ill-formed subsequence replaced by U+FFFD.
std::string LossyUtf8(absl::string_view s);
// Appends LossyUtf8(s) to *out.
void AppendLossyUtf8(absl::string_view s, std::string* out);

// Length of `s` without a trailing sequence that is well-formed so far but
// truncated (more bytes could still complete it). Invalid bytes elsewhere
// count as complete: they decode to U+FFFD whatever follows.
size_t CompletePrefixLength(absl::string_view s);

// Decodes the code point at s[*i] (which must be valid UTF-8) and advances *i.
char32_t NextCodePoint(absl::string_view s, size_t* i);

void AppendUtf8(char32_t cp, std::string* out);

// Code points of valid UTF-8 `s`.
std::vector<char32_t> CodePoints(absl::string_view s);

// Splits `s` into maximal runs that are entirely valid UTF-8 or entirely
// invalid, in order; each run is [begin, end) byte offsets.
struct Utf8Run {
  size_t begin;
  size_t end;
  bool valid;
};
std::vector<Utf8Run> SplitUtf8Runs(absl::string_view s);

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_UTF8_H_
