// The BPE model of a Hugging Face tokenizer.json ("model": {"type": "BPE"}):
// vocabulary, ranked merges, unk / byte_fallback / fuse_unk /
// continuing_subword_prefix / end_of_word_suffix / ignore_merges, applied to
// one pre-tokenized word at a time exactly as tokenizers' BPE::tokenize does
// (lowest-rank pair first, leftmost among equals). Words are cached.
//
// Thread-safe after construction.
#ifndef COLO_ENGINE_TOKENIZER_BPE_MODEL_H_
#define COLO_ENGINE_TOKENIZER_BPE_MODEL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/json_fields.h"
#include "engine/tokenizer/word_cache.h"

namespace colo {
namespace tokenizer {

struct BpeOptions {
  std::optional<std::string> unk_token;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
};

class BpeModel {
 public:
  // `vocab`: token -> id; `merges`: pairs in rank order, each pair's
  // concatenation (minus the continuing prefix of the right part) must be in
  // the vocabulary. INVALID_ARGUMENT naming the merge ("merges[3]: ...")
  // otherwise.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(
      std::vector<std::pair<std::string, int32_t>> vocab,
      const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options);

  // From tokenizer.json's "model" object; `where` names it in errors.
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const Json& model,
                                                            absl::string_view where);

  // Appends the ids of `word` (one pre-tokenized piece, valid UTF-8).
  void Tokenize(absl::string_view word, std::vector<int32_t>* out) const;

  std::optional<int32_t> TokenToId(absl::string_view token) const;
  // nullptr when `id` is not in the vocabulary.
  const std::string* IdToToken(int32_t id) const;
  // One past the largest id of the vocabulary.
  int32_t id_limit() const { return static_cast<int32_t>(id_to_token_.size()); }
  size_t vocab_entries() const { return vocab_.size(); }
  const BpeOptions& options() const { return options_; }

 private:
  explicit BpeModel(BpeOptions options);

  // Symbols of `word` before merging, as tokenizers' merge_word builds them.
  void InitialSymbols(absl::string_view word, std::vector<int32_t>* ids) const;
  void MergeAll(std::vector<int32_t>* ids) const;

  struct MergeInfo {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  const BpeOptions options_;
  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  absl::flat_hash_map<uint64_t, MergeInfo> merges_;
  std::optional<int32_t> unk_id_;
  // Ids of "<0x00>".."<0xFF>" for byte_fallback (-1 where missing).
  std::vector<int32_t> byte_ids_;
  mutable WordCache cache_;
};

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_BPE_MODEL_H_
