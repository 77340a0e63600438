#include "engine/model/tiny_model_main_lib.h"

#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "engine/model/tiny_model.h"

ABSL_FLAG(std::string, out, "", "Output directory (created if missing).");
ABSL_FLAG(std::string, arch, "llama", "llama, mistral, qwen2 or qwen3.");
ABSL_FLAG(int, layers, 2, "Number of layers.");
ABSL_FLAG(int64_t, hidden, 64, "Hidden size.");
ABSL_FLAG(int, heads, 4, "Attention heads.");
ABSL_FLAG(int, kv_heads, 2, "KV heads (GQA).");
ABSL_FLAG(int, head_dim, 0, "Head dim (0 = hidden / heads).");
ABSL_FLAG(int64_t, intermediate, 0, "MLP size (0 = 2 * hidden).");
ABSL_FLAG(int64_t, vocab, 256, "Vocabulary size.");
ABSL_FLAG(int64_t, max_position, 2048, "max_position_embeddings.");
ABSL_FLAG(int64_t, sliding_window, 0, "Sliding window for sliding layers.");
ABSL_FLAG(std::string, layer_types, "", "Comma list of full|sliding per layer.");
ABSL_FLAG(bool, tie_embeddings, false, "Tie lm_head to the embedding.");
ABSL_FLAG(std::string, dtype, "f32", "Stored dtype: f32, f16 or bf16.");
ABSL_FLAG(uint64_t, seed, 0, "Weight seed.");

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
  std::cout << "wrote " << out << " (" << c->NumParameters() << " parameters)\n";
  return 0;
}

}  // namespace engine
}  // namespace colo
