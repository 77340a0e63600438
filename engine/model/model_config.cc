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

bool IsObject(const json& j, const char* key) {
  return j.contains(key) && j[key].is_object();
}

// rope_theta and the scaling, as transformers 5's convert_rope_params_to_dict:
// the scaling dict is "rope_scaling" when set, else "rope_parameters"; its
// own "rope_theta" wins over the top-level one; gpt_oss defaults to YaRN
// (factor 32, beta_fast 32, beta_slow 1, no truncation, original 4096) and
// theta 150000.
absl::Status ParseRopeScaling(const json& j, ModelConfig* c) {
  const bool gpt_oss = c->model_type == "gpt_oss";
  c->rope_theta = gpt_oss ? 150000.0 : 10000.0;
  COLO_CFG_RETURN_IF_ERROR(GetDouble(j, "rope_theta", &c->rope_theta));
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (j.contains(key) && !j[key].is_null() && !j[key].is_object()) {
      return Invalid(absl::StrCat(key, " must be an object or null, got ", j[key].dump()));
    }
  }
  json rs;
  if (IsObject(j, "rope_scaling")) {
    rs = j["rope_scaling"];
  } else if (IsObject(j, "rope_parameters")) {
    rs = j["rope_parameters"];
  } else if (gpt_oss) {
    rs = {{"rope_type", "yarn"}, {"factor", 32.0}, {"beta_fast", 32.0}, {"beta_slow", 1.0},
          {"truncate", false}, {"original_max_position_embeddings", 4096}};
  } else {
    return absl::OkStatus();
  }
  COLO_CFG_RETURN_IF_ERROR(GetDouble(rs, "rope_theta", &c->rope_theta));
  std::string type;
  COLO_CFG_RETURN_IF_ERROR(GetString(rs, "rope_type", &type));
  if (type.empty()) COLO_CFG_RETURN_IF_ERROR(GetString(rs, "type", &type));
  kernels::RopeScaling& s = c->rope_scaling;
  if (type == "default" || type.empty()) {
    s.type = kernels::RopeScaling::Type::kNone;
    return absl::OkStatus();
  }
  s.original_max_position_embeddings = static_cast<double>(c->max_position_embeddings);
  COLO_CFG_RETURN_IF_ERROR(GetDouble(rs, "original_max_position_embeddings",
                                     &s.original_max_position_embeddings));
  if (!(s.original_max_position_embeddings > 0)) {
    return Invalid(absl::StrCat("rope_scaling.original_max_position_embeddings must be > 0, got ",
                                s.original_max_position_embeddings));
  }
  // yarn derives a missing factor from the context extension.
  s.factor = type == "yarn" ? static_cast<double>(c->max_position_embeddings) /
                                  s.original_max_position_embeddings
                            : 0.0;
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
    if (!(s.high_freq_factor > s.low_freq_factor) || !(s.low_freq_factor > 0)) {
      return Invalid(absl::StrCat(
          "rope_scaling (llama3) needs 0 < low_freq_factor < high_freq_factor, got low=",
          s.low_freq_factor, " high=", s.high_freq_factor));
    }
    return absl::OkStatus();
  }
  if (type == "yarn") {
    s.type = kernels::RopeScaling::Type::kYarn;
    // transformers: `beta_fast or 32`, `beta_slow or 1` (0 means the default).
    double beta_fast = 0, beta_slow = 0;
    COLO_CFG_RETURN_IF_ERROR(GetDouble(rs, "beta_fast", &beta_fast));
    COLO_CFG_RETURN_IF_ERROR(GetDouble(rs, "beta_slow", &beta_slow));
    s.beta_fast = beta_fast != 0 ? beta_fast : 32.0;
    s.beta_slow = beta_slow != 0 ? beta_slow : 1.0;
    if (!(s.beta_fast > 0) || !(s.beta_slow > 0)) {
      return Invalid(absl::StrCat("rope_scaling (yarn) needs beta_fast > 0 and beta_slow > 0, got ",
                                  s.beta_fast, " and ", s.beta_slow));
    }
    s.truncate = true;
    COLO_CFG_RETURN_IF_ERROR(GetBool(rs, "truncate", &s.truncate));
    COLO_CFG_RETURN_IF_ERROR(GetDouble(rs, "attention_factor", &s.attention_factor));
    COLO_CFG_RETURN_IF_ERROR(GetDouble(rs, "mscale", &s.mscale));
    COLO_CFG_RETURN_IF_ERROR(GetDouble(rs, "mscale_all_dim", &s.mscale_all_dim));
    if (s.attention_factor < 0) {
      return Invalid(absl::StrCat("rope_scaling.attention_factor must be >= 0, got ",
                                  s.attention_factor));
    }
    return absl::OkStatus();
  }
  return Invalid(absl::StrCat("unsupported rope_scaling type \"", type,
                              "\" (supported: default, linear, llama3, yarn)"));
}

