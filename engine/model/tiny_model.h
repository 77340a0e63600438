// Tiny deterministic random models for tests and benchmarks: a config.json +
// model.safetensors pair that both colo and Hugging Face transformers load.
//
// Weights are drawn from a seeded generator (SplitMix64 + Box-Muller, so the
// same seed gives the same bytes everywhere) and scaled for non-degenerate
// generations: embeddings ~ N(0, 1), projections ~ N(0, 1/fan_in),
// norm weights ~ 1 + N(0, 0.1^2), biases ~ N(0, 0.1^2), attention sinks ~
// N(0, 1), lm_head scaled up so next-token distributions are peaked rather
// than uniform, gpt-oss expert gate_up_proj scaled up (3/sqrt(fan_in)) so its
// clamp (swiglu_limit) is reached.
//
// Architectures: llama, mistral, qwen2, qwen3, qwen3_moe (experts,
// experts_per_token, moe_intermediate, decoder_sparse_step, mlp_only_layers,
// norm_topk_prob) and gpt_oss (experts, experts_per_token, moe_intermediate
// as the expert size; attention bias and sinks; YaRN RoPE with gpt-oss's
// parameters; layer_types default to alternating sliding/full with
// sliding_window 128; mxfp4 writes the expert matrices as MXFP4 blocks and
// scales with quantization_config mxfp4, as the published checkpoints).
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
  // llama, mistral, qwen2, qwen3, qwen3_moe, gpt_oss
  std::string arch = "llama";
  int layers = 2;
  int64_t hidden = 64;
  int heads = 4;
  int kv_heads = 2;
  int head_dim = 0;             // 0 = hidden / heads
  int64_t intermediate = 0;     // 0 = 2 * hidden
  int64_t vocab = 256;
  int64_t max_position = 0;     // 0 = 2048 (gpt_oss: 131072, its YaRN-extended context)
  int64_t sliding_window = 0;   // > 0 with sliding layer_types
  // Empty = all full attention (mistral with a window: all sliding).
  std::vector<LayerType> layer_types;
  bool tie_embeddings = false;
  double rope_theta = 0.0;      // 0 = the architecture's default
  // MoE (qwen3_moe, gpt_oss).
  int experts = 8;
  int experts_per_token = 2;
  int64_t moe_intermediate = 0;  // 0 = hidden
  bool norm_topk_prob = true;    // qwen3_moe
  int decoder_sparse_step = 1;   // qwen3_moe
  std::vector<int> mlp_only_layers;  // qwen3_moe
  bool mxfp4 = false;            // gpt_oss: MXFP4 experts (hidden, moe_intermediate % 32 == 0)
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
