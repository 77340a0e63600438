#include "engine/tp/shard_plan.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/model/model_weights.h"

namespace colo {
namespace engine {
namespace {

int64_t Product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

int64_t TensorShard::FullElements() const { return Product(full_shape); }
int64_t TensorShard::LocalElements() const { return Product(local_shape); }

absl::StatusOr<ShardPlan> ShardPlan::Create(const ModelConfig& full, int rank, int size) {
  if (size < 1 || rank < 0 || rank >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor-parallel rank ", rank, " is outside [0, tp_size=", size, ")"));
  }
  const int heads = full.num_heads, kv = full.num_kv_heads;
  if (heads % size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tp_size ", size, " does not divide the model's ", heads, " attention heads"));
  }
  if (kv % size != 0 && size % kv != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tp_size ", size, " and the model's ", kv,
        " KV heads must divide one another (KV heads are split, or replicated when fewer)"));
  }
  if (full.intermediate_size % size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tp_size ", size,
                                                   " does not divide the intermediate size ",
                                                   full.intermediate_size));
  }
  if (full.IsMoe() && full.moe.intermediate_size % size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tp_size ", size,
                                                   " does not divide the experts' intermediate "
                                                   "size ", full.moe.intermediate_size));
  }
  if (full.vocab_size < size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tp_size ", size, " exceeds the vocabulary of ", full.vocab_size, " tokens"));
  }
  ShardPlan p;
  p.full_ = full;
  p.rank_ = rank;
  p.size_ = size;
  p.local_ = full;
  p.local_.num_heads = heads / size;
  p.first_head_ = rank * p.local_.num_heads;
  if (kv >= size) {
    p.local_.num_kv_heads = kv / size;
    p.first_kv_head_ = rank * p.local_.num_kv_heads;
  } else {
    p.local_.num_kv_heads = 1;
    p.first_kv_head_ = rank * kv / size;  // the KV head of this rank's heads
  }
  p.local_.intermediate_size = full.intermediate_size / size;
  p.first_intermediate_ = rank * p.local_.intermediate_size;
  if (full.IsMoe()) {
    p.local_.moe.intermediate_size = full.moe.intermediate_size / size;
    p.first_expert_intermediate_ = rank * p.local_.moe.intermediate_size;
  }
  const int64_t per_rank = (full.vocab_size + size - 1) / size;
  p.local_.vocab_size = per_rank;
  p.vocab_begin_ = int64_t{rank} * per_rank;
  p.vocab_count_ = std::clamp<int64_t>(full.vocab_size - p.vocab_begin_, 0, per_rank);
  return p;
}

