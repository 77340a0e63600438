// ShardPlan: which part of every named tensor one rank of a tensor-parallel
// engine holds (Megatron layout). Pure functions of the model config, the
// rank and the group size; no I/O.
//
//   column-parallel (rows of the HF [out][in] matrix are split):
//     q_proj (the rank's attention heads), k_proj / v_proj (its KV heads),
//     their biases, gate_proj / up_proj (its slice of the intermediate size)
//   row-parallel (columns split; the forward all-reduces the outputs):
//     o_proj (the rank's heads), down_proj (its intermediate slice)
//   vocab-parallel (rows split; the last rank is padded with zero rows):
//     embed_tokens, lm_head
//   replicated: the RMSNorm weights, q_norm / k_norm, o_proj's bias, MoE
//     routers (every rank routes every token the same way).
//   per head: gpt-oss's attention sinks.
// MoE experts are split like the dense MLP, on each expert's intermediate
// size (every rank holds every expert, 1/N of each): qwen3_moe's per-expert
// gate/up rows and down columns; gpt-oss's fused gate_up_proj
// [E][hidden][2I] (gate/up interleaved: columns 2 i0 .. 2 i1), its bias
// [E][2I] likewise, down_proj [E][I][hidden] (rows i0 .. i1 of each expert).
// The forward all-reduces the MoE output like a dense MLP's. gpt-oss's
// down_proj_bias [E][hidden] is added once: rank 0 holds it, the other
// ranks hold zeros (and contribute no checksum pieces for it).
//
// Heads: rank r holds attention heads [r H/N, (r+1) H/N). KV heads are split
// the same way when N divides them; when there are fewer KV heads than
// ranks (N a multiple of the KV heads), each rank holds the one KV head its
// attention heads use (replicated on N / kv_heads ranks). Requirements
// (else INVALID_ARGUMENT naming the numbers): N divides the attention heads
// and the intermediate size, N and the KV heads divide one another, and the
// vocabulary has at least N rows. A tensor without a rule (e.g. a new
// architecture's) is INVALID_ARGUMENT naming it, so nothing is silently
// replicated that should be split.
//
// Byte mapping: an update sends full tensors (every rank receives them and
// keeps its shard, as SGLang does); ForEachLocalRange maps a byte range of
// a full tensor's row-major data to the ranges of the rank's local tensor
// it covers. Checksums combine per-rank CRCs over the contiguous pieces of
// the full tensor each rank holds (HeldPieces).
//
// Thread-compatible (immutable after Create).
#ifndef COLO_ENGINE_TP_SHARD_PLAN_H_
#define COLO_ENGINE_TP_SHARD_PLAN_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model/model_config.h"

namespace colo {
namespace engine {

enum class ShardDim {
  kReplicated,  // the whole tensor
  kRows,        // rows [begin, begin + count) of dim 0 (then zero padding)
  // The tensor viewed as [outer][width] (width = `width` elements): every
  // row's elements [begin, begin + count).
  kColumns,
};

struct TensorShard {
  std::string name;
  std::vector<int64_t> full_shape;
  std::vector<int64_t> local_shape;
  ShardDim dim = ShardDim::kReplicated;
  int64_t begin = 0;  // first full row / column held
  int64_t count = 0;  // full rows / columns held (<= the local extent)
  int64_t width = 0;  // kColumns: elements per row of the [outer][width] view

  int64_t FullElements() const;
  int64_t LocalElements() const;
};

// A contiguous byte range [offset, offset + bytes) of a full tensor's
// row-major data that this rank holds, at `local_offset` in its tensor
// (in units of `element_bytes` given to the functions below).
struct HeldPiece {
  int64_t offset = 0;
  int64_t bytes = 0;
  int64_t local_offset = 0;
};

class ShardPlan {
 public:
  static absl::StatusOr<ShardPlan> Create(const ModelConfig& full, int rank, int size);

  int rank() const { return rank_; }
  int size() const { return size_; }
  const ModelConfig& full_config() const { return full_; }
  // The config of this rank's shard: its heads, KV heads, intermediate size,
  // and vocab_size = the rows of embedding / LM head it holds (padded).
  const ModelConfig& local_config() const { return local_; }
  int64_t vocab_begin() const { return vocab_begin_; }
  int first_head() const { return first_head_; }
  int first_kv_head() const { return first_kv_head_; }

  // The shard of tensor `name` (Hugging Face name). INVALID_ARGUMENT for a
  // name without a rule or one that is not a tensor of this architecture.
  absl::StatusOr<TensorShard> Shard(const std::string& name) const;

  // Calls fn(local_offset, offset_in_range, bytes) for every piece of the
  // local tensor covered by bytes [offset, offset + bytes) of the full
  // tensor, whose elements are `element_bytes` wide.
  static void ForEachLocalRange(
      const TensorShard& shard, int64_t element_bytes, int64_t offset, int64_t bytes,
      const std::function<void(int64_t local_offset, int64_t range_offset, int64_t n)>& fn);
  // The contiguous pieces of the full tensor this rank holds, in order.
  static std::vector<HeldPiece> HeldPieces(const TensorShard& shard, int64_t element_bytes);

 private:
  ShardPlan() = default;

  ModelConfig full_;
  ModelConfig local_;
  int rank_ = 0;
  int size_ = 1;
  int64_t vocab_begin_ = 0;
  int64_t vocab_count_ = 0;
  int first_head_ = 0;
  int first_kv_head_ = 0;
  int64_t first_intermediate_ = 0;
  int64_t first_expert_intermediate_ = 0;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_TP_SHARD_PLAN_H_
