#include "engine/model/tiny_model.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/model/model_weights.h"
#include "engine/model/mxfp4.h"
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
  const bool gpt_oss = o.arch == "gpt_oss", qwen3_moe = o.arch == "qwen3_moe";
  if (o.arch != "llama" && o.arch != "mistral" && o.arch != "qwen2" && o.arch != "qwen3" &&
      !qwen3_moe && !gpt_oss) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--arch=", o.arch, " (supported: llama, mistral, qwen2, qwen3, qwen3_moe, gpt_oss)"));
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
  c.max_position_embeddings = o.max_position > 0 ? o.max_position : gpt_oss ? 131072 : 2048;
  c.rms_norm_eps = gpt_oss ? 1e-5 : 1e-6;
  c.rope_theta = o.rope_theta > 0 ? o.rope_theta : gpt_oss ? 150000.0 : 10000.0;
  c.tie_word_embeddings = o.tie_embeddings;
  c.qkv_bias = o.arch == "qwen2" || gpt_oss;
  c.o_bias = gpt_oss;
  c.qk_norm = o.arch == "qwen3" || qwen3_moe;
  c.attention_sinks = gpt_oss;
  if (gpt_oss) {
    // gpt-oss's published rope parameters.
    c.rope_scaling.type = kernels::RopeScaling::Type::kYarn;
    c.rope_scaling.factor = 32;
    c.rope_scaling.beta_fast = 32;
    c.rope_scaling.beta_slow = 1;
    c.rope_scaling.truncate = false;
    c.rope_scaling.original_max_position_embeddings = 4096;
  }
  if (qwen3_moe || gpt_oss) {
    if (o.experts <= 0 || o.experts_per_token <= 0 || o.experts_per_token > o.experts) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--experts=", o.experts, " --experts_per_token=", o.experts_per_token,
          ": need 0 < experts_per_token <= experts"));
    }
    c.moe.num_experts = o.experts;
    c.moe.experts_per_token = o.experts_per_token;
    c.moe.intermediate_size = o.moe_intermediate > 0 ? o.moe_intermediate : o.hidden;
    c.moe.norm_topk_prob = o.norm_topk_prob;
    c.decoder_sparse_step = o.decoder_sparse_step;
    c.mlp_only_layers = o.mlp_only_layers;
    c.moe.mxfp4 = o.mxfp4;
    if (gpt_oss) c.intermediate_size = c.moe.intermediate_size;
    if (o.mxfp4 && (!gpt_oss || o.hidden % 32 != 0 || c.moe.intermediate_size % 32 != 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--mxfp4 needs --arch=gpt_oss and hidden (", o.hidden, ") and moe_intermediate (",
          c.moe.intermediate_size, ") multiples of 32"));
    }
  } else if (o.mxfp4) {
    return absl::InvalidArgumentError("--mxfp4 needs --arch=gpt_oss");
  }
  if (!o.layer_types.empty()) {
    if (static_cast<int>(o.layer_types.size()) != o.layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--layer_types has ", o.layer_types.size(), " entries for ", o.layers, " layers"));
    }
    c.layer_types = o.layer_types;
  } else if (gpt_oss) {
    for (int i = 0; i < o.layers; ++i) {
      c.layer_types.push_back(i % 2 == 0 ? LayerType::kSlidingAttention
                                         : LayerType::kFullAttention);
    }
  } else {
    c.layer_types.assign(o.layers, ((o.arch == "mistral" || qwen3_moe) && o.sliding_window > 0)
                                       ? LayerType::kSlidingAttention
                                       : LayerType::kFullAttention);
  }
  if (c.HasSlidingLayers()) {
    const int64_t window = o.sliding_window > 0 ? o.sliding_window : gpt_oss ? 128 : 0;
    if (window <= 0) {
      return absl::InvalidArgumentError("sliding layers need --sliding_window > 0");
    }
    if (qwen3_moe) {
      for (LayerType t : c.layer_types) {
        if (t != LayerType::kSlidingAttention) {
          return absl::InvalidArgumentError(
              "qwen3_moe slides in every layer or none (transformers has no layer_types for it)");
        }
      }
    }
    c.sliding_window = window;
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
  const bool gpt_oss = config->model_type == "gpt_oss";
  SafetensorsWriter writer;
  writer.SetMetadata("format", "pt");
  Normal rng(options.seed);
  for (const auto& [name, shape] : ModelWeights::TensorShapes(*config)) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> data(n);
    double mean = 0, stddev;
    if (EndsWith(name, "norm.weight")) {
      mean = 1.0;
      stddev = 0.1;
    } else if (EndsWith(name, ".bias") || EndsWith(name, "_bias")) {
      stddev = 0.1;
    } else if (EndsWith(name, ".sinks")) {
      stddev = 1.0;
    } else if (name == "model.embed_tokens.weight") {
      stddev = 1.0;
    } else if (name == "lm_head.weight") {
      stddev = 4.0 / std::sqrt(static_cast<double>(shape[1]));
    } else if (EndsWith(name, "experts.gate_up_proj")) {
      stddev = 3.0 / std::sqrt(static_cast<double>(shape[1]));
    } else {
      stddev = 1.0 / std::sqrt(static_cast<double>(shape[1]));
    }
    for (float& x : data) x = static_cast<float>(mean + stddev * rng.Next());
    const bool quantized = gpt_oss && config->moe.mxfp4 &&
                           (EndsWith(name, "experts.gate_up_proj") ||
                            EndsWith(name, "experts.down_proj"));
    if (quantized) {
      // [E][cols][rows] -> blocks [E][rows][cols/32][16] + scales [E][rows][cols/32].
      std::vector<uint8_t> blocks, scales;
      QuantizeMxfp4(data.data(), shape[0], shape[2], shape[1], &blocks, &scales);
      const int64_t groups = shape[1] / kMxfp4BlockValues;
      absl::Status s = writer.AddRaw(Mxfp4BlocksName(name), "U8",
                                     {shape[0], shape[2], groups, kMxfp4BlockValues / 2},
                                     std::string(blocks.begin(), blocks.end()));
      if (!s.ok()) return s;
      s = writer.AddRaw(Mxfp4ScalesName(name), "U8", {shape[0], shape[2], groups},
                        std::string(scales.begin(), scales.end()));
      if (!s.ok()) return s;
      continue;
    }
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
