// Tiny deterministic random models for tests and benchmarks: a config.json +
// model.safetensors pair that both colo and Hugging Face transformers load.
//
// Weights are drawn from a seeded generator (SplitMix64 + Box-Muller, so the
// same seed gives the same bytes everywhere) and scaled for non-degenerate
// generations: embeddings ~ N(0, 1), projections ~ N(0, 1/fan_in),
// norm weights ~ 1 + N(0, 0.1^2), biases ~ N(0, 0.1^2), lm_head scaled up so
// next-token distributions are peaked rather than uniform.
#ifndef COLO_ENGINE_MODEL_TINY_MODEL_H_
#define COLO_ENGINE_MODEL_TINY_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model/model_config.h"
#include "engine/model/safetensors.h"

namespace colo {
namespace engine {

struct TinyModelOptions {
  std::string arch = "llama";  // llama, mistral, qwen2, qwen3
  int layers = 2;
  int64_t hidden = 64;
  int heads = 4;
  int kv_heads = 2;
  int head_dim = 0;             // 0 = hidden / heads
  int64_t intermediate = 0;     // 0 = 2 * hidden
  int64_t vocab = 256;
  int64_t max_position = 2048;
  int64_t sliding_window = 0;   // > 0 with sliding layer_types
  // Empty = all full attention (mistral with a window: all sliding).
  std::vector<LayerType> layer_types;
  bool tie_embeddings = false;
  double rope_theta = 10000.0;
  TensorDtype dtype = TensorDtype::kF32;
  uint64_t seed = 0;
};

// INVALID_ARGUMENT for inconsistent options (the message names the field).
absl::StatusOr<ModelConfig> TinyModelConfig(const TinyModelOptions& options);

// Creates `dir` if needed and writes config.json, model.safetensors and a
// tokenizer of `vocab` ids (engine/tokenizer/tiny_tokenizer.h: tokenizer.json,
// tokenizer_config.json, generation_config.json; none for vocab < 5).
absl::Status WriteTinyModel(const TinyModelOptions& options,
                            const std::string& dir);

// Parses "full,sliding,..." into layer types (INVALID_ARGUMENT otherwise).
absl::StatusOr<std::vector<LayerType>> ParseLayerTypeList(const std::string& s);

// `len` pseudo-random token ids below `vocab`, the same for the same seed
// everywhere (a prompt for tests, benchmarks and demos on these models).
std::vector<int32_t> TinyPrompt(int seed, int len, int vocab);

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_TINY_MODEL_H_
