// ModelConfig: the decoder-only transformer hyper-parameters colo supports,
// parsed from a Hugging Face config.json (Llama, Mistral, Qwen2, Qwen3).
//
// Supported: GQA (num_key_value_heads), explicit head_dim, RoPE with
// rope_theta and rope_scaling of type default / linear / llama3, RMSNorm
// (rms_norm_eps), SwiGLU MLP (hidden_act "silu"), q/k RMSNorm (qwen3), q/k/v
// bias (qwen2 always; llama/qwen3 with attention_bias, which also adds an
// o_proj bias), tied embeddings, and per-layer attention types:
//   - "layer_types": ["full_attention" | "sliding_attention", ...] with
//     "sliding_window", or
//   - qwen2/qwen3 "use_sliding_window": layers >= max_window_layers slide, or
//   - mistral "sliding_window": every layer slides.
// Anything else that changes the math (another hidden_act, mlp_bias, another
// rope type, an unknown layer type, an unknown model_type) is rejected with
// INVALID_ARGUMENT naming the field and value. Malformed JSON, wrong types
// and inconsistent sizes are INVALID_ARGUMENT too; parsing never throws.
#ifndef COLO_ENGINE_MODEL_MODEL_CONFIG_H_
#define COLO_ENGINE_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/cpu/rope.h"

namespace colo {
namespace engine {

enum class LayerType { kFullAttention, kSlidingAttention };

struct ModelConfig {
  std::string model_type;  // "llama", "mistral", "qwen2", "qwen3"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  kernels::RopeScaling rope_scaling;
  bool qkv_bias = false;
  bool o_bias = false;
  bool qk_norm = false;
  bool tie_word_embeddings = false;
  // One per layer.
  std::vector<LayerType> layer_types;
  // Tokens a sliding layer attends (including the current one); 0 if none.
  int64_t sliding_window = 0;

  bool HasSlidingLayers() const;
  int64_t QSize() const { return int64_t{num_heads} * head_dim; }
  int64_t KvSize() const { return int64_t{num_kv_heads} * head_dim; }
  // Number of parameters (including a separate lm_head when untied).
  int64_t NumParameters() const;
};

// Parses config.json text.
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text);

// Reads and parses `path` (NOT_FOUND if it cannot be read).
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

// Serializes to config.json text that ParseModelConfig accepts and that
// transformers can load (used by the tiny-model generator).
std::string ModelConfigToJson(const ModelConfig& config);

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_MODEL_CONFIG_H_
