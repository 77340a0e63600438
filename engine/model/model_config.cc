#include "engine/model/model_config.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace colo {
namespace engine {
namespace {

using json = nlohmann::json;

absl::Status Invalid(absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: ", msg));
}

// Reads an optional integer field; keeps `*out` when absent or null.
absl::Status GetInt(const json& j, const char* key, bool required, int64_t* out) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) return Invalid(absl::StrCat("missing required field \"", key, "\""));
    return absl::OkStatus();
  }
  const json& v = j[key];
  if (!v.is_number_integer()) {
    return Invalid(absl::StrCat("field \"", key, "\" must be an integer, got ",
                                v.dump()));
  }
  *out = v.get<int64_t>();
  return absl::OkStatus();
}

absl::Status GetDouble(const json& j, const char* key, double* out) {
  if (!j.contains(key) || j[key].is_null()) return absl::OkStatus();
  const json& v = j[key];
  if (!v.is_number()) {
    return Invalid(absl::StrCat("field \"", key, "\" must be a number, got ", v.dump()));
  }
  *out = v.get<double>();
  return absl::OkStatus();
}

absl::Status GetBool(const json& j, const char* key, bool* out) {
  if (!j.contains(key) || j[key].is_null()) return absl::OkStatus();
  const json& v = j[key];
  if (!v.is_boolean()) {
    return Invalid(absl::StrCat("field \"", key, "\" must be a boolean, got ", v.dump()));
  }
  *out = v.get<bool>();
  return absl::OkStatus();
}

absl::Status GetString(const json& j, const char* key, std::string* out) {
  if (!j.contains(key) || j[key].is_null()) return absl::OkStatus();
  const json& v = j[key];
  if (!v.is_string()) {
    return Invalid(absl::StrCat("field \"", key, "\" must be a string, got ", v.dump()));
  }
  *out = v.get<std::string>();
  return absl::OkStatus();
}

#define COLO_CFG_RETURN_IF_ERROR(expr) \
  do {                                 \
    absl::Status _s = (expr);          \
    if (!_s.ok()) return _s;           \
  } while (0)

absl::Status ParseRopeScaling(const json& j, ModelConfig* c) {
  if (!j.contains("rope_scaling") || j["rope_scaling"].is_null()) {
    return absl::OkStatus();
  }
  const json& rs = j["rope_scaling"];
  if (!rs.is_object()) {
    return Invalid(absl::StrCat("rope_scaling must be an object or null, got ", rs.dump()));
  }
  std::string type;
  COLO_CFG_RETURN_IF_ERROR(GetString(rs, "rope_type", &type));
  if (type.empty()) COLO_CFG_RETURN_IF_ERROR(GetString(rs, "type", &type));
  kernels::RopeScaling& s = c->rope_scaling;
  if (type == "default" || type.empty()) {
    s.type = kernels::RopeScaling::Type::kNone;
    return absl::OkStatus();
  }
  COLO_CFG_RETURN_IF_ERROR(GetDouble(rs, "factor", &s.factor));
  if (!(s.factor > 0)) return Invalid(absl::StrCat("rope_scaling.factor must be > 0, got ", s.factor));
  if (type == "linear") {
    s.type = kernels::RopeScaling::Type::kLinear;
    return absl::OkStatus();
  }
  if (type == "llama3") {
    s.type = kernels::RopeScaling::Type::kLlama3;
    COLO_CFG_RETURN_IF_ERROR(GetDouble(rs, "low_freq_factor", &s.low_freq_factor));
    COLO_CFG_RETURN_IF_ERROR(GetDouble(rs, "high_freq_factor", &s.high_freq_factor));
    COLO_CFG_RETURN_IF_ERROR(GetDouble(rs, "original_max_position_embeddings",
                                       &s.original_max_position_embeddings));
    if (!(s.high_freq_factor > s.low_freq_factor) || !(s.low_freq_factor > 0) ||
        !(s.original_max_position_embeddings > 0)) {
      return Invalid(absl::StrCat(
          "rope_scaling (llama3) needs 0 < low_freq_factor < high_freq_factor and "
          "original_max_position_embeddings > 0, got low=",
          s.low_freq_factor, " high=", s.high_freq_factor,
          " original_max_position_embeddings=", s.original_max_position_embeddings));
    }
    return absl::OkStatus();
  }
  return Invalid(absl::StrCat("unsupported rope_scaling type \"", type,
                              "\" (supported: default, linear, llama3)"));
}

