// Index math of the CUDA attention kernels (attention.cu, kv_write.cu), as
// COLO_HD functions the CPU tests check (attention_plan_test.cc), plus the
// host-side planning of a step (tiles, splits, graph buckets).
//
// Paged KV (kvcache/kv_layout.h): a request's position p lives at full slot
//   pages[p / page_size] * page_size + p % page_size
// where `pages` is the request's list of full-pool pages (the live part of
// its req_to_token row: ceil(kv_len / page_size) entries). A sliding-window
// layer reads slot full_to_swa[full slot] of its SWA pool; a negative value
// means "not mapped" and the kernels neither read nor write it (padded rows
// of a CUDA-graph batch point at the padding page, whose SWA entry may be
// unmapped).
//
// Rows: one attention block handles up to kAttnRows (query token, query
// head) rows that share one KV head (GQA), so every K/V tile it loads serves
// all of them. MakeRowLayout splits a KV head's query heads into groups of
// at most kAttnRows heads and packs tokens_per_block consecutive tokens of
// one request with those heads. Row r of a block is token r / heads, head
// r % heads (heads = the group's head count).
//
// Keys: a row at position q attends keys k with WindowStart(q) <= k <= q.
// A block of consecutive positions [q0, q1] loads keys [WindowStart(q0), q1]
// in tiles of kAttnKeyTile and masks per row. Decode splits that range in
// num_splits chunks (whole key tiles each); each split writes its partial
// (max m, sum l of exp(s - m), unnormalised acc) and a merge combines them:
//   M = max(m_i..., sink), L = sum_i l_i exp(m_i - M) + exp(sink - M),
//   out = sum_i acc_i exp(m_i - M) / L,
// where the sink term (a learned per-head logit, GPT-OSS) is present only
// when the layer has sinks. A split with no keys has m = -inf, l = 0 and
// contributes nothing; with no keys at all the output is 0.
#ifndef COLO_KERNELS_CUDA_ATTENTION_PLAN_H_
#define COLO_KERNELS_CUDA_ATTENTION_PLAN_H_

#include <math.h>

#include <cstdint>
#include <vector>

#include "kernels/cuda/hd.h"