// num_experts etc. (qwen3_moe, gpt_oss), with transformers' defaults.
absl::Status ParseMoe(const json& j, ModelConfig* c) {
  const bool gpt_oss = c->model_type == "gpt_oss";
  if (c->model_type != "qwen3_moe" && !gpt_oss) {
    c->moe_layers.assign(c->num_layers, false);
    return absl::OkStatus();
  }
  MoeConfig& m = c->moe;
  int64_t experts = 128, per_token = gpt_oss ? 4 : 8, inter = 768, step = 1;
  // HF's attribute_map: num_experts <-> num_local_experts.
  COLO_CFG_RETURN_IF_ERROR(GetInt(j, "num_local_experts", false, &experts));
  COLO_CFG_RETURN_IF_ERROR(GetInt(j, "num_experts", false, &experts));
  COLO_CFG_RETURN_IF_ERROR(GetInt(j, "num_experts_per_tok", false, &per_token));
  if (gpt_oss) {
    inter = c->intermediate_size;
    m.router = MoeRouter::kTopKSoftmax;
    m.layout = ExpertLayout::kFusedTransposed;
    COLO_CFG_RETURN_IF_ERROR(GetDouble(j, "swiglu_alpha", &m.swiglu_alpha));
    COLO_CFG_RETURN_IF_ERROR(GetDouble(j, "swiglu_limit", &m.swiglu_limit));
    if (!(m.swiglu_limit > 0)) {
      return Invalid(absl::StrCat("swiglu_limit must be > 0, got ", m.swiglu_limit));
    }
  } else {
    COLO_CFG_RETURN_IF_ERROR(GetInt(j, "moe_intermediate_size", false, &inter));
    COLO_CFG_RETURN_IF_ERROR(GetBool(j, "norm_topk_prob", &m.norm_topk_prob));
    COLO_CFG_RETURN_IF_ERROR(GetInt(j, "decoder_sparse_step", false, &step));
  }
  if (experts <= 0 || experts > 65536) {
    return Invalid(absl::StrCat("num_experts must be in [1, 65536], got ", experts));
  }
  if (per_token <= 0 || per_token > experts) {
    return Invalid(absl::StrCat("num_experts_per_tok must be in [1, num_experts = ", experts,
                                "], got ", per_token));
  }
  if (inter <= 0) {
    return Invalid(absl::StrCat(gpt_oss ? "intermediate_size" : "moe_intermediate_size",
                                " must be > 0, got ", inter));
  }
  if (step <= 0) return Invalid(absl::StrCat("decoder_sparse_step must be > 0, got ", step));
  m.num_experts = static_cast<int>(experts);
  m.experts_per_token = static_cast<int>(per_token);
  m.intermediate_size = inter;
  c->decoder_sparse_step = static_cast<int>(step);
  if (!gpt_oss && j.contains("mlp_only_layers") && !j["mlp_only_layers"].is_null()) {
    const json& ml = j["mlp_only_layers"];
    if (!ml.is_array()) {
      return Invalid(absl::StrCat("mlp_only_layers must be an array of layer indices, got ",
                                  ml.dump()));
    }
    for (const json& v : ml) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 ||
          v.get<int64_t>() >= c->num_layers) {
        return Invalid(absl::StrCat("mlp_only_layers entry ", v.dump(),
                                    " is not a layer index in [0, ", c->num_layers, ")"));
      }
      c->mlp_only_layers.push_back(v.get<int>());
    }
  }
  c->moe_layers.assign(c->num_layers, false);
  for (int i = 0; i < c->num_layers; ++i) {
    bool sparse = (i + 1) % c->decoder_sparse_step == 0;
    for (int dense : c->mlp_only_layers) sparse = sparse && dense != i;
    c->moe_layers[i] = gpt_oss || sparse;
  }
  if (j.contains("quantization_config") && !j["quantization_config"].is_null()) {
    const json& q = j["quantization_config"];
    std::string method;
    if (q.is_object()) COLO_CFG_RETURN_IF_ERROR(GetString(q, "quant_method", &method));
    if (!q.is_object() || method != "mxfp4" || !gpt_oss) {
      return Invalid(absl::StrCat("unsupported quantization_config.quant_method \"", method,
                                  "\" for model_type ", c->model_type,
                                  " (supported: mxfp4 expert weights of gpt_oss)"));
    }
    m.mxfp4 = true;
  }
  return absl::OkStatus();
}

