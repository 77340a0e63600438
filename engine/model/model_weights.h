// ModelWeights: every parameter of a ModelConfig as float32, in one
// allocation from the TaggedPool `weights` tag, at addresses that stay fixed
// for the life of the object (across Release/Resume of the tag).
//
// Layout: tensors are packed in one buffer, each 64-byte aligned; per layer
// q/k/v projections are adjacent (one fused [q + 2 kv][hidden] matrix, and
// the same for their biases) and so are gate/up ([2 * intermediate][hidden]),
// so the forward pass runs one GEMM for each pair. The Hugging Face names
// ("model.layers.3.self_attn.k_proj.weight", ...) address the sub-blocks,
// and every named tensor holds exactly its HF layout (so checksums and
// weight updates by name need no conversion).
//
// MoE layers (ModelConfig::IsMoeLayer) have, instead of the dense MLP, the
// router and every expert's tensors under their checkpoint names:
//   qwen3_moe: "mlp.gate.weight" [E][hidden] and per expert e
//     "mlp.experts.<e>.gate_proj.weight" / "up_proj.weight" [I][hidden]
//     (adjacent: one [2I][hidden] matrix) and "down_proj.weight" [hidden][I];
//   gpt_oss: "mlp.router.weight" [E][hidden], "mlp.router.bias" [E],
//     "mlp.experts.gate_up_proj" [E][hidden][2I] (gate/up interleaved),
//     "mlp.experts.gate_up_proj_bias" [E][2I], "mlp.experts.down_proj"
//     [E][I][hidden], "mlp.experts.down_proj_bias" [E][hidden]; and
//     "self_attn.sinks" [num_heads] in every layer.
// All of them live in the same `weights` allocation, so releasing/resuming
// the tag and weight updates by name cover every expert. An MXFP4 checkpoint
// (quantization_config mxfp4) stores gate_up_proj / down_proj as *_blocks +
// *_scales; Load dequantizes them into the tensors above (mxfp4.h), so an
// MXFP4 model has the same tensor names, shapes and float32 storage as its
// bf16 counterpart, and weight updates carry those (float32/bf16/f16), not
// blocks and scales.
//
// Weight updates: Overwrite(name, ...) converts F32/F16/BF16 data into the
// tensor in place after checking its shape. Not thread-safe with respect to a
// running forward pass: callers (the scheduler) serialize them. Read access
// (Find, List, the raw pointers) is thread-compatible.
#ifndef COLO_ENGINE_MODEL_MODEL_WEIGHTS_H_
#define COLO_ENGINE_MODEL_MODEL_WEIGHTS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/memory/tagged_pool.h"
#include "engine/model/model_config.h"
#include "engine/model/safetensors.h"

namespace colo {
namespace engine {

struct WeightInfo {
  std::string name;
  std::vector<int64_t> shape;
  TensorDtype dtype = TensorDtype::kF32;  // storage dtype (always F32 here)
  float* data = nullptr;
  int64_t NumElements() const;
};

struct LayerWeights {
  float* input_norm = nullptr;     // [hidden]
  float* qkv = nullptr;            // [q + 2 kv][hidden]
  float* qkv_bias = nullptr;       // [q + 2 kv] or null
  float* o = nullptr;              // [hidden][q]
  float* o_bias = nullptr;         // [hidden] or null
  float* q_norm = nullptr;         // [head_dim] or null
  float* k_norm = nullptr;         // [head_dim] or null
  float* post_norm = nullptr;      // [hidden]
  float* gate_up = nullptr;        // [2 intermediate][hidden]; null in MoE layers
  float* down = nullptr;           // [hidden][intermediate]; null in MoE layers
  float* sinks = nullptr;          // [num_heads] or null
  // MoE layers only (see the file comment for the layouts).
  float* router = nullptr;         // [E][hidden]
  float* router_bias = nullptr;    // [E] or null
  // Per expert: kPerExpertLinear [2I][hidden] / [hidden][I] (nn.Linear);
  // kFusedTransposed [hidden][2I] / [I][hidden] (x @ W, into the fused tensor).
  std::vector<float*> expert_gate_up;
  std::vector<float*> expert_down;
  float* expert_gate_up_bias = nullptr;  // [E][2I] or null
  float* expert_down_bias = nullptr;     // [E][hidden] or null
};

// "model.layers.<L>.mlp.experts.<E>.<rest>" -> L and E (qwen3_moe's
// per-expert names); false for any other name.
bool ParseExpertName(absl::string_view name, int64_t* layer, int64_t* expert);

class ModelWeights {
 public:
  // Allocates zero-filled weights. `pool` must outlive the object.
  // RESOURCE_EXHAUSTED / FAILED_PRECONDITION from the pool.
  static absl::StatusOr<std::unique_ptr<ModelWeights>> Allocate(
      const ModelConfig& config, TaggedPool* pool);
  // Allocate + copy every tensor from the checkpoint (MXFP4 experts
  // dequantized). A missing tensor is NOT_FOUND naming it; a shape that does
  // not match config.json, an unsupported dtype, MXFP4 blocks/scales of the
  // wrong shape, or an expert tensor beyond config.json's num_experts is
  // INVALID_ARGUMENT naming the tensor (and the field). Other extra tensors
  // (e.g. rotary caches) are ignored.
  static absl::StatusOr<std::unique_ptr<ModelWeights>> Load(
      const ModelConfig& config, const SafetensorsCheckpoint& checkpoint,
      TaggedPool* pool);
  ~ModelWeights();

