#include "engine/model/tiny_model.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/tokenizer/tiny_tokenizer.h"

namespace colo {
namespace engine {
namespace {

class Normal {
 public:
  explicit Normal(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  double Next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = Uniform(), u2 = Uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2 * M_PI * u2);
    has_spare_ = true;
    return r * std::cos(2 * M_PI * u2);
  }

 private:
  double Uniform() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);
  }
  uint64_t state_;
  bool has_spare_ = false;
  double spare_ = 0;
};

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

absl::StatusOr<std::vector<LayerType>> ParseLayerTypeList(const std::string& s) {
  std::vector<LayerType> out;
  if (s.empty()) return out;
  for (absl::string_view part : absl::StrSplit(s, ',')) {
    if (part == "full" || part == "full_attention") {
      out.push_back(LayerType::kFullAttention);
    } else if (part == "sliding" || part == "sliding_attention") {
      out.push_back(LayerType::kSlidingAttention);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("layer type \"", part, "\" (expected full or sliding)"));
    }
  }
  return out;
}

absl::StatusOr<ModelConfig> TinyModelConfig(const TinyModelOptions& o) {
  ModelConfig c;
  c.model_type = o.arch;
  if (o.arch != "llama" && o.arch != "mistral" && o.arch != "qwen2" && o.arch != "qwen3") {
    return absl::InvalidArgumentError(
        absl::StrCat("--arch=", o.arch, " (supported: llama, mistral, qwen2, qwen3)"));
  }
  if (o.layers <= 0 || o.hidden <= 0 || o.heads <= 0 || o.kv_heads <= 0 ||
      o.heads % o.kv_heads != 0 || o.vocab <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad sizes: layers=", o.layers, " hidden=", o.hidden, " heads=", o.heads,
        " kv_heads=", o.kv_heads, " vocab=", o.vocab));
  }
  c.vocab_size = o.vocab;
  c.hidden_size = o.hidden;
  c.intermediate_size = o.intermediate > 0 ? o.intermediate : 2 * o.hidden;
  c.num_layers = o.layers;
  c.num_heads = o.heads;
  c.num_kv_heads = o.kv_heads;
  c.head_dim = o.head_dim > 0 ? o.head_dim : static_cast<int>(o.hidden / o.heads);
  if (c.head_dim % 2 != 0 || c.head_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("head_dim must be even, got ", c.head_dim));
  }
  c.max_position_embeddings = o.max_position;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = o.rope_theta;
  c.tie_word_embeddings = o.tie_embeddings;
  c.qkv_bias = o.arch == "qwen2";
  c.qk_norm = o.arch == "qwen3";
  if (!o.layer_types.empty()) {
    if (static_cast<int>(o.layer_types.size()) != o.layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--layer_types has ", o.layer_types.size(), " entries for ", o.layers, " layers"));
    }
    c.layer_types = o.layer_types;
  } else {
    c.layer_types.assign(o.layers, (o.arch == "mistral" && o.sliding_window > 0)
                                       ? LayerType::kSlidingAttention
                                       : LayerType::kFullAttention);
  }
  if (c.HasSlidingLayers()) {
    if (o.sliding_window <= 0) {
      return absl::InvalidArgumentError("sliding layers need --sliding_window > 0");
    }
    c.sliding_window = o.sliding_window;
  }
  // Round-trip through JSON so the written config is exactly what we parse.
  return ParseModelConfig(ModelConfigToJson(c));
}

absl::Status WriteTinyModel(const TinyModelOptions& options, const std::string& dir) {
  absl::StatusOr<ModelConfig> config = TinyModelConfig(options);
  if (!config.ok()) return config.status();
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::UnavailableError(absl::StrCat("mkdir ", dir, ": ", std::strerror(errno)));
  }
  {
    std::ofstream out(dir + "/config.json", std::ios::trunc);
    out << ModelConfigToJson(*config) << "\n";
    if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", dir, "/config.json"));
  }
  absl::Status tokenizer_written = tokenizer::WriteTinyTokenizer(
      {.vocab = config->vocab_size, .max_position = config->max_position_embeddings}, dir);
  if (!tokenizer_written.ok()) return tokenizer_written;
  // Enumerate names and shapes with a heap-only dry run of the layout.
  std::vector<std::pair<std::string, std::vector<int64_t>>> tensors;
  {
    const ModelConfig& c = *config;
    const int64_t h = c.hidden_size, q = c.QSize(), kv = c.KvSize(), in = c.intermediate_size;
    tensors.push_back({"model.embed_tokens.weight", {c.vocab_size, h}});
    for (int i = 0; i < c.num_layers; ++i) {
      const std::string p = absl::StrCat("model.layers.", i, ".");
      tensors.push_back({p + "input_layernorm.weight", {h}});
      tensors.push_back({p + "self_attn.q_proj.weight", {q, h}});
      tensors.push_back({p + "self_attn.k_proj.weight", {kv, h}});
      tensors.push_back({p + "self_attn.v_proj.weight", {kv, h}});
      if (c.qkv_bias) {
        tensors.push_back({p + "self_attn.q_proj.bias", {q}});
        tensors.push_back({p + "self_attn.k_proj.bias", {kv}});
        tensors.push_back({p + "self_attn.v_proj.bias", {kv}});
      }
      tensors.push_back({p + "self_attn.o_proj.weight", {h, q}});
      if (c.o_bias) tensors.push_back({p + "self_attn.o_proj.bias", {h}});
      if (c.qk_norm) {
        tensors.push_back({p + "self_attn.q_norm.weight", {c.head_dim}});
        tensors.push_back({p + "self_attn.k_norm.weight", {c.head_dim}});
      }
      tensors.push_back({p + "post_attention_layernorm.weight", {h}});
      tensors.push_back({p + "mlp.gate_proj.weight", {in, h}});
      tensors.push_back({p + "mlp.up_proj.weight", {in, h}});
      tensors.push_back({p + "mlp.down_proj.weight", {h, in}});
    }
    tensors.push_back({"model.norm.weight", {h}});
    if (!c.tie_word_embeddings) tensors.push_back({"lm_head.weight", {c.vocab_size, h}});
  }
  SafetensorsWriter writer;
  writer.SetMetadata("format", "pt");
  Normal rng(options.seed);
  for (const auto& [name, shape] : tensors) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> data(n);
    double mean = 0, stddev;
    if (EndsWith(name, "norm.weight")) {
      mean = 1.0;
      stddev = 0.1;
    } else if (EndsWith(name, ".bias")) {
      stddev = 0.1;
    } else if (name == "model.embed_tokens.weight") {
      stddev = 1.0;
    } else if (name == "lm_head.weight") {
      stddev = 4.0 / std::sqrt(static_cast<double>(shape[1]));
    } else {
      stddev = 1.0 / std::sqrt(static_cast<double>(shape[1]));
    }
    for (float& x : data) x = static_cast<float>(mean + stddev * rng.Next());
    absl::Status s = writer.AddFloat(name, options.dtype, shape, data);
    if (!s.ok()) return s;
  }
  return writer.Write(dir + "/model.safetensors");
}

std::vector<int32_t> TinyPrompt(int seed, int len, int vocab) {
  std::vector<int32_t> out;
  uint64_t x = 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(seed + 1);
  for (int i = 0; i < len; ++i) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 29;
    out.push_back(static_cast<int32_t>(x % static_cast<uint64_t>(vocab)));
  }
  return out;
}

}  // namespace engine
}  // namespace colo
