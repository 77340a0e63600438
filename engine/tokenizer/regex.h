// A compiled PCRE2 regular expression (UTF + UCP, JIT when available) used
// for the pre-tokenizer split patterns and Replace normalizers/decoders.
// Hugging Face tokenizers runs the same patterns on Oniguruma; the pattern
// is translated where the two differ (OnigurumaToPcre2), so the Unicode
// classes the models use (\p{L}, \p{N}, \s, (?i:...)) match the same
// characters.
//
// Thread-safe: matching only reads the compiled pattern; scratch space is
// per thread.
#ifndef COLO_ENGINE_TOKENIZER_REGEX_H_
#define COLO_ENGINE_TOKENIZER_REGEX_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace colo {
namespace tokenizer {

// Rewrites the escapes whose meaning differs between Oniguruma (Unicode
// mode) and PCRE2 with UCP: \s / \S become \p{White_Space} / \P{...}
// (PCRE2's \s also takes U+180E), \w / \W become Oniguruma's word class
// (letters, marks, decimal digits, connector punctuation), \h / \H are hex
// digits as in Oniguruma (PCRE2: horizontal space). \W and \H inside a
// character class are left to PCRE2.
std::string OnigurumaToPcre2(absl::string_view pattern);

class Regex {
 public:
  // INVALID_ARGUMENT with PCRE2's message and offset when `pattern` does not
  // compile.
  // `pattern` is in Oniguruma's syntax (as tokenizer.json stores it).
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(absl::string_view pattern);

  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls fn(begin, end) with the byte offsets of every non-overlapping,
  // non-empty match in `text`, left to right. `text` must be valid UTF-8.
  // An error only when PCRE2 runs out of resources on pathological input.
  absl::Status ForEachMatch(absl::string_view text,
                            absl::FunctionRef<void(size_t, size_t)> fn) const;

  const std::string& pattern() const { return pattern_; }

 private:
  Regex(std::string pattern, void* code, bool jit);

  std::string pattern_;
  void* code_;  // pcre2_code_8*
  bool jit_;
};

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_REGEX_H_
