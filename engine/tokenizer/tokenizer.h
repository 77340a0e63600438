// Text <-> token ids for a model directory, as Hugging Face tokenizers and
// transformers do it for the same files.
//
// Tokenizer::Load(model_dir) reads, in this order of preference:
//   - tokenizer.json (Hugging Face fast tokenizers: BPE with byte-level or
//     SentencePiece-style pre-tokenization, normalizers, added tokens,
//     post-processor and decoder; see hf_tokenizer.h for what is supported),
//   - tokenizer.model (SentencePiece, through libsentencepiece),
// plus tokenizer_config.json (bos/eos/pad tokens, add_bos_token/add_eos_token,
// added tokens) and generation_config.json (eos ids, sampling defaults) when
// present.
//
// Thread safety: a loaded Tokenizer is immutable from the caller's point of
// view; every method is const and may be called from any number of threads
// at once (internal caches are synchronized).
#ifndef COLO_ENGINE_TOKENIZER_TOKENIZER_H_
#define COLO_ENGINE_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace colo {
namespace tokenizer {

struct EncodeOptions {
  // Adds what the model expects around a sequence: the post-processor's
  // template for tokenizer.json (e.g. Llama-3's BOS), add_bos_token /
  // add_eos_token from tokenizer_config.json for tokenizer.model.
  bool add_special_tokens = true;
};

struct DecodeOptions {
  // Drops special tokens (added tokens marked "special") from the text.
  bool skip_special_tokens = false;
};

// Sampling defaults from generation_config.json (absent fields stay unset:
// the caller applies its own defaults; the stop ids are Tokenizer::eos_ids).
struct GenerationDefaults {
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int> top_k;
  std::optional<double> min_p;
  std::optional<double> repetition_penalty;
  std::optional<double> frequency_penalty;
  std::optional<double> presence_penalty;
  std::optional<int64_t> max_new_tokens;
  std::optional<bool> do_sample;
};

class Tokenizer {
 public:
  // Loads the tokenizer of `model_dir`. NOT_FOUND (naming the directory) when
  // it has neither tokenizer.json nor tokenizer.model; INVALID_ARGUMENT
  // naming the file and field for malformed or unsupported content.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_dir);

  virtual ~Tokenizer() = default;

  // Token ids of `text`. Text that is not valid UTF-8: byte-level BPE
  // tokenizers keep every byte (invalid bytes become byte tokens and split
  // the text there, see hf_tokenizer.h); other tokenizers see each invalid
  // sequence as U+FFFD, as Python would after bytes.decode(errors="replace").
  virtual absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                                      const EncodeOptions& options = {}) const = 0;

  // Text of `ids`. INVALID_ARGUMENT (naming the position) for an id that is
  // no token (outside [0, vocab_size()); Hugging Face silently drops them). Bytes that are not valid UTF-8 become U+FFFD, one per
  // maximal invalid subsequence, as Hugging Face does.
  virtual absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                             const DecodeOptions& options = {}) const = 0;

  // One past the largest id (model vocabulary and added tokens). Real files
  // have no holes below it; an id that names no token is an error in Decode.
  virtual int32_t vocab_size() const = 0;
  // The token string of `id` as stored in the vocabulary (byte-level tokens
  // in their mapped form, e.g. "Ġthe"); nullopt outside the vocabulary.
  virtual std::optional<std::string> IdToToken(int32_t id) const = 0;
  // The id of a token string (vocabulary or added token); nullopt if none.
  virtual std::optional<int32_t> TokenToId(absl::string_view token) const = 0;
  // True for special tokens (skipped by skip_special_tokens).
  virtual bool IsSpecial(int32_t id) const = 0;
  // True for byte-fallback tokens ("<0xAB>") whose text depends on the ids
  // after them: a run of them decodes to its UTF-8 text, or to one U+FFFD
  // per byte when the run is not valid UTF-8 (IncrementalDecoder holds text
  // back while the last id is one).
  virtual bool IsByteFallback(int32_t id) const { return false; }

  // From tokenizer_config.json (falling back to the model's own settings).
  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::optional<int32_t> eos_id() const { return eos_id_; }
  std::optional<int32_t> pad_id() const { return pad_id_; }
  // Every id that ends generation: generation_config.json's eos_token_id
  // (a number or a list) and the tokenizer's eos token, without repeats.
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  const GenerationDefaults& generation_defaults() const { return generation_defaults_; }
  // "tokenizer.json" or "tokenizer.model": the file the ids come from.
  const std::string& source() const { return source_; }

 protected:
  Tokenizer() = default;

 private:
  std::optional<int32_t> bos_id_;
  std::optional<int32_t> eos_id_;
  std::optional<int32_t> pad_id_;
  std::vector<int32_t> eos_ids_;
  GenerationDefaults generation_defaults_;
  std::string source_;
};

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_TOKENIZER_H_
