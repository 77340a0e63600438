// A bounded, sharded cache from a pre-tokenized word to its token ids (what
// Hugging Face's BPE keeps per model): words seen again skip the merges.
//
// Thread-safe. Once full it stops inserting (no eviction), like Hugging
// Face's cache, so a stream of unique words cannot make it grow.
#ifndef COLO_ENGINE_TOKENIZER_WORD_CACHE_H_
#define COLO_ENGINE_TOKENIZER_WORD_CACHE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace colo {
namespace tokenizer {

class WordCache {
 public:
  // Words of `max_word_bytes` or more are never cached.
  explicit WordCache(size_t capacity = 100000, size_t max_word_bytes = 256);

  // Appends the cached ids of `word` to *out and returns true, or returns
  // false (and leaves *out alone) on a miss.
  bool Lookup(absl::string_view word, std::vector<int32_t>* out) const;
  void Insert(absl::string_view word, const int32_t* ids, size_t n);

  size_t size() const;

 private:
  static constexpr size_t kShards = 16;
  struct Shard {
    mutable absl::Mutex mu;
    absl::flat_hash_map<std::string, std::vector<int32_t>> map ABSL_GUARDED_BY(mu);
  };

  const size_t shard_capacity_;
  const size_t max_word_bytes_;
  mutable std::array<Shard, kShards> shards_;
};

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_WORD_CACHE_H_
