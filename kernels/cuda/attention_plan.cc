#include "kernels/cuda/attention_plan.h"

#include <algorithm>

namespace colo::kernels::cuda {

std::vector<PrefillTile> PlanPrefillTiles(const std::vector<int32_t>& token_begin,
                                          const std::vector<int32_t>& new_tokens,
                                          int32_t tokens_per_tile) {
  std::vector<PrefillTile> tiles;
  const int32_t per = std::max<int32_t>(1, tokens_per_tile);
  for (size_t r = 0; r < new_tokens.size() && r < token_begin.size(); ++r) {
    if (new_tokens[r] <= 1) continue;
    for (int32_t t = 0; t < new_tokens[r]; t += per) {
      PrefillTile tile;
      tile.req = static_cast<int32_t>(r);
      tile.token_begin = token_begin[r] + t;
      tile.num_tokens = std::min(per, new_tokens[r] - t);
      tiles.push_back(tile);
    }
  }
  return tiles;
}

std::vector<int32_t> DecodeRequests(const std::vector<int32_t>& new_tokens) {
  std::vector<int32_t> out;
  for (size_t r = 0; r < new_tokens.size(); ++r) {
    if (new_tokens[r] == 1) out.push_back(static_cast<int32_t>(r));
  }
  return out;
}

int32_t ChooseDecodeSplits(int64_t blocks, int64_t max_keys, int num_sms) {
  if (blocks <= 0 || max_keys <= 0 || num_sms <= 0) return 1;
  const int64_t target = int64_t{2} * num_sms;
  if (blocks >= target) return 1;
  int64_t splits = (target + blocks - 1) / blocks;
  // At least two key tiles per split.
  const int64_t by_keys = std::max<int64_t>(1, max_keys / (2 * kAttnKeyTile));
  splits = std::min({splits, by_keys, int64_t{kMaxDecodeSplits}});
  return static_cast<int32_t>(std::max<int64_t>(1, splits));
}

size_t MaxDecodeWorkspaceFloats(int32_t max_items, int num_heads, int num_kv_heads,
                                int head_dim, int num_sms) {
  const RowLayout l = MakeRowLayout(num_heads, num_kv_heads);
  size_t most = 0;
  for (int32_t items = 1; items <= max_items; ++items) {
    const int64_t blocks = int64_t{items} * num_kv_heads * l.head_groups;
    const int32_t splits = ChooseDecodeSplits(blocks, int64_t{1} << 30, num_sms);
    most = std::max(most, DecodeWorkspaceFloats(items, splits, num_heads, head_dim));
  }
  return most;
}

std::vector<int32_t> DecodeGraphBuckets(int32_t max_requests) {
  std::vector<int32_t> b;
  if (max_requests <= 0) return b;
  for (int32_t n = 1;;) {
    if (n >= max_requests) break;
    b.push_back(n);
    if (n < 8) {
      n *= 2;
    } else if (n < 64) {
      n += 8;
    } else if (n < 128) {
      n += 16;
    } else {
      n += 32;
    }
  }
  b.push_back(max_requests);
  return b;
}

int32_t BucketFor(int32_t n, const std::vector<int32_t>& buckets) {
  for (int32_t b : buckets) {
    if (b >= n) return b;
  }
  return -1;
}

}  // namespace colo::kernels::cuda
