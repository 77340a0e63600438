#include "engine/model/model_weights.h"

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "engine/model/mxfp4.h"
#include "proto/logging/logging.h"

namespace colo {
namespace engine {
namespace {

std::string ShapeString(const std::vector<int64_t>& s) {
  return absl::StrCat("[", absl::StrJoin(s, ", "), "]");
}

// qwen3_moe checkpoints name experts by index: one beyond config.json's
// num_experts (or in a dense layer) means the config does not describe the
// checkpoint. (gpt_oss's fused tensors show a wrong count in their shape.)
absl::Status CheckExpertCounts(const ModelConfig& c, const SafetensorsCheckpoint& checkpoint) {
  if (c.moe.layout != ExpertLayout::kPerExpertLinear || !c.IsMoe()) return absl::OkStatus();
  for (const auto& [name, view] : checkpoint.tensors()) {
    int64_t layer = -1, expert = -1;
    if (!ParseExpertName(name, &layer, &expert)) continue;
    if (layer >= c.num_layers) continue;  // not a layer of this model; ignored
    if (!c.IsMoeLayer(static_cast<int>(layer))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint tensor \"", name, "\" is an expert of layer ", layer,
          ", which config.json makes a dense MLP layer (decoder_sparse_step=",
          c.decoder_sparse_step, ", mlp_only_layers)"));
    }
    if (expert >= c.moe.num_experts) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint tensor \"", name, "\" is expert ", expert,
          " but config.json has num_experts=", c.moe.num_experts));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool ParseExpertName(absl::string_view name, int64_t* layer, int64_t* expert) {
  constexpr absl::string_view kLayers = "model.layers.", kExperts = ".mlp.experts.";
  if (!absl::ConsumePrefix(&name, kLayers)) return false;
  const size_t dot = name.find('.');
  if (dot == absl::string_view::npos || !absl::SimpleAtoi(name.substr(0, dot), layer)) {
    return false;
  }
  name.remove_prefix(dot);
  if (!absl::ConsumePrefix(&name, kExperts)) return false;
  const size_t next = name.find('.');
  return next != absl::string_view::npos && absl::SimpleAtoi(name.substr(0, next), expert);
}

int64_t WeightInfo::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<std::unique_ptr<ModelWeights>> ModelWeights::Allocate(
    const ModelConfig& config, TaggedPool* pool) {
  if (pool == nullptr) return absl::InvalidArgumentError("ModelWeights needs a TaggedPool");
  std::unique_ptr<ModelWeights> w(new ModelWeights(config, pool));
  absl::Status s = w->Init();
  if (!s.ok()) return s;
  return w;
}

ModelWeights::~ModelWeights() {
  if (base_ != nullptr) {
    absl::Status s = pool_->Free(base_);
    if (!s.ok()) COLO_LOG(ERROR) << "freeing model weights: " << s;
  }
}

std::vector<std::pair<std::string, std::vector<int64_t>>> ModelWeights::TensorShapes(
    const ModelConfig& config) {
  ModelWeights planner(config, nullptr);
  std::vector<std::pair<int, size_t>> fused;
  size_t floats = 0;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (Planned& t : planner.Plan(&fused, &floats)) {
    out.emplace_back(std::move(t.name), std::move(t.shape));
  }
  return out;
}

std::vector<ModelWeights::Planned> ModelWeights::Plan(std::vector<std::pair<int, size_t>>* fused,
                                                      size_t* total_floats) {
  const ModelConfig& c = config_;
  const int64_t h = c.hidden_size, q = c.QSize(), kv = c.KvSize(),
                inter = c.intermediate_size, hd = c.head_dim;
  using Pending = Planned;
  std::vector<Pending> pending;
  size_t cursor = 0;  // floats
  auto align = [&cursor] { cursor = (cursor + 15) / 16 * 16; };
  auto add = [&](std::string name, std::vector<int64_t> shape, float** slot,
                 bool aligned) {
    if (aligned) align();
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    pending.push_back({std::move(name), std::move(shape), slot, cursor});
    cursor += n;
  };
  layers_.resize(c.num_layers);
  add("model.embed_tokens.weight", {c.vocab_size, h}, &embed_, true);
  for (int i = 0; i < c.num_layers; ++i) {
    LayerWeights& L = layers_[i];
    const std::string p = absl::StrCat("model.layers.", i, ".");
    add(p + "input_layernorm.weight", {h}, &L.input_norm, true);
    add(p + "self_attn.q_proj.weight", {q, h}, &L.qkv, true);
    add(p + "self_attn.k_proj.weight", {kv, h}, nullptr, false);
    add(p + "self_attn.v_proj.weight", {kv, h}, nullptr, false);
    if (c.qkv_bias) {
      add(p + "self_attn.q_proj.bias", {q}, &L.qkv_bias, true);
      add(p + "self_attn.k_proj.bias", {kv}, nullptr, false);
      add(p + "self_attn.v_proj.bias", {kv}, nullptr, false);
    }
    add(p + "self_attn.o_proj.weight", {h, q}, &L.o, true);
    if (c.o_bias) add(p + "self_attn.o_proj.bias", {h}, &L.o_bias, true);
    if (c.qk_norm) {
      add(p + "self_attn.q_norm.weight", {hd}, &L.q_norm, true);
      add(p + "self_attn.k_norm.weight", {hd}, &L.k_norm, true);
    }
    if (c.attention_sinks) add(p + "self_attn.sinks", {c.num_heads}, &L.sinks, true);
    add(p + "post_attention_layernorm.weight", {h}, &L.post_norm, true);
    if (!c.IsMoeLayer(i)) {
      add(p + "mlp.gate_proj.weight", {inter, h}, &L.gate_up, true);
      add(p + "mlp.up_proj.weight", {inter, h}, nullptr, false);
      add(p + "mlp.down_proj.weight", {h, inter}, &L.down, true);
      continue;
    }
    const int64_t experts = c.moe.num_experts, ei = c.moe.intermediate_size;
    L.expert_gate_up.assign(experts, nullptr);
    L.expert_down.assign(experts, nullptr);
    if (c.moe.layout == ExpertLayout::kPerExpertLinear) {
      add(p + "mlp.gate.weight", {experts, h}, &L.router, true);
      for (int64_t e = 0; e < experts; ++e) {
        const std::string pe = absl::StrCat(p, "mlp.experts.", e, ".");
        add(pe + "gate_proj.weight", {ei, h}, &L.expert_gate_up[e], true);
        add(pe + "up_proj.weight", {ei, h}, nullptr, false);
        add(pe + "down_proj.weight", {h, ei}, &L.expert_down[e], true);
      }
    } else {
      add(p + "mlp.router.weight", {experts, h}, &L.router, true);
      add(p + "mlp.router.bias", {experts}, &L.router_bias, true);
      fused->push_back({i, pending.size()});
      add(p + "mlp.experts.gate_up_proj", {experts, h, 2 * ei}, nullptr, true);
      add(p + "mlp.experts.gate_up_proj_bias", {experts, 2 * ei}, &L.expert_gate_up_bias, true);
      add(p + "mlp.experts.down_proj", {experts, ei, h}, nullptr, true);
      add(p + "mlp.experts.down_proj_bias", {experts, h}, &L.expert_down_bias, true);
    }
  }
  add("model.norm.weight", {h}, &final_norm_, true);
  if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, h}, &lm_head_, true);
  align();
  *total_floats = cursor;
  return pending;
}

