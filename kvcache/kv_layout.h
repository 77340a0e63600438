// KV storage layout contract shared by the KV cache (which owns the memory)
// and the model forward pass (which reads and writes it).
//
// Units and shapes
// - A *slot* holds one token's K and V for one layer. Slots are int32 indices.
// - Per layer, K and V are each a dense array [num_slots][num_kv_heads][head_dim]
//   of `dtype` (kFloat32 on the CPU path; the CUDA path also uses kFloat16,
//   kBFloat16 and kFp8E4M3). The
//   byte offset of (slot, head, dim) is
//     ((slot * num_kv_heads + head) * head_dim + dim) * KvDtypeBytes(dtype).
// - A token's KV lives at its slot index. Page p covers slots
//   [p * page_size, (p + 1) * page_size). Pages are the unit of allocation and
//   freeing; a request's position i lives at slot
//     page_of_position[i / page_size] * page_size + i % page_size.
// - Page 0 of every pool (slots 0 .. page_size-1) is the *padding page*: it is
//   never handed out, so padded batch entries (CUDA-graph padding, the dummy
//   request row 0) can point at slot 0 and write garbage harmlessly.
//
// Full vs sliding-window layers
// - Full-attention layers index the full pool with the full slot taken from
//   the request-to-token table: req_to_token[row][position] -> full slot.
// - Sliding-window layers index the (separately sized) SWA pool through
//   full_to_swa[full_slot] -> SWA slot, which is -1 when that token's SWA slot
//   was freed because it fell out of the window (or was never allocated). A
//   forward pass must only read SWA KV for positions inside the window, and
//   those are guaranteed to be mapped (!= -1) while the request runs.
// - In a model without sliding layers there is no SWA pool and no mapping.
//
// Request-to-token table
// - int32 [max_requests + 1][max_context_tokens]; row 0 is the dummy padding
//   row (all zeros = padding slot). Entries beyond a request's allocated
//   length are unspecified.
//
// All of this storage (K and V of every layer of both pools, the mapping and
// the request table) is allocated from the engine's TaggedPool under the
// `kv_cache` tag; after Release(kv_cache) the pointers stay valid but must not
// be dereferenced until Resume(kv_cache) and KvCacheManager::OnResumed().
#ifndef COLO_KVCACHE_KV_LAYOUT_H_
#define COLO_KVCACHE_KV_LAYOUT_H_

#include <cstddef>
#include <cstdint>

namespace colo::kvcache {

// Element type of the K and V arrays.
// The numbering matches kernels::cuda::DType.
enum class KvDtype : int {
  kFloat32 = 0,
  kFloat16 = 1,   // CUDA path only.
  kBFloat16 = 2,  // CUDA path only.
  kFp8E4M3 = 3,   // CUDA path only (scale 1, saturating).
};

inline constexpr size_t KvDtypeBytes(KvDtype dtype) {
  return dtype == KvDtype::kFloat32 ? 4 : dtype == KvDtype::kFp8E4M3 ? 1 : 2;
}

// The index of the never-allocated padding page in every pool.
inline constexpr int32_t kPaddingPage = 0;
// Value of full_to_swa[] for a full slot that has no SWA slot.
inline constexpr int32_t kNoSwaSlot = -1;

// Where one layer's K and V live. Both point at arrays of
// [num_slots][num_kv_heads][head_dim] elements of `dtype`.
struct LayerKv {
  void* k = nullptr;
  void* v = nullptr;
  // Number of slots of the pool this layer indexes (full or SWA pool).
  int64_t num_slots = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  KvDtype dtype = KvDtype::kFloat32;
  // True for a sliding-window layer: index `k`/`v` with full_to_swa[full_slot].
  bool sliding = false;

  // Elements per slot (num_kv_heads * head_dim).
  int64_t SlotElements() const {
    return static_cast<int64_t>(num_kv_heads) * head_dim;
  }
  // Typed views for the float32 CPU path.
  float* KFloat() const { return static_cast<float*>(k); }
  float* VFloat() const { return static_cast<float*>(v); }
};

}  // namespace colo::kvcache

#endif  // COLO_KVCACHE_KV_LAYOUT_H_
