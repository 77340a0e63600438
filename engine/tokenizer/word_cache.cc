#include "engine/tokenizer/word_cache.h"

#include "absl/hash/hash.h"

namespace colo {
namespace tokenizer {

WordCache::WordCache(size_t capacity, size_t max_word_bytes)
    : shard_capacity_((capacity + kShards - 1) / kShards), max_word_bytes_(max_word_bytes) {}

bool WordCache::Lookup(absl::string_view word, std::vector<int32_t>* out) const {
  if (word.size() >= max_word_bytes_) return false;
  const Shard& shard = shards_[absl::Hash<absl::string_view>()(word) % kShards];
  absl::ReaderMutexLock lock(&shard.mu);
  auto it = shard.map.find(word);
  if (it == shard.map.end()) return false;
  out->insert(out->end(), it->second.begin(), it->second.end());
  return true;
}

void WordCache::Insert(absl::string_view word, const int32_t* ids, size_t n) {
  if (word.size() >= max_word_bytes_) return;
  Shard& shard = shards_[absl::Hash<absl::string_view>()(word) % kShards];
  absl::MutexLock lock(&shard.mu);
  if (shard.map.size() >= shard_capacity_) return;
  shard.map.try_emplace(std::string(word), ids, ids + n);
}

size_t WordCache::size() const {
  size_t total = 0;
  for (const Shard& shard : shards_) {
    absl::ReaderMutexLock lock(&shard.mu);
    total += shard.map.size();
  }
  return total;
}

}  // namespace tokenizer
}  // namespace colo
