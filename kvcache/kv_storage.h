// KvStorage: every byte of KV-cache memory, allocated from the engine's
// TaggedPool under the `kv_cache` tag: K and V of every layer (full layers
// sized for the full pool, sliding layers for the SWA pool), the full->SWA
// slot map and the request-to-token table. Layout: kvcache/kv_layout.h.
//
// There is deliberately no constructor taking raw memory: the only way to get
// storage is Create(options, pool), so no pool can bypass the tagged
// allocator (and escape Release(kv_cache), cf. the SWA memory-saver bug).
// The destructor frees every allocation back to the pool.
//
// Not thread-safe: confined to the scheduler thread. Pointers stay valid
// across Release/Resume of the tag (contents undefined after Resume).
#ifndef COLO_KVCACHE_KV_STORAGE_H_
#define COLO_KVCACHE_KV_STORAGE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/memory/tagged_pool.h"
#include "kvcache/kv_layout.h"

namespace colo::kvcache {

class KvStorage {
 public:
  struct Options {
    int32_t page_size = 1;
    std::vector<bool> layer_is_sliding;  // One entry per layer.
    int32_t kv_heads = 0;
    int32_t head_dim = 0;
    KvDtype dtype = KvDtype::kFloat32;
    int64_t num_full_slots = 0;  // Including the padding page.
    int64_t num_swa_slots = 0;   // 0 without sliding layers.
    int32_t max_requests = 0;    // Rows = max_requests + 1 (row 0 = padding).
    int32_t max_context_tokens = 0;
  };

  // RESOURCE_EXHAUSTED (from the pool) when the memory cannot be reserved;
  // INVALID_ARGUMENT for a sliding layer without SWA slots.
  static absl::StatusOr<std::unique_ptr<KvStorage>> Create(const Options& options,
                                                           engine::TaggedPool* pool);
  ~KvStorage();
  KvStorage(const KvStorage&) = delete;
  KvStorage& operator=(const KvStorage&) = delete;

  LayerKv GetLayerKv(int32_t layer) const { return layers_[layer]; }
  // Device addresses (host-accessible only on the CPU backend): for the
  // forward pass. The cache itself writes them through the methods below.
  int32_t* req_to_token() const { return req_to_token_; }
  int32_t* full_to_swa() const { return full_to_swa_; }  // nullptr without SWA.
  // True while the kv_cache tag is released (memory not accessible).
  bool IsReleased() const;

  // Table writes and reads go through the backend's synchronous copies, so
  // they work whether the tables live in host (CPU) or device (CUDA) memory.
  // A failed copy is returned and also kept as the sticky table_status():
  // the device tables are then stale and the engine must treat it as fatal.
  absl::Status WriteReqToToken(int32_t row, int32_t first, const int32_t* slots, int64_t n);
  absl::Status WriteFullToSwa(int64_t first_slot, const int32_t* values, int64_t n);
  absl::Status ReadReqToToken(int32_t row, int64_t n, std::vector<int32_t>* out) const;
  absl::Status ReadFullToSwa(int64_t first_slot, int64_t n, std::vector<int32_t>* out) const;
  // Zeroes row 0 of the request table (all entries -> padding slot 0).
  absl::Status ClearPaddingRow();
  const absl::Status& table_status() const { return table_status_; }
  // Bytes allocated from the kv_cache tag, split by purpose.
  int64_t bytes() const { return full_bytes_ + swa_bytes_ + table_bytes_; }
  int64_t full_pool_bytes() const { return full_bytes_; }
  int64_t swa_pool_bytes() const { return swa_bytes_; }
  int64_t table_bytes() const { return table_bytes_; }

 private:
  KvStorage(const Options& options, engine::TaggedPool* pool);
  absl::StatusOr<void*> Alloc(int64_t bytes, const std::string& name);

  const Options options_;
  engine::TaggedPool* const pool_;
  std::vector<void*> allocations_;
  std::vector<LayerKv> layers_;
  int32_t* req_to_token_ = nullptr;
  int32_t* full_to_swa_ = nullptr;
  int64_t full_bytes_ = 0;
  int64_t swa_bytes_ = 0;
  int64_t table_bytes_ = 0;
  absl::Status table_status_;
};

}  // namespace colo::kvcache

#endif  // COLO_KVCACHE_KV_STORAGE_H_
