#include "engine/model/simple_kv_cache.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "proto/logging/logging.h"

namespace colo {
namespace engine {

absl::StatusOr<std::unique_ptr<SimpleKvCache>> SimpleKvCache::Create(
    const ModelConfig& config, int64_t num_slots, TaggedPool* pool) {
  if (pool == nullptr || num_slots <= kReservedSlots || num_slots > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SimpleKvCache needs a pool and more than ", kReservedSlots, " slots, got ",
        num_slots));
  }
  std::unique_ptr<SimpleKvCache> cache(new SimpleKvCache(pool, num_slots));
  const size_t bytes = static_cast<size_t>(num_slots) * config.KvSize() * sizeof(float);
  for (int i = 0; i < config.num_layers; ++i) {
    kvcache::LayerKv L;
    L.num_slots = num_slots;
    L.num_kv_heads = config.num_kv_heads;
    L.head_dim = config.head_dim;
    L.sliding = config.layer_types[i] == LayerType::kSlidingAttention;
    for (void** dst : {&L.k, &L.v}) {
      absl::StatusOr<void*> p = pool->Allocate(MemoryTag::kKvCache, bytes,
                                               absl::StrCat("kv_layer_", i));
      if (!p.ok()) return p.status();
      cache->allocations_.push_back(*p);
      *dst = *p;
    }
    cache->view_.layers.push_back(L);
  }
  if (config.HasSlidingLayers()) {
    cache->full_to_swa_.resize(num_slots);
    for (int64_t s = 0; s < num_slots; ++s) {
      cache->full_to_swa_[s] = static_cast<int32_t>(num_slots - 1 - s);
    }
    cache->view_.full_to_swa = cache->full_to_swa_.data();
    cache->view_.full_to_swa_size = num_slots;
  }
  return cache;
}

SimpleKvCache::~SimpleKvCache() {
  for (void* p : allocations_) {
    absl::Status s = pool_->Free(p);
    if (!s.ok()) COLO_LOG(ERROR) << "freeing KV: " << s;
  }
}

absl::StatusOr<std::vector<int32_t>> SimpleKvCache::AddSequence(int64_t capacity) {
  if (capacity <= 0 || next_slot_ + capacity > num_slots_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "SimpleKvCache: ", capacity, " slots requested, ", num_slots_ - next_slot_,
        " left"));
  }
  std::vector<int32_t> slots(capacity);
  for (int64_t i = 0; i < capacity; ++i) slots[i] = static_cast<int32_t>(next_slot_ + i);
  next_slot_ += capacity;
  return slots;
}

}  // namespace engine
}  // namespace colo
