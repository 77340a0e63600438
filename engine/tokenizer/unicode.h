// Unicode properties and transforms the tokenizer stages need, from ICU
// (Debian's libicu): the same definitions Rust's char methods and regex
// classes use in Hugging Face tokenizers.
#ifndef COLO_ENGINE_TOKENIZER_UNICODE_H_
#define COLO_ENGINE_TOKENIZER_UNICODE_H_

#include <string>

#include "absl/strings/string_view.h"

namespace colo {
namespace tokenizer {

// Rust's char::is_whitespace (the White_Space property).
bool IsWhiteSpace(char32_t cp);
// Rust regex's \w: Alphabetic, marks, decimal digits, connector punctuation,
// Join_Control.
bool IsWordChar(char32_t cp);
// Rust's char::is_numeric (general categories Nd, Nl, No).
bool IsNumeric(char32_t cp);
// General category Mn (nonspacing mark).
bool IsNonspacingMark(char32_t cp);

enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };
// `text` (valid UTF-8) in the given normalization form.
std::string NormalizeUnicode(absl::string_view text, NormalForm form);
// Full Unicode lowercase mapping (Rust's str::to_lowercase).
std::string ToLower(absl::string_view text);

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_UNICODE_H_
