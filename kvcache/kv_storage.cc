#include "kvcache/kv_storage.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "proto/logging/logging.h"
#include "proto/status/status_macros.h"

namespace colo::kvcache {

KvStorage::KvStorage(const Options& options, engine::TaggedPool* pool)
    : options_(options), pool_(pool) {}

absl::StatusOr<void*> KvStorage::Alloc(int64_t bytes, const std::string& name) {
  ASSIGN_OR_RETURN(void* ptr, pool_->Allocate(engine::MemoryTag::kKvCache,
                                              static_cast<size_t>(bytes), name));
  allocations_.push_back(ptr);
  return ptr;
}

absl::StatusOr<std::unique_ptr<KvStorage>> KvStorage::Create(const Options& options,
                                                             engine::TaggedPool* pool) {
  if (pool == nullptr) return absl::InvalidArgumentError("KvStorage: null TaggedPool");
  std::unique_ptr<KvStorage> s(new KvStorage(options, pool));
  const int64_t slot_bytes = static_cast<int64_t>(options.kv_heads) * options.head_dim *
                             static_cast<int64_t>(KvDtypeBytes(options.dtype));
  for (size_t l = 0; l < options.layer_is_sliding.size(); ++l) {
    const bool sliding = options.layer_is_sliding[l];
    const int64_t slots = sliding ? options.num_swa_slots : options.num_full_slots;
    if (slots <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "KvStorage: layer ", l, (sliding ? " (sliding)" : " (full)"), " has no slots"));
    }
    LayerKv kv;
    kv.num_slots = slots;
    kv.num_kv_heads = options.kv_heads;
    kv.head_dim = options.head_dim;
    kv.dtype = options.dtype;
    kv.sliding = sliding;
    const std::string pool_name = sliding ? "swa" : "full";
    ASSIGN_OR_RETURN(kv.k, s->Alloc(slots * slot_bytes, absl::StrCat("kv.", pool_name, ".k.", l)));
    ASSIGN_OR_RETURN(kv.v, s->Alloc(slots * slot_bytes, absl::StrCat("kv.", pool_name, ".v.", l)));
    (sliding ? s->swa_bytes_ : s->full_bytes_) += 2 * slots * slot_bytes;
    s->layers_.push_back(kv);
  }
  const int64_t table = (static_cast<int64_t>(options.max_requests) + 1) *
                        options.max_context_tokens * static_cast<int64_t>(sizeof(int32_t));
  ASSIGN_OR_RETURN(void* rt, s->Alloc(table, "kv.req_to_token"));
  s->req_to_token_ = static_cast<int32_t*>(rt);
  s->table_bytes_ += table;
  if (options.num_swa_slots > 0) {
    const int64_t map_bytes = options.num_full_slots * static_cast<int64_t>(sizeof(int32_t));
    ASSIGN_OR_RETURN(void* m, s->Alloc(map_bytes, "kv.full_to_swa"));
    s->full_to_swa_ = static_cast<int32_t*>(m);
    s->table_bytes_ += map_bytes;
  }
  RETURN_IF_ERROR(s->ClearPaddingRow());
  return s;
}

KvStorage::~KvStorage() {
  for (void* ptr : allocations_) {
    absl::Status status = pool_->Free(ptr);
    if (!status.ok()) COLO_LOG(ERROR) << "KvStorage: freeing kv_cache memory: " << status;
  }
}

bool KvStorage::IsReleased() const { return pool_->IsReleased(engine::MemoryTag::kKvCache); }

absl::Status KvStorage::WriteReqToToken(int32_t row, int32_t first, const int32_t* slots,
                                        int64_t n) {
  if (n == 0) return absl::OkStatus();
  int32_t* dst = req_to_token_ + static_cast<int64_t>(row) * options_.max_context_tokens + first;
  absl::Status s = pool_->backend()->CopyToDevice(dst, slots, n * sizeof(int32_t));
  if (!s.ok() && table_status_.ok()) table_status_ = s;
  return s;
}

absl::Status KvStorage::WriteFullToSwa(int64_t first_slot, const int32_t* values, int64_t n) {
  if (n == 0 || full_to_swa_ == nullptr) return absl::OkStatus();
  absl::Status s =
      pool_->backend()->CopyToDevice(full_to_swa_ + first_slot, values, n * sizeof(int32_t));
  if (!s.ok() && table_status_.ok()) table_status_ = s;
  return s;
}

absl::Status KvStorage::ReadReqToToken(int32_t row, int64_t n, std::vector<int32_t>* out) const {
  out->resize(n);
  if (n == 0) return absl::OkStatus();
  return pool_->backend()->CopyToHost(
      out->data(), req_to_token_ + static_cast<int64_t>(row) * options_.max_context_tokens,
      n * sizeof(int32_t));
}

absl::Status KvStorage::ReadFullToSwa(int64_t first_slot, int64_t n,
                                      std::vector<int32_t>* out) const {
  out->resize(n);
  if (n == 0 || full_to_swa_ == nullptr) return absl::OkStatus();
  return pool_->backend()->CopyToHost(out->data(), full_to_swa_ + first_slot,
                                      n * sizeof(int32_t));
}

absl::Status KvStorage::ClearPaddingRow() {
  if (IsReleased()) return absl::OkStatus();
  std::vector<int32_t> zeros(options_.max_context_tokens, 0);
  return WriteReqToToken(0, 0, zeros.data(), static_cast<int64_t>(zeros.size()));
}

}  // namespace colo::kvcache
