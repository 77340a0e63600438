// ModelWeights: every parameter of a ModelConfig as float32, in one
// allocation from the TaggedPool `weights` tag, at addresses that stay fixed
// for the life of the object (across Release/Resume of the tag).
//
// Layout: tensors are packed in one buffer, each 64-byte aligned; per layer
// q/k/v projections are adjacent (one fused [q + 2 kv][hidden] matrix, and
// the same for their biases) and so are gate/up ([2 * intermediate][hidden]),
// so the forward pass runs one GEMM for each pair. The Hugging Face names
// ("model.layers.3.self_attn.k_proj.weight", ...) address the sub-blocks.
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
  float* gate_up = nullptr;        // [2 intermediate][hidden]
  float* down = nullptr;           // [hidden][intermediate]
};

class ModelWeights {
 public:
  // Allocates zero-filled weights. `pool` must outlive the object.
  // RESOURCE_EXHAUSTED / FAILED_PRECONDITION from the pool.
  static absl::StatusOr<std::unique_ptr<ModelWeights>> Allocate(
      const ModelConfig& config, TaggedPool* pool);
  // Allocate + copy every tensor from the checkpoint. A missing tensor is
  // NOT_FOUND naming it; a shape that does not match config.json or an
  // unsupported dtype is INVALID_ARGUMENT naming it. Extra tensors (e.g.
  // rotary caches) are ignored.
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
