// ModelConfig: the decoder-only transformer hyper-parameters colo supports,
// parsed from a Hugging Face config.json (Llama, Mistral, Qwen2, Qwen3,
// Qwen3-MoE, GPT-OSS), with transformers 5.x's field names and defaults.
//
// Supported: GQA (num_key_value_heads), explicit head_dim, RoPE with
// rope_theta and rope_scaling (or transformers 5's rope_parameters) of type
// default / linear / llama3 / yarn, RMSNorm (rms_norm_eps), SwiGLU MLP
// (hidden_act "silu"), q/k RMSNorm (qwen3, qwen3_moe), q/k/v bias (qwen2
// always; llama/qwen3/qwen3_moe/gpt_oss with attention_bias, which also adds
// an o_proj bias), tied embeddings, per-layer attention types:
//   - "layer_types": ["full_attention" | "sliding_attention", ...] with
//     "sliding_window" (gpt_oss: alternating sliding/full when absent), or
//   - qwen2/qwen3 "use_sliding_window": layers >= max_window_layers slide,
//   - qwen3_moe "use_sliding_window": every layer slides, or
//   - mistral "sliding_window": every layer slides,
// and mixture-of-experts MLPs (MoeConfig):
//   - qwen3_moe: num_experts (alias num_local_experts), num_experts_per_tok,
//     moe_intermediate_size, norm_topk_prob, decoder_sparse_step,
//     mlp_only_layers (those layers keep a dense MLP of intermediate_size);
//   - gpt_oss: num_local_experts, num_experts_per_tok, intermediate_size (per
//     expert), swiglu_limit, swiglu_alpha, learned attention sinks, and
//     quantization_config {"quant_method": "mxfp4"} (expert matrices stored
//     as *_blocks + *_scales; dequantized on load, see mxfp4.h).
// Anything else that changes the math (another hidden_act, mlp_bias, another
// rope type, an unknown layer type, another quant_method, an unknown
// model_type) is rejected with INVALID_ARGUMENT naming the field and value.
// Malformed JSON, wrong types and inconsistent sizes are INVALID_ARGUMENT
// too; parsing never throws.
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

// How a token picks its experts.
enum class MoeRouter {
  // qwen3_moe: softmax over every expert's logit, the top k probabilities,
  // renormalised to sum 1 when norm_topk_prob.
  kSoftmaxTopK,
  // gpt_oss: the top k logits (the router has a bias), softmax over those k.
  kTopKSoftmax,
};

// How the expert weights are laid out (always the HF checkpoint names).
enum class ExpertLayout {
  // qwen3_moe: per expert e, "mlp.experts.<e>.{gate,up,down}_proj.weight",
  // nn.Linear [out][in], no bias; activation SwiGLU.
  kPerExpertLinear,
  // gpt_oss: "mlp.experts.gate_up_proj" [E][hidden][2 * I] (x @ W; gate and
  // up interleaved), "gate_up_proj_bias" [E][2 * I], "down_proj" [E][I][hidden],
  // "down_proj_bias" [E][hidden]; activation: the clamped SwiGLU.
  kFusedTransposed,
};

// Mixture-of-experts parameters; num_experts == 0 for a dense model.
struct MoeConfig {
  int num_experts = 0;
  int experts_per_token = 0;
  int64_t intermediate_size = 0;  // of one expert
  bool norm_topk_prob = false;    // kSoftmaxTopK only
  MoeRouter router = MoeRouter::kSoftmaxTopK;
  ExpertLayout layout = ExpertLayout::kPerExpertLinear;
  double swiglu_alpha = 1.702;  // kFusedTransposed only
  double swiglu_limit = 7.0;    // kFusedTransposed only
  // The checkpoint stores the expert matrices as MXFP4 (*_blocks, *_scales);
  // from quantization_config.quant_method == "mxfp4".
  bool mxfp4 = false;
};

struct ModelConfig {
  // "llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "gpt_oss"
  std::string model_type;
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
  // A learned sink logit per query head in every attention layer (gpt_oss:
  // "self_attn.sinks", see kernels/cpu/paged_attention.h).
  bool attention_sinks = false;
  MoeConfig moe;
  // One per layer: true where the MLP is a sparse MoE block (all false for
  // dense models). qwen3_moe's decoder_sparse_step / mlp_only_layers are kept
  // for serialization.
  std::vector<bool> moe_layers;
  int decoder_sparse_step = 1;
  std::vector<int> mlp_only_layers;

  bool HasSlidingLayers() const;
  bool IsMoe() const { return moe.num_experts > 0; }
  bool IsMoeLayer(int layer) const {
    return layer >= 0 && layer < static_cast<int>(moe_layers.size()) && moe_layers[layer];
  }
  int64_t QSize() const { return int64_t{num_heads} * head_dim; }
  int64_t KvSize() const { return int64_t{num_kv_heads} * head_dim; }
  // Number of parameters (including a separate lm_head when untied).
  int64_t NumParameters() const;
  // Parameters one token's forward pass reads (MoE: experts_per_token of the
  // experts; the embedding counted once).
  int64_t NumActiveParameters() const;
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
