// A deterministic byte-level BPE tokenizer for the tiny test models
// (colo-tiny-model writes it next to the weights so every test has text).
//
// WriteTinyTokenizer writes tokenizer.json (Llama-3 style: the Llama-3 split
// regex + ByteLevel, a BOS-adding TemplateProcessing, ByteLevel decoder),
// tokenizer_config.json and generation_config.json that Hugging Face
// tokenizers / transformers' AutoTokenizer load as they are. The tokenizer
// has exactly `vocab` ids, so every id a model of that vocabulary can emit
// decodes:
//   - vocab >= 259: the 256 byte tokens, merges, then <|bos|>, <|eos|>,
//     <|pad|> as the last three ids;
//   - 247 <= vocab < 259: the 243 bytes that occur in UTF-8 text, merges,
//     <|unk|> (for bytes of invalid UTF-8), then bos/eos/pad;
//   - 5 <= vocab < 247: the vocab - 4 most useful bytes for English text
//     (space, lowercase, newline, digits, punctuation, uppercase, ...),
//     <|unk|> for the others, then bos/eos/pad;
//   - vocab < 5: no tokenizer is written.
// Merges come from byte-pair counts over a fixed embedded English text
// (ties broken by the pair's strings), then, when a large vocabulary needs
// more, from extending existing tokens by one letter in a fixed order.
#ifndef COLO_ENGINE_TOKENIZER_TINY_TOKENIZER_H_
#define COLO_ENGINE_TOKENIZER_TINY_TOKENIZER_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace colo {
namespace tokenizer {

struct TinyTokenizerOptions {
  int64_t vocab = 256;
  // tokenizer_config.json's model_max_length.
  int64_t max_position = 2048;
};

// The three JSON documents, for callers that write them elsewhere.
struct TinyTokenizerFiles {
  std::string tokenizer_json;
  std::string tokenizer_config_json;
  std::string generation_config_json;
};

// INVALID_ARGUMENT for vocab < 5 or > 1,000,000.
absl::StatusOr<TinyTokenizerFiles> MakeTinyTokenizer(const TinyTokenizerOptions& options);

// Writes the three files into `dir` (which must exist). Does nothing for
// vocab < 5.
absl::Status WriteTinyTokenizer(const TinyTokenizerOptions& options, const std::string& dir);

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_TINY_TOKENIZER_H_
