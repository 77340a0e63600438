// tokenizer.json "normalizer" stages: NFC, NFD, NFKC, NFKD (ICU),
// Lowercase, Strip, StripAccents, Replace, Prepend and Sequence. Each
// rewrites valid UTF-8 text the way tokenizers' normalizer of the same name
// does (offsets are not tracked: colo needs ids, not alignments).
//
// Thread-safe (immutable after construction).
#ifndef COLO_ENGINE_TOKENIZER_NORMALIZER_H_
#define COLO_ENGINE_TOKENIZER_NORMALIZER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/json_fields.h"

namespace colo {
namespace tokenizer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Rewrites *text (valid UTF-8) in place.
  virtual void Normalize(std::string* text) const = 0;
};

// Builds the normalizer described by `spec` (tokenizer.json's "normalizer";
// `where` names it in errors). INVALID_ARGUMENT for unknown or unsupported
// types (e.g. Precompiled, BertNormalizer), naming the type.
absl::StatusOr<std::unique_ptr<Normalizer>> NormalizerFromJson(const Json& spec,
                                                               absl::string_view where);

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_NORMALIZER_H_
