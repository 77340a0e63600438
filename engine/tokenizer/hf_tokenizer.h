// A Hugging Face tokenizer.json (the "fast" tokenizers format) with a BPE
// model: normalizer -> added tokens -> pre-tokenizer -> BPE per piece ->
// post-processor, and the decoder chain back. Covers byte-level BPE
// (GPT-2, Qwen2, Llama-3, GPT-OSS style: Split regex + ByteLevel) and
// SentencePiece-converted BPE (Llama-2 / Mistral style: Prepend/Replace
// normalizers or Metaspace, byte_fallback, ByteFallback/Fuse/Strip
// decoders). Other model types (Unigram, WordPiece, WordLevel) and stages
// not listed in normalizer.h, pre_tokenizer.h, decoder.h and
// post_processor.h are INVALID_ARGUMENT at load, naming the field.
// "truncation" and "padding" are ignored (colo encodes single sequences).
//
// Text that is not valid UTF-8: with a ByteLevel pre-tokenizer, each
// maximal run of invalid bytes is cut out of the text (like an added token
// would be) and tokenized as byte-level characters through the BPE model,
// so its bytes survive the round trip; the valid runs around it are encoded
// as usual. Without ByteLevel, invalid sequences become U+FFFD first.
//
// Thread-safe after construction.
#ifndef COLO_ENGINE_TOKENIZER_HF_TOKENIZER_H_
#define COLO_ENGINE_TOKENIZER_HF_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/added_vocabulary.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/decoder.h"
#include "engine/tokenizer/json_fields.h"
#include "engine/tokenizer/normalizer.h"
#include "engine/tokenizer/post_processor.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace colo {
namespace tokenizer {

class HfTokenizer : public Tokenizer {
 public:
  // Parses tokenizer.json content; errors name "tokenizer.json: <field>".
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> FromJson(absl::string_view json_text);

  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                              const EncodeOptions& options = {}) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     const DecodeOptions& options = {}) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<std::string> IdToToken(int32_t id) const override;
  std::optional<int32_t> TokenToId(absl::string_view token) const override;
  bool IsSpecial(int32_t id) const override;
  bool IsByteFallback(int32_t id) const override;

  // Replaces the post-processor by "[bos] $A [eos]" (what transformers does
  // when tokenizer_config.json sets add_bos_token / add_eos_token).
  void SetBosEosTemplate(std::optional<int32_t> bos, std::optional<int32_t> eos);

  bool byte_level() const { return byte_level_; }

 private:
  HfTokenizer() = default;

  // Encodes valid UTF-8 without post-processing.
  absl::Status EncodeValid(absl::string_view text, bool at_origin, std::vector<int32_t>* ids) const;

  std::unique_ptr<Normalizer> normalizer_;       // may be null
  std::unique_ptr<PreTokenizer> pre_tokenizer_;  // may be null
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<PostProcessor> post_processor_;  // may be null
  std::unique_ptr<Decoder> decoder_;               // may be null
  std::unique_ptr<AddedVocabulary> added_;
  // Ids of "<0xAB>" model tokens when the decoder has ByteFallback.
  std::vector<bool> byte_fallback_;
  bool byte_level_ = false;
  int32_t vocab_size_ = 0;
};

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_HF_TOKENIZER_H_