namespace colo::kernels::cuda {

inline constexpr int kAttnWarps = 4;
inline constexpr int kAttnRowsPerWarp = 4;
inline constexpr int kAttnRows = kAttnWarps * kAttnRowsPerWarp;  // 16
inline constexpr int kAttnThreads = kAttnWarps * 32;
inline constexpr int kAttnKeyTile = 32;  // one key per lane
inline constexpr int kAttnMaxHeadDim = 256;
inline constexpr int kMaxDecodeSplits = 32;

// Full-pool slot of `position` of a request with page list `pages`.
COLO_HD inline int32_t SlotOfPosition(const int32_t* pages, int32_t page_size,
                                      int32_t position) {
  return pages[position / page_size] * page_size + position % page_size;
}

// The slot a layer reads or writes: the full slot, or its SWA slot for a
// sliding layer (full_to_swa != nullptr). Negative = unmapped.
COLO_HD inline int32_t LayerSlot(int32_t full_slot, const int32_t* full_to_swa) {
  if (full_slot < 0) return -1;
  return full_to_swa != nullptr ? full_to_swa[full_slot] : full_slot;
}

// KV head of query head `head` (GQA: consecutive query heads share one).
COLO_HD inline int KvHeadOf(int head, int num_heads, int num_kv_heads) {
  return head / (num_heads / num_kv_heads);
}

// First key position a query at `position` attends (window 0 = full).
COLO_HD inline int32_t WindowStart(int32_t position, int32_t window) {
  if (window <= 0) return 0;
  const int32_t lo = position - window + 1;
  return lo < 0 ? 0 : lo;
}

COLO_HD inline bool KeyVisible(int32_t query_pos, int32_t key_pos, int32_t window) {
  return key_pos <= query_pos && key_pos >= WindowStart(query_pos, window);
}

struct KeyRange {
  int32_t begin = 0;
  int32_t end = 0;  // exclusive
  COLO_HD int32_t size() const { return end > begin ? end - begin : 0; }
};

// Keys the queries at positions first_pos..last_pos (consecutive) attend.
COLO_HD inline KeyRange BlockKeyRange(int32_t first_pos, int32_t last_pos, int32_t window) {
  KeyRange r;
  r.begin = WindowStart(first_pos, window);
  r.end = last_pos + 1;
  return r;
}

// Split `split` of `num_splits` of `range`: chunks of whole key tiles
// (ceil(size / num_splits) rounded up to kAttnKeyTile); trailing splits may
// be empty (begin == end).
COLO_HD inline KeyRange SplitKeyRange(KeyRange range, int32_t num_splits, int32_t split) {
  const int32_t n = range.size();
  int32_t chunk = (n + num_splits - 1) / num_splits;
  chunk = (chunk + kAttnKeyTile - 1) / kAttnKeyTile * kAttnKeyTile;
  KeyRange r;
  const int64_t b = static_cast<int64_t>(range.begin) + static_cast<int64_t>(split) * chunk;
  const int64_t e = b + chunk;
  r.begin = b < range.end ? static_cast<int32_t>(b) : range.end;
  r.end = e < range.end ? static_cast<int32_t>(e) : range.end;
  if (n == 0) r.begin = r.end = range.end;
  return r;
}

// How a block's rows are laid out (see the file comment).
struct RowLayout {
  int32_t heads_per_block = 1;   // query heads of one group
  int32_t tokens_per_block = 1;  // tokens of one prefill tile
  int32_t head_groups = 1;       // groups per KV head
};

COLO_HD inline RowLayout MakeRowLayout(int num_heads, int num_kv_heads) {
  RowLayout l;
  const int g = num_heads / num_kv_heads;
  l.heads_per_block = g < kAttnRows ? g : kAttnRows;
  l.head_groups = (g + l.heads_per_block - 1) / l.heads_per_block;
  l.tokens_per_block = kAttnRows / l.heads_per_block;
  if (l.tokens_per_block < 1) l.tokens_per_block = 1;
  return l;
}

// Query heads [*first, *first + *count) of head group `group` of KV head
// `kv_head`.
COLO_HD inline void HeadGroupOf(const RowLayout& l, int num_heads, int num_kv_heads,
                                int kv_head, int group, int* first, int* count) {
  const int g = num_heads / num_kv_heads;
  const int begin = group * l.heads_per_block;
  const int rest = g - begin;
  *first = kv_head * g + begin;
  *count = rest < l.heads_per_block ? (rest > 0 ? rest : 0) : l.heads_per_block;
}

// exp(m - top), 0 for an empty partial (m = -inf).
COLO_HD inline float ScaledExp(float m, float top) {
  return m == -INFINITY ? 0.0f : expf(m - top);
}

// Merge of n partials (m[i], l[i]) with an optional sink logit: the common
// maximum M and denominator L (see the file comment); the weight of partial
// i's acc is ScaledExp(m[i], M) / L (0 when L == 0).
struct MergeScale {
  float top = -INFINITY;    // M
  float denominator = 0.0f;  // L
};

COLO_HD inline MergeScale MergePartials(const float* m, const float* l, int n, int stride,
                                        bool has_sink, float sink) {
  MergeScale s;
  for (int i = 0; i < n; ++i) s.top = m[i * stride] > s.top ? m[i * stride] : s.top;
  if (has_sink && sink > s.top) s.top = sink;
  if (s.top == -INFINITY) return s;
  for (int i = 0; i < n; ++i) s.denominator += l[i * stride] * ScaledExp(m[i * stride], s.top);
  if (has_sink) s.denominator += expf(sink - s.top);
  return s;
}

COLO_HD inline float MergeWeight(const MergeScale& s, float m) {
  return s.denominator > 0.0f ? ScaledExp(m, s.top) / s.denominator : 0.0f;
}

// A step's tokens and their requests' page tables (device pointers in the
// kernels; host pointers in the CPU tests). Token t belongs to request
// token_req[t] and sits at positions[t]; request r's pages are
// pages[req_page_begin[r] .. req_page_begin[r + 1]).
struct PagedBatch {
  int32_t num_tokens = 0;
  const int32_t* positions = nullptr;
  const int32_t* token_req = nullptr;
  const int32_t* req_page_begin = nullptr;
  const int32_t* pages = nullptr;
  int32_t page_size = 1;
  // Sliding-window layers: full slot -> SWA slot; nullptr for full layers.
  const int32_t* full_to_swa = nullptr;
};

// The layer slot of position `position` of request `req` (negative:
// unmapped).
COLO_HD inline int32_t RequestSlot(const PagedBatch& b, int32_t req, int32_t position) {
  return LayerSlot(SlotOfPosition(b.pages + b.req_page_begin[req], b.page_size, position),
                   b.full_to_swa);
}

// The layer slot batch token t writes its own K/V to.
COLO_HD inline int32_t TokenSlot(const PagedBatch& b, int32_t t) {
  return RequestSlot(b, b.token_req[t], b.positions[t]);
}

// Shared memory of one attention block for head_dim d: Q of kAttnRows rows,
// a K tile padded to d + 1 floats per key (conflict-free column reads for
// even d), a V tile, and the tile's slots.
COLO_HD inline size_t AttentionSmemBytes(int d) {
  return (static_cast<size_t>(kAttnRows) * d + static_cast<size_t>(kAttnKeyTile) * (d + 1) +
          static_cast<size_t>(kAttnKeyTile) * d) *
             sizeof(float) +
         kAttnKeyTile * sizeof(int32_t);
}

// Floats of the split-K decode workspace: m and l of every (item, head,
// split) and their unnormalised outputs; 0 without splits.
COLO_HD inline size_t DecodeWorkspaceFloats(int32_t items, int32_t splits, int num_heads,
                                            int head_dim) {
  if (splits <= 1) return 0;
  return static_cast<size_t>(items) * num_heads * splits * (2 + static_cast<size_t>(head_dim));
}

// Number of whole pages holding `positions` positions.
COLO_HD inline int32_t PageCount(int32_t positions, int32_t page_size) {
  return (positions + page_size - 1) / page_size;
}

// ---------------------------------------------------------------------------
// Host-side planning of a step.

// A prefill/extend tile: `num_tokens` consecutive tokens of request `req`
// starting at batch token `token_begin`.
struct PrefillTile {
  int32_t req = 0;
  int32_t token_begin = 0;
  int32_t num_tokens = 0;
};

// Tiles covering every token of the requests with more than one new token
// (request r's tokens are batch tokens [token_begin[r], token_begin[r] +
// new_tokens[r])), tokens_per_tile per tile. Requests with exactly one new
// token are decode requests and get no tile (see DecodeRequests).
std::vector<PrefillTile> PlanPrefillTiles(const std::vector<int32_t>& token_begin,
                                          const std::vector<int32_t>& new_tokens,
                                          int32_t tokens_per_tile);

// Indices of the requests with exactly one new token.
std::vector<int32_t> DecodeRequests(const std::vector<int32_t>& new_tokens);

// Split-K factor for `blocks` decode blocks (requests x KV heads x head
// groups) over at most `max_keys` keys each, on a GPU with `num_sms`
// multiprocessors: enough splits for about two blocks per multiprocessor,
// at least 2 key tiles per split, at most kMaxDecodeSplits; 1 when the
// blocks fill the GPU already.
int32_t ChooseDecodeSplits(int64_t blocks, int64_t max_keys, int num_sms);

// The largest DecodeWorkspaceFloats any batch of 1..max_items decode
// requests needs when splits are chosen by ChooseDecodeSplits (for any key
// count).
size_t MaxDecodeWorkspaceFloats(int32_t max_items, int num_heads, int num_kv_heads,
                                int head_dim, int num_sms);

// Batch sizes decode graphs are captured for, up to max_requests: 1, 2, 4,
// 8, then steps of 8 to 64, then steps of 16 to 128, then steps of 32; the
// last is max_requests itself.
std::vector<int32_t> DecodeGraphBuckets(int32_t max_requests);

// The smallest bucket >= n, or -1 when n exceeds the largest.
int32_t BucketFor(int32_t n, const std::vector<int32_t>& buckets);

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_ATTENTION_PLAN_H_