absl::StatusOr<TensorShard> ShardPlan::Shard(const std::string& name) const {
  const ModelConfig& c = full_;
  const int64_t h = c.hidden_size, hd = c.head_dim;
  TensorShard s;
  s.name = name;
  auto replicated = [&](std::vector<int64_t> shape) {
    s.full_shape = shape;
    s.local_shape = std::move(shape);
    s.dim = ShardDim::kReplicated;
    s.begin = 0;
    s.count = s.full_shape.empty() ? 1 : s.full_shape[0];
    return s;
  };
  // Rows [begin, begin + count) of a tensor with `full_rows` rows, held in
  // `local_rows` rows (>= count; the rest zero); `tail` = the other dims.
  auto rows = [&](int64_t full_rows, int64_t local_rows, int64_t begin, int64_t count,
                  std::vector<int64_t> tail) {
    s.full_shape = {full_rows};
    s.local_shape = {local_rows};
    s.full_shape.insert(s.full_shape.end(), tail.begin(), tail.end());
    s.local_shape.insert(s.local_shape.end(), tail.begin(), tail.end());
    s.dim = ShardDim::kRows;
    s.begin = begin;
    s.count = count;
    return s;
  };
  // `full` / `local` shapes; per row of the [outer][width] view, elements
  // [begin, begin + count).
  auto columns = [&](std::vector<int64_t> full, std::vector<int64_t> local, int64_t width,
                     int64_t begin, int64_t count) {
    s.full_shape = std::move(full);
    s.local_shape = std::move(local);
    s.dim = ShardDim::kColumns;
    s.width = width;
    s.begin = begin;
    s.count = count;
    return s;
  };
  const int64_t q_rows = int64_t{local_.num_heads} * hd, q_begin = int64_t{first_head_} * hd;
  const int64_t kv_rows = int64_t{local_.num_kv_heads} * hd,
                kv_begin = int64_t{first_kv_head_} * hd;
  const int64_t inter = local_.intermediate_size;

  if (name == "model.embed_tokens.weight" ||
      (name == "lm_head.weight" && !c.tie_word_embeddings)) {
    return rows(c.vocab_size, local_.vocab_size, vocab_begin_, vocab_count_, {h});
  }
  if (name == "model.norm.weight") return replicated({h});
  constexpr absl::string_view kLayers = "model.layers.";
  if (absl::StartsWith(name, kLayers)) {
    const absl::string_view rest = absl::string_view(name).substr(kLayers.size());
    const size_t dot = rest.find('.');
    int layer = -1;
    if (dot != absl::string_view::npos && absl::SimpleAtoi(rest.substr(0, dot), &layer) &&
        layer >= 0 && layer < c.num_layers) {
      const absl::string_view t = rest.substr(dot + 1);
      if (t == "input_layernorm.weight" || t == "post_attention_layernorm.weight") {
        return replicated({h});
      }
      if (t == "self_attn.q_proj.weight") return rows(c.QSize(), q_rows, q_begin, q_rows, {h});
      if (t == "self_attn.k_proj.weight" || t == "self_attn.v_proj.weight") {
        return rows(c.KvSize(), kv_rows, kv_begin, kv_rows, {h});
      }
      if (c.qkv_bias) {
        if (t == "self_attn.q_proj.bias") return rows(c.QSize(), q_rows, q_begin, q_rows, {});
        if (t == "self_attn.k_proj.bias" || t == "self_attn.v_proj.bias") {
          return rows(c.KvSize(), kv_rows, kv_begin, kv_rows, {});
        }
      }
      if (t == "self_attn.o_proj.weight") {
        return columns({h, c.QSize()}, {h, q_rows}, c.QSize(), q_begin, q_rows);
      }
      if (c.o_bias && t == "self_attn.o_proj.bias") return replicated({h});
      if (c.qk_norm && (t == "self_attn.q_norm.weight" || t == "self_attn.k_norm.weight")) {
        return replicated({hd});
      }
      if (c.attention_sinks && t == "self_attn.sinks") {
        return rows(c.num_heads, local_.num_heads, first_head_, local_.num_heads, {});
      }
      if (!c.IsMoeLayer(layer)) {
        if (t == "mlp.gate_proj.weight" || t == "mlp.up_proj.weight") {
          return rows(c.intermediate_size, inter, first_intermediate_, inter, {h});
        }
        if (t == "mlp.down_proj.weight") {
          return columns({h, c.intermediate_size}, {h, inter}, c.intermediate_size,
                         first_intermediate_, inter);
        }
      } else {
        const int64_t experts = c.moe.num_experts, ei = c.moe.intermediate_size;
        const int64_t local_ei = local_.moe.intermediate_size, e0 = first_expert_intermediate_;
        if (c.moe.layout == ExpertLayout::kPerExpertLinear) {
          if (t == "mlp.gate.weight") return replicated({experts, h});
          int64_t parsed_layer = -1, expert = -1;
          if (ParseExpertName(name, &parsed_layer, &expert) && parsed_layer == layer &&
              expert >= 0 && expert < experts) {
            const absl::string_view rest = t.substr(t.rfind("experts.") + 8);
            const absl::string_view leaf = rest.substr(rest.find('.') + 1);
            if (leaf == "gate_proj.weight" || leaf == "up_proj.weight") {
              return rows(ei, local_ei, e0, local_ei, {h});
            }
            if (leaf == "down_proj.weight") return columns({h, ei}, {h, local_ei}, ei, e0, local_ei);
          }
        } else {
          if (t == "mlp.router.weight") return replicated({experts, h});
          if (t == "mlp.router.bias") return replicated({experts});
          // Gate and up interleaved: intermediate i is columns 2i, 2i + 1.
          if (t == "mlp.experts.gate_up_proj") {
            return columns({experts, h, 2 * ei}, {experts, h, 2 * local_ei}, 2 * ei, 2 * e0,
                           2 * local_ei);
          }
          if (t == "mlp.experts.gate_up_proj_bias") {
            return columns({experts, 2 * ei}, {experts, 2 * local_ei}, 2 * ei, 2 * e0,
                           2 * local_ei);
          }
          if (t == "mlp.experts.down_proj") {
            return columns({experts, ei, h}, {experts, local_ei, h}, ei * h, e0 * h,
                           local_ei * h);
          }
          if (t == "mlp.experts.down_proj_bias") {
            // Added once, by rank 0; the other ranks hold zeros.
            if (rank_ == 0) return replicated({experts, h});
            return rows(experts, experts, 0, 0, {h});
          }
        }
      }
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "tensor \"", name, "\" is not a tensor of this ", c.model_type,
      " model or has no tensor-parallel sharding rule"));
}

void ShardPlan::ForEachLocalRange(
    const TensorShard& shard, int64_t element_bytes, int64_t offset, int64_t bytes,
    const std::function<void(int64_t, int64_t, int64_t)>& fn) {
  if (bytes <= 0) return;
  const int64_t end = offset + bytes;
  auto emit = [&](int64_t full_begin, int64_t full_end, int64_t local_begin) {
    const int64_t b = std::max(full_begin, offset), e = std::min(full_end, end);
    if (b < e) fn(local_begin + (b - full_begin), b - offset, e - b);
  };
  switch (shard.dim) {
    case ShardDim::kReplicated:
      emit(0, shard.FullElements() * element_bytes, 0);
      return;
    case ShardDim::kRows: {
      const int64_t row_bytes =
          shard.full_shape[0] == 0 ? 0 : shard.FullElements() / shard.full_shape[0] * element_bytes;
      emit(shard.begin * row_bytes, (shard.begin + shard.count) * row_bytes, 0);
      return;
    }
    case ShardDim::kColumns: {
      const int64_t row_bytes = shard.width * element_bytes, piece = shard.count * element_bytes;
      if (row_bytes == 0) return;
      const int64_t outer = shard.FullElements() / shard.width;
      const int64_t first = offset / row_bytes;
      const int64_t last = std::min(outer - 1, (end - 1) / row_bytes);
      for (int64_t r = first; r <= last; ++r) {
        const int64_t b = r * row_bytes + shard.begin * element_bytes;
        emit(b, b + piece, r * piece);
      }
      return;
    }
  }
}

std::vector<HeldPiece> ShardPlan::HeldPieces(const TensorShard& shard, int64_t element_bytes) {
  std::vector<HeldPiece> pieces;
  ForEachLocalRange(shard, element_bytes, 0, shard.FullElements() * element_bytes,
                    [&pieces](int64_t local_offset, int64_t range_offset, int64_t n) {
                      pieces.push_back({range_offset, n, local_offset});
                    });
  return pieces;
}

}  // namespace engine
}  // namespace colo