  ModelWeights(const ModelWeights&) = delete;
  ModelWeights& operator=(const ModelWeights&) = delete;

  const ModelConfig& config() const { return config_; }
  // All tensors in a stable order (embedding, layers, norm, lm_head).
  std::vector<WeightInfo> List() const;
  // NOT_FOUND naming the tensor.
  absl::StatusOr<WeightInfo> Find(absl::string_view name) const;
  // Overwrites a tensor in place from `bytes` of `dtype` data with `shape`.
  // NOT_FOUND for unknown names; INVALID_ARGUMENT for a shape mismatch, a
  // byte count that does not match the shape, or an unsupported dtype.
  absl::Status Overwrite(absl::string_view name, TensorDtype dtype,
                         const std::vector<int64_t>& shape, const void* bytes,
                         size_t num_bytes);
  // Every tensor's HF name and shape, in List() order, without allocating
  // (the checkpoint a config describes; colo-tiny-model writes these).
  static std::vector<std::pair<std::string, std::vector<int64_t>>> TensorShapes(
      const ModelConfig& config);

  // Total bytes held in the weights tag.
  size_t allocated_bytes() const { return bytes_; }

  // Staleness: the `weights` tag resumed without a host backup holds no
  // weights; MarkAllStale() records that, and every tensor an update (or
  // Overwrite) writes afterwards is marked fresh again. The engine serves
  // only when num_stale() is 0, so a partial update after such a resume
  // never serves a mix of new tensors and empty ones. Confined to the thread
  // that commits updates (the scheduler's), like the writes themselves.
  void MarkAllStale();
  void MarkFresh(absl::string_view name);
  int64_t num_stale() const { return static_cast<int64_t>(stale_.size()); }
  bool is_stale(absl::string_view name) const { return stale_.contains(name); }

  const float* embed() const { return embed_; }
  const float* final_norm() const { return final_norm_; }
  const float* lm_head() const { return lm_head_; }  // == embed() when tied
  const LayerWeights& layer(int i) const { return layers_[i]; }

 private:
  ModelWeights(const ModelConfig& config, TaggedPool* pool)
      : config_(config), pool_(pool) {}
  // One tensor of the packed layout.
  struct Planned {
    std::string name;
    std::vector<int64_t> shape;
    float** slot;   // where Init stores the pointer (may be null)
    size_t offset;  // in floats
  };
  // Offsets of every tensor (resizes layers_ and sets `slot`s into it);
  // `fused`: (layer, plan index of gate_up_proj) of gpt_oss layers.
  std::vector<Planned> Plan(std::vector<std::pair<int, size_t>>* fused, size_t* total_floats);
  absl::Status Init();

  const ModelConfig config_;
  TaggedPool* const pool_;
  void* base_ = nullptr;
  size_t bytes_ = 0;
  float* embed_ = nullptr;
  float* final_norm_ = nullptr;
  float* lm_head_ = nullptr;
  std::vector<LayerWeights> layers_;
  std::map<std::string, WeightInfo> by_name_;
  std::vector<std::string> order_;
  absl::flat_hash_set<std::string> stale_;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_MODEL_WEIGHTS_H_
