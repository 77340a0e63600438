// A SentencePiece model (tokenizer.model) through Debian's libsentencepiece,
// with what transformers adds around it: control and unknown pieces
// ("<s>", "</s>", "<unk>") are special tokens, matched in the text before
// SentencePiece sees it; add_bos / add_eos wrap the ids.
//
// Decode: runs of ordinary pieces are decoded by libsentencepiece (which
// drops the leading space of the text's first piece); special tokens
// contribute their piece text unless skipped, and a run after one keeps its
// leading space.
// Text that is not valid UTF-8 is encoded as if each invalid sequence were
// U+FFFD.
//
// Thread-safe after construction.
#ifndef COLO_ENGINE_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_
#define COLO_ENGINE_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/added_vocabulary.h"
#include "engine/tokenizer/sentencepiece_model.h"
#include "engine/tokenizer/tokenizer.h"

namespace colo {
namespace tokenizer {

struct SentencePieceOptions {
  // Unset: add the model's BOS when it has one (LlamaTokenizer's default).
  std::optional<bool> add_bos;
  bool add_eos = false;
};

class SentencePieceTokenizer : public Tokenizer {
 public:
  // INVALID_ARGUMENT when `model_proto` (the file's bytes) does not load.
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> FromSerializedProto(
      absl::string_view model_proto, const SentencePieceOptions& options);
  ~SentencePieceTokenizer() override;

  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                              const EncodeOptions& options = {}) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     const DecodeOptions& options = {}) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<std::string> IdToToken(int32_t id) const override;
  std::optional<int32_t> TokenToId(absl::string_view token) const override;
  bool IsSpecial(int32_t id) const override;
  bool IsByteFallback(int32_t id) const override;

  std::optional<int32_t> model_bos_id() const;
  std::optional<int32_t> model_eos_id() const;

 private:
  SentencePieceTokenizer();

  std::unique_ptr<SentencePieceModel> sp_;
  std::unique_ptr<AddedVocabulary> specials_;
  std::vector<bool> special_;
  int32_t vocab_size_ = 0;
  bool add_bos_ = false;
  bool add_eos_ = false;
};

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_