absl::Status ParseLayerTypes(const json& j, ModelConfig* c) {
  const int n = c->num_layers;
  c->layer_types.assign(n, LayerType::kFullAttention);
  int64_t window = 0;
  COLO_CFG_RETURN_IF_ERROR(GetInt(j, "sliding_window", false, &window));
  const bool qwen = c->model_type == "qwen2" || c->model_type == "qwen3";
  const bool gpt_oss = c->model_type == "gpt_oss";
  bool use_sliding = c->model_type == "mistral";
  if (qwen || c->model_type == "qwen3_moe") {
    use_sliding = false;
    COLO_CFG_RETURN_IF_ERROR(GetBool(j, "use_sliding_window", &use_sliding));
  }
  if (gpt_oss) {
    window = 128;
    COLO_CFG_RETURN_IF_ERROR(GetInt(j, "sliding_window", false, &window));
  }
  // Qwen3MoeConfig has no layer_types (transformers ignores the key there).
  const bool has_layer_types = c->model_type != "qwen3_moe" && j.contains("layer_types") &&
                               !j["layer_types"].is_null();
  if (gpt_oss && !has_layer_types) {
    // GptOssConfig's default: sliding on even layers, full on odd ones.
    for (int i = 0; i < n; ++i) {
      if ((i + 1) % 2 != 0) c->layer_types[i] = LayerType::kSlidingAttention;
    }
  }
  if (has_layer_types) {
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
    if (qwen) {
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
  if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2" &&
      c.model_type != "qwen3" && c.model_type != "qwen3_moe" && c.model_type != "gpt_oss") {
    return Invalid(absl::StrCat(
        "unsupported model_type \"", c.model_type,
        "\" (supported: llama, mistral, qwen2, qwen3, qwen3_moe, gpt_oss)"));
  }
  const bool gpt_oss = c.model_type == "gpt_oss";
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
  if (head_dim < 0 && gpt_oss) head_dim = 64;
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
  if (gpt_oss) c.rms_norm_eps = 1e-5;
  COLO_CFG_RETURN_IF_ERROR(GetDouble(j, "rms_norm_eps", &c.rms_norm_eps));
  if (!(c.rms_norm_eps >= 0)) return Invalid(absl::StrCat("rms_norm_eps must be >= 0, got ", c.rms_norm_eps));
  COLO_CFG_RETURN_IF_ERROR(ParseRopeScaling(j, &c));
  if (!(c.rope_theta > 0)) return Invalid(absl::StrCat("rope_theta must be > 0, got ", c.rope_theta));
  COLO_CFG_RETURN_IF_ERROR(GetBool(j, "tie_word_embeddings", &c.tie_word_embeddings));

  bool attention_bias = gpt_oss;
  COLO_CFG_RETURN_IF_ERROR(GetBool(j, "attention_bias", &attention_bias));
  if (c.model_type == "qwen2") {
    c.qkv_bias = true;
    c.o_bias = false;
  } else {
    c.qkv_bias = attention_bias;
    c.o_bias = attention_bias;
  }
  c.qk_norm = c.model_type == "qwen3" || c.model_type == "qwen3_moe";
  c.attention_sinks = gpt_oss;
  COLO_CFG_RETURN_IF_ERROR(ParseLayerTypes(j, &c));
  COLO_CFG_RETURN_IF_ERROR(ParseMoe(j, &c));
  return c;
}

}  // namespace

bool ModelConfig::HasSlidingLayers() const {
  for (LayerType t : layer_types) {
    if (t == LayerType::kSlidingAttention) return true;
  }
  return false;
}

