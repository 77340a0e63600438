// tokenizer.json "pre_tokenizer" stages: Split (String or Regex pattern, all
// five delimiter behaviors, invert), ByteLevel (add_prefix_space, use_regex
// with GPT-2's pattern), Metaspace (replacement, prepend_scheme, split),
// Digits and Sequence. They cut text into the pieces the model tokenizes
// one at a time, with the same pieces tokenizers produces.
//
// Thread-safe (immutable after construction).
#ifndef COLO_ENGINE_TOKENIZER_PRE_TOKENIZER_H_
#define COLO_ENGINE_TOKENIZER_PRE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/json_fields.h"

namespace colo {
namespace tokenizer {

// Text cut into pieces: spans into `text`, in order, never empty.
struct PieceList {
  struct Span {
    uint32_t begin;
    uint32_t end;
    // The piece starts at offset 0 of the caller's original text (what
    // Metaspace's prepend_scheme "first" checks).
    bool at_origin;
  };
  std::string text;
  std::vector<Span> spans;

  absl::string_view piece(size_t i) const {
    return absl::string_view(text).substr(spans[i].begin, spans[i].end - spans[i].begin);
  }
  void Reset(absl::string_view whole, bool at_origin) {
    text.assign(whole.data(), whole.size());
    spans.clear();
    if (!whole.empty()) spans.push_back({0, static_cast<uint32_t>(whole.size()), at_origin});
  }
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Rewrites and/or cuts the pieces (valid UTF-8 in, valid UTF-8 out).
  virtual absl::Status PreTokenize(PieceList* pieces) const = 0;
  // True when this stage (or one of a Sequence) is ByteLevel: the model
  // then sees byte-level characters and arbitrary bytes are representable.
  virtual bool IsByteLevel() const { return false; }
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizerFromJson(const Json& spec,
                                                                   absl::string_view where);

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_PRE_TOKENIZER_H_
