// Streaming detokenization: fed the ids of one sequence as they are
// generated, returns only text that later ids cannot change, never half a
// UTF-8 character. Same method as vLLM / SGLang / tokenizers' DecodeStream:
// decode a short window of ids ending at the last emitted position
// (prefix) and the window plus the new ids; the difference is new text once
// it does not end in U+FFFD (an incomplete character). Works with any
// Tokenizer: byte-level BPE and SentencePiece (whose decoders drop the
// leading space of the first token: both windows start at the same id, so
// the difference keeps it).
//
// With no context, the concatenation of everything returned (Append ...,
// then Finish) equals tokenizer.Decode(all ids). With context ids (e.g. the
// prompt), the window starts up to kContextIds ids into the context, so the
// first generated token decodes as it would after the prompt (SGLang's
// surr_offset), and the text is what the generated ids add after it.
//
// Byte-fallback tokens (SentencePiece-style "<0xAB>"): a run of them decodes
// to one U+FFFD per byte when it is not valid UTF-8 as a whole, so text is
// held back until an id that is not one arrives.
//
// Cost: each Append decodes two short windows. Text is held back at most
// kMaxPendingIds ids: past that (only garbage ids that never complete a
// character, or long runs of skipped special tokens) the held text is
// flushed as is, so a pathological stream costs O(n), not O(n^2); only then
// can the result differ from a full Decode (U+FFFD placement).
//
// Not thread-safe: one decoder per sequence, used by one thread at a time.
#ifndef COLO_ENGINE_TOKENIZER_INCREMENTAL_DECODER_H_
#define COLO_ENGINE_TOKENIZER_INCREMENTAL_DECODER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/tokenizer/tokenizer.h"

namespace colo {
namespace tokenizer {

class IncrementalDecoder {
 public:
  // How many trailing context ids are kept as the first window's prefix.
  static constexpr size_t kContextIds = 5;
  // How many ids text may be held back for (a character needs at most 4).
  static constexpr size_t kMaxPendingIds = 16;

  // `tokenizer` must outlive the decoder.
  explicit IncrementalDecoder(const Tokenizer* tokenizer, DecodeOptions options = {},
                              absl::Span<const int32_t> context = {});

  // Adds generated ids and returns the text they complete (often empty while
  // a multi-byte character is still incomplete). INVALID_ARGUMENT for an id
  // outside the vocabulary (the decoder is then unchanged).
  absl::StatusOr<std::string> Append(absl::Span<const int32_t> ids);
  absl::StatusOr<std::string> Append(int32_t id) { return Append(absl::MakeConstSpan(&id, 1)); }

  // Returns the text still held back (an incomplete character at the end
  // decodes to U+FFFD, as a full Decode would). Call once at the end.
  absl::StatusOr<std::string> Finish();

  // All text returned so far (for stop-string matching: search only the
  // tail that the last Append changed).
  const std::string& text() const { return text_; }
  // Number of generated ids appended so far.
  size_t num_ids() const { return ids_.size() - context_size_; }

 private:
  // Decodes ids_[prefix_offset_:] against ids_[prefix_offset_:read_offset_].
  absl::StatusOr<std::string> Step(bool final);
  // The last decoded new id is a byte-fallback token: a later id may still
  // change the text of its run.
  bool EndsInByteRun() const;

  const Tokenizer* const tokenizer_;
  const DecodeOptions options_;
  std::vector<int32_t> ids_;  // kept context tail + generated ids
  size_t context_size_ = 0;
  size_t prefix_offset_ = 0;
  size_t read_offset_ = 0;
  std::string prefix_text_;  // Decode(ids_[prefix_offset_:read_offset_])
  std::string text_;
};

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_INCREMENTAL_DECODER_H_