absl::Status ParseLayerTypes(const json& j, ModelConfig* c) {
  const int n = c->num_layers;
  c->layer_types.assign(n, LayerType::kFullAttention);
  int64_t window = 0;
  COLO_CFG_RETURN_IF_ERROR(GetInt(j, "sliding_window", false, &window));
  bool use_sliding = c->model_type == "mistral";
  if (c->model_type == "qwen2" || c->model_type == "qwen3") {
    use_sliding = false;
    COLO_CFG_RETURN_IF_ERROR(GetBool(j, "use_sliding_window", &use_sliding));
  }
  if (j.contains("layer_types") && !j["layer_types"].is_null()) {
    const json& lt = j["layer_types"];
    if (!lt.is_array() || static_cast<int>(lt.size()) != n) {
      return Invalid(absl::StrCat("layer_types must be an array of ", n,
                                  " strings (num_hidden_layers), got ", lt.dump()));
    }
    for (int i = 0; i < n; ++i) {
      if (!lt[i].is_string()) return Invalid(absl::StrCat("layer_types[", i, "] is not a string"));
      const std::string t = lt[i].get<std::string>();
      if (t == "full_attention") {
        c->layer_types[i] = LayerType::kFullAttention;
      } else if (t == "sliding_attention") {
        c->layer_types[i] = LayerType::kSlidingAttention;
      } else {
        return Invalid(absl::StrCat("unsupported layer_types[", i, "] \"", t,
                                    "\" (supported: full_attention, sliding_attention)"));
      }
    }
  } else if (use_sliding && window > 0) {
    int64_t first_sliding = 0;
    if (c->model_type == "qwen2" || c->model_type == "qwen3") {
      first_sliding = c->num_layers;
      COLO_CFG_RETURN_IF_ERROR(GetInt(j, "max_window_layers", false, &first_sliding));
    }
    for (int i = 0; i < n; ++i) {
      if (i >= first_sliding) c->layer_types[i] = LayerType::kSlidingAttention;
    }
  }
  if (c->HasSlidingLayers()) {
    if (window <= 0) {
      return Invalid(absl::StrCat("sliding_attention layers need sliding_window > 0, got ",
                                  window));
    }
    c->sliding_window = window;
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ParseJson(const json& j) {
  if (!j.is_object()) return Invalid("top level is not a JSON object");
  ModelConfig c;
  COLO_CFG_RETURN_IF_ERROR(GetString(j, "model_type", &c.model_type));
  if (c.model_type != "llama" && c.model_type != "mistral" &&
      c.model_type != "qwen2" && c.model_type != "qwen3") {
    return Invalid(absl::StrCat("unsupported model_type \"", c.model_type,
                                "\" (supported: llama, mistral, qwen2, qwen3)"));
  }
  int64_t layers = 0, heads = 0, kv_heads = -1, head_dim = -1;
  COLO_CFG_RETURN_IF_ERROR(GetInt(j, "vocab_size", true, &c.vocab_size));
  COLO_CFG_RETURN_IF_ERROR(GetInt(j, "hidden_size", true, &c.hidden_size));
  COLO_CFG_RETURN_IF_ERROR(GetInt(j, "intermediate_size", true, &c.intermediate_size));
  COLO_CFG_RETURN_IF_ERROR(GetInt(j, "num_hidden_layers", true, &layers));
  COLO_CFG_RETURN_IF_ERROR(GetInt(j, "num_attention_heads", true, &heads));
  COLO_CFG_RETURN_IF_ERROR(GetInt(j, "num_key_value_heads", false, &kv_heads));
  COLO_CFG_RETURN_IF_ERROR(GetInt(j, "head_dim", false, &head_dim));
  c.max_position_embeddings = 2048;
  COLO_CFG_RETURN_IF_ERROR(
      GetInt(j, "max_position_embeddings", false, &c.max_position_embeddings));
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 ||
      layers <= 0 || heads <= 0 || layers > 100000 || heads > 100000) {
    return Invalid(absl::StrCat(
        "sizes must be positive: vocab_size=", c.vocab_size, " hidden_size=",
        c.hidden_size, " intermediate_size=", c.intermediate_size,
        " num_hidden_layers=", layers, " num_attention_heads=", heads));
  }
  if (kv_heads < 0) kv_heads = heads;
  if (kv_heads <= 0 || heads % kv_heads != 0) {
    return Invalid(absl::StrCat("num_attention_heads (", heads,
                                ") must be a positive multiple of num_key_value_heads (",
                                kv_heads, ")"));
  }
  if (head_dim < 0) {
    if (c.hidden_size % heads != 0) {
      return Invalid(absl::StrCat("hidden_size (", c.hidden_size,
                                  ") is not divisible by num_attention_heads (", heads,
                                  ") and head_dim is not given"));
    }
    head_dim = c.hidden_size / heads;
  }
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim > 4096) {
    return Invalid(absl::StrCat("head_dim must be even and in (0, 4096], got ", head_dim));
  }
  c.num_layers = static_cast<int>(layers);
  c.num_heads = static_cast<int>(heads);
  c.num_kv_heads = static_cast<int>(kv_heads);
  c.head_dim = static_cast<int>(head_dim);

  std::string act = "silu";
  COLO_CFG_RETURN_IF_ERROR(GetString(j, "hidden_act", &act));
  if (act != "silu") {
    return Invalid(absl::StrCat("unsupported hidden_act \"", act, "\" (supported: silu)"));
  }
  bool mlp_bias = false;
  COLO_CFG_RETURN_IF_ERROR(GetBool(j, "mlp_bias", &mlp_bias));
  if (mlp_bias) return Invalid("unsupported mlp_bias=true");
  COLO_CFG_RETURN_IF_ERROR(GetDouble(j, "rms_norm_eps", &c.rms_norm_eps));
  COLO_CFG_RETURN_IF_ERROR(GetDouble(j, "rope_theta", &c.rope_theta));
  if (!(c.rope_theta > 0)) return Invalid(absl::StrCat("rope_theta must be > 0, got ", c.rope_theta));
  if (!(c.rms_norm_eps >= 0)) return Invalid(absl::StrCat("rms_norm_eps must be >= 0, got ", c.rms_norm_eps));
  COLO_CFG_RETURN_IF_ERROR(ParseRopeScaling(j, &c));
  COLO_CFG_RETURN_IF_ERROR(GetBool(j, "tie_word_embeddings", &c.tie_word_embeddings));

  bool attention_bias = false;
  COLO_CFG_RETURN_IF_ERROR(GetBool(j, "attention_bias", &attention_bias));
  if (c.model_type == "qwen2") {
    c.qkv_bias = true;
    c.o_bias = false;
  } else {
    c.qkv_bias = attention_bias;
    c.o_bias = attention_bias;
  }
  c.qk_norm = c.model_type == "qwen3";
  COLO_CFG_RETURN_IF_ERROR(ParseLayerTypes(j, &c));
  return c;
}

}  // namespace

