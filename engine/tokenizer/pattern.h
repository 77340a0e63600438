// The "pattern" of tokenizer.json Split / Replace stages: {"String": "..."}
// (a literal) or {"Regex": "..."} (PCRE2, see regex.h).
//
// Thread-safe (immutable after construction).
#ifndef COLO_ENGINE_TOKENIZER_PATTERN_H_
#define COLO_ENGINE_TOKENIZER_PATTERN_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/json_fields.h"
#include "engine/tokenizer/regex.h"

namespace colo {
namespace tokenizer {

class Pattern {
 public:
  static absl::StatusOr<Pattern> FromJson(const Json& spec, absl::string_view where);
  static Pattern Literal(std::string literal);
  static absl::StatusOr<Pattern> FromRegex(absl::string_view regex);

  // Calls fn(begin, end) for each non-overlapping, non-empty match, left to
  // right, in valid UTF-8 `text`.
  absl::Status ForEachMatch(absl::string_view text,
                            absl::FunctionRef<void(size_t, size_t)> fn) const;

  // `text` with every match replaced by `content` (literally).
  absl::StatusOr<std::string> ReplaceAll(absl::string_view text, absl::string_view content) const;

 private:
  std::string literal_;
  std::shared_ptr<const Regex> regex_;  // null: literal
};

// A Replace normalizer or decoder: {"pattern": ..., "content": "..."}.
struct Replacement {
  Pattern pattern;
  std::string content;
};
absl::StatusOr<Replacement> ReplacementFromJson(const Json& spec, absl::string_view where);

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_PATTERN_H_