absl::Status ModelWeights::Init() {
  const ModelConfig& c = config_;
  const int64_t h = c.hidden_size;
  // gpt_oss layers: (layer, index in the plan of its gate_up_proj; down_proj
  // is two entries later), to point the per-expert pointers into them.
  std::vector<std::pair<int, size_t>> fused;
  size_t floats = 0;
  std::vector<Planned> pending = Plan(&fused, &floats);
  const size_t bytes = floats * sizeof(float);
  absl::StatusOr<void*> mem = pool_->Allocate(MemoryTag::kWeights, bytes, "model_weights");
  if (!mem.ok()) {
    return absl::Status(mem.status().code(),
                        absl::StrCat("allocating ", bytes, " bytes of model weights: ",
                                     mem.status().message()));
  }
  base_ = *mem;
  bytes_ = bytes;
  std::memset(base_, 0, bytes);
  float* f = static_cast<float*>(base_);
  for (Planned& pd : pending) {
    float* ptr = f + pd.offset;
    if (pd.slot != nullptr) *pd.slot = ptr;
    WeightInfo info{pd.name, pd.shape, TensorDtype::kF32, ptr};
    order_.push_back(pd.name);
    by_name_.emplace(pd.name, std::move(info));
  }
  if (c.tie_word_embeddings) lm_head_ = embed_;
  for (const auto& [layer, index] : fused) {
    LayerWeights& L = layers_[layer];
    const int64_t ei = c.moe.intermediate_size;
    float* gate_up = f + pending[index].offset;
    float* down = f + pending[index + 2].offset;
    for (int e = 0; e < c.moe.num_experts; ++e) {
      L.expert_gate_up[e] = gate_up + int64_t{e} * h * 2 * ei;
      L.expert_down[e] = down + int64_t{e} * ei * h;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ModelWeights>> ModelWeights::Load(
    const ModelConfig& config, const SafetensorsCheckpoint& checkpoint,
    TaggedPool* pool) {
  if (absl::Status s = CheckExpertCounts(config, checkpoint); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<ModelWeights>> w = Allocate(config, pool);
  if (!w.ok()) return w.status();
  for (const std::string& name : (*w)->order_) {
    const WeightInfo& info = (*w)->by_name_.at(name);
    absl::Status s = ReadCheckpointTensor(checkpoint, name, info.shape, info.data);
    if (!s.ok()) return s;
  }
  return w;
}

std::vector<WeightInfo> ModelWeights::List() const {
  std::vector<WeightInfo> out;
  out.reserve(order_.size());
  for (const std::string& n : order_) out.push_back(by_name_.at(n));
  return out;
}

absl::StatusOr<WeightInfo> ModelWeights::Find(absl::string_view name) const {
  auto it = by_name_.find(std::string(name));
  if (it == by_name_.end()) {
    return absl::NotFoundError(absl::StrCat("model has no weight \"", name, "\""));
  }
  return it->second;
}

absl::Status ModelWeights::Overwrite(absl::string_view name, TensorDtype dtype,
                                     const std::vector<int64_t>& shape,
                                     const void* bytes, size_t num_bytes) {
  absl::StatusOr<WeightInfo> info = Find(name);
  if (!info.ok()) return info.status();
  if (shape != info->shape) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight \"", name, "\" has shape ", ShapeString(info->shape),
                     ", update has shape ", ShapeString(shape)));
  }
  const size_t elem = TensorDtypeBytes(dtype);
  if (elem == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight \"", name, "\": unsupported update dtype"));
  }
  if (num_bytes != elem * info->NumElements()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "weight \"", name, "\": update has ", num_bytes, " bytes, shape ",
        ShapeString(shape), " of ", TensorDtypeName(dtype), " needs ",
        elem * info->NumElements()));
  }
  absl::Status converted = ConvertToFloat(dtype, bytes, info->NumElements(), info->data);
  if (converted.ok()) MarkFresh(name);
  return converted;
}

void ModelWeights::MarkAllStale() { stale_.insert(order_.begin(), order_.end()); }

void ModelWeights::MarkFresh(absl::string_view name) { stale_.erase(name); }

}  // namespace engine
}  // namespace colo