bool ModelConfig::HasSlidingLayers() const {
  for (LayerType t : layer_types) {
    if (t == LayerType::kSlidingAttention) return true;
  }
  return false;
}

int64_t ModelConfig::NumParameters() const {
  const int64_t h = hidden_size;
  int64_t per_layer = h * QSize() + 2 * h * KvSize() + QSize() * h +
                      3 * h * intermediate_size + 2 * h;
  if (qkv_bias) per_layer += QSize() + 2 * KvSize();
  if (o_bias) per_layer += h;
  if (qk_norm) per_layer += 2 * head_dim;
  int64_t total = per_layer * num_layers + vocab_size * h + h;
  if (!tie_word_embeddings) total += vocab_size * h;
  return total;
}

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text) {
  json j = json::parse(json_text.begin(), json_text.end(), nullptr,
                       /*allow_exceptions=*/false);
  if (j.is_discarded()) return Invalid("not valid JSON");
  return ParseJson(j);
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  absl::StatusOr<ModelConfig> c = ParseModelConfig(ss.str());
  if (!c.ok()) {
    return absl::Status(c.status().code(),
                        absl::StrCat(path, ": ", c.status().message()));
  }
  return c;
}

std::string ModelConfigToJson(const ModelConfig& c) {
  json j;
  const bool qwen = c.model_type == "qwen2" || c.model_type == "qwen3";
  j["model_type"] = c.model_type;
  if (c.model_type == "llama") j["architectures"] = {"LlamaForCausalLM"};
  if (c.model_type == "mistral") j["architectures"] = {"MistralForCausalLM"};
  if (c.model_type == "qwen2") j["architectures"] = {"Qwen2ForCausalLM"};
  if (c.model_type == "qwen3") j["architectures"] = {"Qwen3ForCausalLM"};
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["torch_dtype"] = "float32";
  if (c.model_type != "qwen2") j["attention_bias"] = c.qkv_bias;
  switch (c.rope_scaling.type) {
    case kernels::RopeScaling::Type::kNone:
      j["rope_scaling"] = nullptr;
      break;
    case kernels::RopeScaling::Type::kLinear:
      j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope_scaling.factor}};
      break;
    case kernels::RopeScaling::Type::kLlama3:
      j["rope_scaling"] = {
          {"rope_type", "llama3"},
          {"factor", c.rope_scaling.factor},
          {"low_freq_factor", c.rope_scaling.low_freq_factor},
          {"high_freq_factor", c.rope_scaling.high_freq_factor},
          {"original_max_position_embeddings",
           static_cast<int64_t>(c.rope_scaling.original_max_position_embeddings)}};
      break;
  }
  if (c.HasSlidingLayers()) {
    j["sliding_window"] = c.sliding_window;
    json lt = json::array();
    for (LayerType t : c.layer_types) {
      lt.push_back(t == LayerType::kSlidingAttention ? "sliding_attention"
                                                     : "full_attention");
    }
    j["layer_types"] = lt;
    if (qwen) j["use_sliding_window"] = true;
  } else {
    j["sliding_window"] = nullptr;
    if (qwen) j["use_sliding_window"] = false;
  }
  return j.dump(2);
}

}  // namespace engine
}  // namespace colo
