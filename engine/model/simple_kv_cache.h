// SimpleKvCache: a minimal KV cache for drivers, tests and benchmarks that
// run TransformerModel without the kvcache/ bookkeeping. It allocates, from
// the TaggedPool `kv_cache` tag, a full pool and (when the model has sliding
// layers) an SWA pool of the same number of slots, plus a full_to_swa map
// that *reverses* slot order (so tests notice a forward pass that ignores the
// map). Slot 0..page_size-1 stay unused (the padding page convention).
//
// Sequences get contiguous slot ranges: AddSequence(capacity) returns the
// slots for positions 0..capacity-1. Not thread-safe.
#ifndef COLO_ENGINE_MODEL_SIMPLE_KV_CACHE_H_
#define COLO_ENGINE_MODEL_SIMPLE_KV_CACHE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/memory/tagged_pool.h"
#include "engine/model/forward.h"
#include "engine/model/model_config.h"

namespace colo {
namespace engine {

class SimpleKvCache {
 public:
  static constexpr int64_t kReservedSlots = 16;

  // RESOURCE_EXHAUSTED / FAILED_PRECONDITION from the pool.
  static absl::StatusOr<std::unique_ptr<SimpleKvCache>> Create(
      const ModelConfig& config, int64_t num_slots, TaggedPool* pool);
  ~SimpleKvCache();

  SimpleKvCache(const SimpleKvCache&) = delete;
  SimpleKvCache& operator=(const SimpleKvCache&) = delete;

  // RESOURCE_EXHAUSTED when fewer than `capacity` slots are left.
  absl::StatusOr<std::vector<int32_t>> AddSequence(int64_t capacity);
  // Forgets every sequence (slots are handed out again from the start).
  void Reset() { next_slot_ = kReservedSlots; }

  const KvCacheView& view() const { return view_; }

 private:
  SimpleKvCache(TaggedPool* pool, int64_t num_slots)
      : pool_(pool), num_slots_(num_slots) {}

  TaggedPool* const pool_;
  const int64_t num_slots_;
  int64_t next_slot_ = kReservedSlots;
  std::vector<void*> allocations_;
  std::vector<int32_t> full_to_swa_;
  KvCacheView view_;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_SIMPLE_KV_CACHE_H_