namespace {

// Parameters of one layer's MLP: `experts` of the MoE experts (plus the
// router) for a MoE layer, the dense MLP otherwise.
int64_t MlpParameters(const ModelConfig& c, int layer, int64_t experts) {
  const int64_t h = c.hidden_size;
  if (!c.IsMoeLayer(layer)) return 3 * h * c.intermediate_size;
  const int64_t inter = c.moe.intermediate_size;
  int64_t per_expert = 3 * h * inter;
  int64_t router = int64_t{c.moe.num_experts} * h;
  if (c.moe.layout == ExpertLayout::kFusedTransposed) {
    per_expert += 2 * inter + h;  // biases
    router += c.moe.num_experts;
  }
  return experts * per_expert + router;
}

int64_t CountParameters(const ModelConfig& c, int64_t experts, bool count_lm_head) {
  const int64_t h = c.hidden_size;
  int64_t attention = h * c.QSize() + 2 * h * c.KvSize() + c.QSize() * h + 2 * h;
  if (c.qkv_bias) attention += c.QSize() + 2 * c.KvSize();
  if (c.o_bias) attention += h;
  if (c.qk_norm) attention += 2 * c.head_dim;
  if (c.attention_sinks) attention += c.num_heads;
  int64_t total = c.vocab_size * h + h;
  for (int i = 0; i < c.num_layers; ++i) total += attention + MlpParameters(c, i, experts);
  if (count_lm_head) total += c.vocab_size * h;
  return total;
}

}  // namespace

int64_t ModelConfig::NumParameters() const {
  return CountParameters(*this, moe.num_experts, !tie_word_embeddings);
}

int64_t ModelConfig::NumActiveParameters() const {
  return CountParameters(*this, moe.experts_per_token, !tie_word_embeddings);
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
  if (c.model_type == "qwen3_moe") j["architectures"] = {"Qwen3MoeForCausalLM"};
  if (c.model_type == "gpt_oss") j["architectures"] = {"GptOssForCausalLM"};
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
      // gpt_oss would default to YaRN.
      if (c.model_type == "gpt_oss") {
        j["rope_scaling"] = {{"rope_type", "default"}};
      } else {
        j["rope_scaling"] = nullptr;
      }
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
    case kernels::RopeScaling::Type::kYarn: {
      const kernels::RopeScaling& s = c.rope_scaling;
      j["rope_scaling"] = {
          {"rope_type", "yarn"},
          {"factor", s.factor},
          {"beta_fast", s.beta_fast},
          {"beta_slow", s.beta_slow},
          {"truncate", s.truncate},
          {"original_max_position_embeddings",
           static_cast<int64_t>(s.original_max_position_embeddings)}};
      if (s.attention_factor > 0) j["rope_scaling"]["attention_factor"] = s.attention_factor;
      if (s.mscale > 0) j["rope_scaling"]["mscale"] = s.mscale;
      if (s.mscale_all_dim > 0) j["rope_scaling"]["mscale_all_dim"] = s.mscale_all_dim;
      break;
    }
  }
  if (c.model_type == "qwen3_moe") {
    j["num_experts"] = c.moe.num_experts;
    j["num_experts_per_tok"] = c.moe.experts_per_token;
    j["moe_intermediate_size"] = c.moe.intermediate_size;
    j["norm_topk_prob"] = c.moe.norm_topk_prob;
    j["decoder_sparse_step"] = c.decoder_sparse_step;
    j["mlp_only_layers"] = c.mlp_only_layers;
  }
  if (c.model_type == "gpt_oss") {
    j["num_local_experts"] = c.moe.num_experts;
    j["num_experts_per_tok"] = c.moe.experts_per_token;
    j["experts_per_token"] = c.moe.experts_per_token;
    j["swiglu_limit"] = c.moe.swiglu_limit;
    j["swiglu_alpha"] = c.moe.swiglu_alpha;
    if (c.moe.mxfp4) {
      // As the published gpt-oss checkpoints: only the experts are MXFP4.
      j["quantization_config"] = {
          {"quant_method", "mxfp4"},
          {"modules_to_not_convert",
           {"model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens",
            "lm_head"}}};
    }
  }
  const bool qwen3_moe = c.model_type == "qwen3_moe";
  json lt = json::array();
  for (LayerType t : c.layer_types) {
    lt.push_back(t == LayerType::kSlidingAttention ? "sliding_attention" : "full_attention");
  }
  if (c.HasSlidingLayers()) {
    j["sliding_window"] = c.sliding_window;
    // Qwen3MoeConfig has no layer_types: every layer slides.
    if (!qwen3_moe) j["layer_types"] = lt;
    if (qwen || qwen3_moe) j["use_sliding_window"] = true;
  } else {
    j["sliding_window"] = nullptr;
    if (qwen || qwen3_moe) j["use_sliding_window"] = false;
    // gpt_oss would default to alternating layers.
    if (c.model_type == "gpt_oss") j["layer_types"] = lt;
  }
  return j.dump(2);
}

}  // namespace engine
}  // namespace colo
