#include "engine/model/tiny_model_main_lib.h"

#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/model/tiny_model.h"

ABSL_FLAG(std::string, out, "", "Output directory (created if missing).");
ABSL_FLAG(std::string, arch, "llama", "llama, mistral, qwen2, qwen3, qwen3_moe or gpt_oss.");
ABSL_FLAG(int, layers, 2, "Number of layers.");
ABSL_FLAG(int64_t, hidden, 64, "Hidden size.");
ABSL_FLAG(int, heads, 4, "Attention heads.");
ABSL_FLAG(int, kv_heads, 2, "KV heads (GQA).");
ABSL_FLAG(int, head_dim, 0, "Head dim (0 = hidden / heads).");
ABSL_FLAG(int64_t, intermediate, 0, "MLP size (0 = 2 * hidden).");
ABSL_FLAG(int64_t, vocab, 256, "Vocabulary size.");
ABSL_FLAG(int64_t, max_position, 0, "max_position_embeddings (0 = 2048; gpt_oss 131072).");
ABSL_FLAG(int64_t, sliding_window, 0, "Sliding window for sliding layers.");
ABSL_FLAG(std::string, layer_types, "", "Comma list of full|sliding per layer.");
ABSL_FLAG(bool, tie_embeddings, false, "Tie lm_head to the embedding.");
ABSL_FLAG(std::string, dtype, "f32", "Stored dtype: f32, f16 or bf16.");
ABSL_FLAG(uint64_t, seed, 0, "Weight seed.");
ABSL_FLAG(int, experts, 8, "MoE (qwen3_moe, gpt_oss): experts per MoE layer.");
ABSL_FLAG(int, experts_per_token, 2, "MoE: experts each token is routed to (top k).");
ABSL_FLAG(int64_t, moe_intermediate, 0, "MoE: one expert's MLP size (0 = hidden).");
ABSL_FLAG(bool, norm_topk_prob, true, "qwen3_moe: renormalise the top-k routing weights.");
ABSL_FLAG(int, decoder_sparse_step, 1, "qwen3_moe: every N-th layer is a MoE layer.");
ABSL_FLAG(std::string, mlp_only_layers, "", "qwen3_moe: comma list of dense-MLP layers.");
ABSL_FLAG(bool, mxfp4, false, "gpt_oss: store the expert matrices as MXFP4 blocks + scales.");
ABSL_FLAG(double, rope_theta, 0, "RoPE base (0 = the architecture's default).");

namespace colo {
namespace engine {

int TinyModelMain(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  TinyModelOptions o;
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::cerr << "colo-tiny-model: --out is required\n";
    return 1;
  }
  o.arch = absl::GetFlag(FLAGS_arch);
  o.layers = absl::GetFlag(FLAGS_layers);
  o.hidden = absl::GetFlag(FLAGS_hidden);
  o.heads = absl::GetFlag(FLAGS_heads);
  o.kv_heads = absl::GetFlag(FLAGS_kv_heads);
  o.head_dim = absl::GetFlag(FLAGS_head_dim);
  o.intermediate = absl::GetFlag(FLAGS_intermediate);
  o.vocab = absl::GetFlag(FLAGS_vocab);
  o.max_position = absl::GetFlag(FLAGS_max_position);
  o.sliding_window = absl::GetFlag(FLAGS_sliding_window);
  o.tie_embeddings = absl::GetFlag(FLAGS_tie_embeddings);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.experts = absl::GetFlag(FLAGS_experts);
  o.experts_per_token = absl::GetFlag(FLAGS_experts_per_token);
  o.moe_intermediate = absl::GetFlag(FLAGS_moe_intermediate);
  o.norm_topk_prob = absl::GetFlag(FLAGS_norm_topk_prob);
  o.decoder_sparse_step = absl::GetFlag(FLAGS_decoder_sparse_step);
  o.mxfp4 = absl::GetFlag(FLAGS_mxfp4);
  o.rope_theta = absl::GetFlag(FLAGS_rope_theta);
  for (absl::string_view part :
       absl::StrSplit(absl::GetFlag(FLAGS_mlp_only_layers), ',', absl::SkipEmpty())) {
    int layer = 0;
    if (!absl::SimpleAtoi(part, &layer)) {
      std::cerr << "colo-tiny-model: --mlp_only_layers: \"" << part << "\" is not a layer index\n";
      return 1;
    }
    o.mlp_only_layers.push_back(layer);
  }
  absl::StatusOr<std::vector<LayerType>> types =
      ParseLayerTypeList(absl::GetFlag(FLAGS_layer_types));
  if (!types.ok()) {
    std::cerr << "colo-tiny-model: --layer_types: " << types.status() << "\n";
    return 1;
  }
  o.layer_types = *types;
  const std::string dtype = absl::AsciiStrToLower(absl::GetFlag(FLAGS_dtype));
  if (dtype == "f32" || dtype == "float32") {
    o.dtype = TensorDtype::kF32;
  } else if (dtype == "f16" || dtype == "float16") {
    o.dtype = TensorDtype::kF16;
  } else if (dtype == "bf16" || dtype == "bfloat16") {
    o.dtype = TensorDtype::kBF16;
  } else {
    std::cerr << "colo-tiny-model: --dtype=" << dtype << " (expected f32, f16, bf16)\n";
    return 1;
  }
  absl::Status s = WriteTinyModel(o, out);
  if (!s.ok()) {
    std::cerr << "colo-tiny-model: " << s << "\n";
    return 1;
  }
  absl::StatusOr<ModelConfig> c = TinyModelConfig(o);
  std::cout << "wrote " << out << " (" << c->NumParameters() << " parameters";
  if (c->IsMoe()) std::cout << ", " << c->NumActiveParameters() << " active";
  std::cout << ")\n";
  return 0;
}

}  // namespace engine
}  // namespace colo
