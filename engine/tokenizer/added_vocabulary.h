// Added tokens (tokenizer.json "added_tokens"): strings matched in the text
// before normalization and pre-tokenization and emitted as single ids, with
// tokenizers' semantics: leftmost-longest matching, tokens with
// normalized=false matched on the raw text first, tokens with
// normalized=true then matched on the normalized remainder, and the
// single_word / lstrip / rstrip options.
//
// Thread-safe (immutable after construction).
#ifndef COLO_ENGINE_TOKENIZER_ADDED_VOCABULARY_H_
#define COLO_ENGINE_TOKENIZER_ADDED_VOCABULARY_H_

#include <bitset>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/normalizer.h"

namespace colo {
namespace tokenizer {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
};

// A part of the input: either an added token (id >= 0) or text to be
// pre-tokenized (id < 0, already normalized).
struct Segment {
  std::string text;
  int32_t id = -1;
  bool at_origin = false;  // starts at offset 0 of the original input
};

class AddedVocabulary {
 public:
  // `normalizer` (may be null) normalizes the patterns of normalized tokens
  // and the text between raw matches; it must outlive this object.
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);

  // Splits valid UTF-8 `text` into segments, normalizing the non-token parts.
  // Empty text segments are dropped.
  void Split(absl::string_view text, bool at_origin, std::vector<Segment>* out) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }
  // nullptr when `id` is not an added token.
  const AddedToken* Find(int32_t id) const;
  const AddedToken* Find(absl::string_view content) const;

 private:
  // A byte trie with leftmost-longest search.
  class Matcher {
   public:
    void Add(absl::string_view pattern, int32_t token_index);
    bool empty() const { return terminal_.empty(); }
    // The leftmost-longest match at or after `from`: sets *begin, *end and
    // returns the token index, or -1.
    int32_t Find(absl::string_view text, size_t from, size_t* begin, size_t* end) const;

   private:
    std::bitset<256> first_bytes_;
    absl::flat_hash_map<uint64_t, int32_t> edges_;    // (node << 8 | byte) -> node
    absl::flat_hash_map<int32_t, int32_t> terminal_;  // node -> token index
    int32_t nodes_ = 1;                               // node 0 is the root
  };

  // tokenizers' find_matches + split: appends the parts of `text`.
  void SplitWith(const Matcher& matcher, absl::string_view text, bool at_origin,
                 bool normalize_rest, std::vector<Segment>* out) const;

  const std::vector<AddedToken> tokens_;
  const Normalizer* const normalizer_;
  Matcher raw_;
  Matcher normalized_;
  absl::flat_hash_map<int32_t, size_t> by_id_;
  absl::flat_hash_map<std::string, size_t> by_content_;
};

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_ADDED_VOCABULARY_H_
