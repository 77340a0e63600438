#include "engine/model/model_weights.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proto/logging/logging.h"

namespace colo {
namespace engine {
namespace {

std::string ShapeString(const std::vector<int64_t>& s) {
  return absl::StrCat("[", absl::StrJoin(s, ", "), "]");
}

}  // namespace

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

absl::Status ModelWeights::Init() {
  const ModelConfig& c = config_;
  const int64_t h = c.hidden_size, q = c.QSize(), kv = c.KvSize(),
                inter = c.intermediate_size, hd = c.head_dim;
  // First pass computes offsets, second pass assigns pointers.
  struct Pending {
    std::string name;
    std::vector<int64_t> shape;
    float** slot;      // where to store the pointer (may be null)
    size_t offset;     // in floats
  };
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
    add(p + "post_attention_layernorm.weight", {h}, &L.post_norm, true);
    add(p + "mlp.gate_proj.weight", {inter, h}, &L.gate_up, true);
    add(p + "mlp.up_proj.weight", {inter, h}, nullptr, false);
    add(p + "mlp.down_proj.weight", {h, inter}, &L.down, true);
  }
  add("model.norm.weight", {h}, &final_norm_, true);
  if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, h}, &lm_head_, true);
  align();
  const size_t bytes = cursor * sizeof(float);
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
  for (Pending& pd : pending) {
    float* ptr = f + pd.offset;
    if (pd.slot != nullptr) *pd.slot = ptr;
    WeightInfo info{pd.name, pd.shape, TensorDtype::kF32, ptr};
    order_.push_back(pd.name);
    by_name_.emplace(pd.name, std::move(info));
  }
  if (c.tie_word_embeddings) lm_head_ = embed_;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ModelWeights>> ModelWeights::Load(
    const ModelConfig& config, const SafetensorsCheckpoint& checkpoint,
    TaggedPool* pool) {
  absl::StatusOr<std::unique_ptr<ModelWeights>> w = Allocate(config, pool);
  if (!w.ok()) return w.status();
  for (const std::string& name : (*w)->order_) {
    const WeightInfo& info = (*w)->by_name_.at(name);
    absl::Status s = checkpoint.ReadAsFloat(name, info.shape, info.data);
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
