// tokenizer.json "decoder" stages: ByteLevel, Metaspace, Replace,
// ByteFallback, Fuse, Strip and Sequence, with tokenizers' decode_chain
// semantics (each stage maps a list of token strings to a list of strings;
// the result is their concatenation).
//
// Thread-safe (immutable after construction).
#ifndef COLO_ENGINE_TOKENIZER_DECODER_H_
#define COLO_ENGINE_TOKENIZER_DECODER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/json_fields.h"

namespace colo {
namespace tokenizer {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Rewrites the token strings in place (the list may change length).
  virtual void DecodeChain(std::vector<std::string>* tokens) const = 0;
  // True when this stage (or one of a Sequence) is ByteFallback.
  virtual bool HasByteFallback() const { return false; }
};

// The byte of a ByteFallback token "<0xAB>" (Rust's u8::from_str_radix on
// the two characters, which also takes "+A"), or -1 for other tokens.
int ParseByteToken(const std::string& token);

absl::StatusOr<std::unique_ptr<Decoder>> DecoderFromJson(const Json& spec, absl::string_view where);

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_DECODER_H_
