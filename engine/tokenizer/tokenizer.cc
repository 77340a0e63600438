#include "engine/tokenizer/tokenizer.h"

#include <sys/stat.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/json_fields.h"
#include "engine/tokenizer/sentencepiece_tokenizer.h"

namespace colo {
namespace tokenizer {
namespace {

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool DirExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// An optional JSON file of the model directory (absent: an empty object).
absl::StatusOr<Json> ReadOptionalJson(const std::string& dir, const std::string& name) {
  const std::string path = dir + "/" + name;
  if (!FileExists(path)) return Json::object();
  absl::StatusOr<Json> j = ReadJsonFile(path, name);
  if (!j.ok()) return j.status();
  if (!j->is_object())
    return absl::InvalidArgumentError(absl::StrCat(name, ": expected a JSON object"));
  return j;
}

// tokenizer_config.json names tokens either as a string or as an
// AddedToken object {"content": ...}.
absl::StatusOr<std::optional<std::string>> ConfigToken(const Json& config, absl::string_view key) {
  constexpr absl::string_view kWhere = "tokenizer_config.json: ";
  absl::StatusOr<const Json*> f = GetField(config, kWhere, key);
  if (!f.ok()) return f.status();
  if (*f == nullptr) return std::optional<std::string>();
  if ((*f)->is_string()) return std::optional<std::string>((*f)->get<std::string>());
  if ((*f)->is_object()) {
    std::string content;
    absl::Status s = GetString(**f, FieldPath(kWhere, key), "content", &content, true);
    if (!s.ok()) return s;
    return std::optional<std::string>(content);
  }
  return FieldError(kWhere, key, "expected a token string or {\"content\": ...}");
}

absl::StatusOr<std::optional<int32_t>> ConfigTokenId(const Json& config, absl::string_view key,
                                                     const Tokenizer& tokenizer) {
  absl::StatusOr<std::optional<std::string>> token = ConfigToken(config, key);
  if (!token.ok()) return token.status();
  if (!token->has_value()) return std::optional<int32_t>();
  std::optional<int32_t> id = tokenizer.TokenToId(**token);
  if (!id.has_value()) {
    return FieldError("tokenizer_config.json: ", key,
                      absl::StrCat("token \"", **token, "\" is not in the vocabulary"));
  }
  return id;
}

// generation_config.json's eos_token_id: a number or a list of numbers.
absl::Status ParseIdList(const Json& j, absl::string_view where, absl::string_view key,
                         std::vector<int32_t>* out) {
  absl::StatusOr<const Json*> f = GetField(j, where, key);
  if (!f.ok()) return f.status();
  if (*f == nullptr) return absl::OkStatus();
  auto add = [&](const Json& v) -> absl::Status {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= (int64_t{1} << 31)) {
      return FieldError(where, key, "expected a token id or a list of token ids");
    }
    out->push_back(static_cast<int32_t>(v.get<int64_t>()));
    return absl::OkStatus();
  };
  if ((*f)->is_array()) {
    for (const Json& v : **f) {
      absl::Status s = add(v);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  return add(**f);
}

absl::Status ParseGenerationDefaults(const Json& g, GenerationDefaults* d) {
  constexpr absl::string_view kWhere = "generation_config.json: ";
  absl::Status s;
  if (!(s = GetDouble(g, kWhere, "temperature", &d->temperature)).ok()) return s;
  if (!(s = GetDouble(g, kWhere, "top_p", &d->top_p)).ok()) return s;
  if (!(s = GetDouble(g, kWhere, "min_p", &d->min_p)).ok()) return s;
  if (!(s = GetDouble(g, kWhere, "repetition_penalty", &d->repetition_penalty)).ok()) return s;
  if (!(s = GetDouble(g, kWhere, "frequency_penalty", &d->frequency_penalty)).ok()) return s;
  if (!(s = GetDouble(g, kWhere, "presence_penalty", &d->presence_penalty)).ok()) return s;
  int64_t v = 0;
  absl::StatusOr<const Json*> f = GetField(g, kWhere, "top_k");
  if (!f.ok()) return f.status();
  if (*f != nullptr) {
    if (!(s = GetInt(g, kWhere, "top_k", &v)).ok()) return s;
    d->top_k = static_cast<int>(std::clamp<int64_t>(v, -1, int64_t{1} << 30));
  }
  if (!(f = GetField(g, kWhere, "max_new_tokens")).ok()) return f.status();
  if (*f != nullptr) {
    if (!(s = GetInt(g, kWhere, "max_new_tokens", &v)).ok()) return s;
    d->max_new_tokens = v;
  }
  if (!(f = GetField(g, kWhere, "do_sample")).ok()) return f.status();
  if (*f != nullptr) {
    bool b = false;
    if (!(s = GetBool(g, kWhere, "do_sample", &b)).ok()) return s;
    d->do_sample = b;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_dir) {
  if (!DirExists(model_dir)) {
    return absl::NotFoundError(absl::StrCat("model directory ", model_dir, " does not exist"));
  }
  absl::StatusOr<Json> config = ReadOptionalJson(model_dir, "tokenizer_config.json");
  if (!config.ok()) return config.status();
  absl::StatusOr<Json> generation = ReadOptionalJson(model_dir, "generation_config.json");
  if (!generation.ok()) return generation.status();
  constexpr absl::string_view kConfig = "tokenizer_config.json: ";
  std::optional<bool> add_bos, add_eos;
  for (auto [key, out] :
       {std::pair<absl::string_view, std::optional<bool>*>{"add_bos_token", &add_bos},
        {"add_eos_token", &add_eos}}) {
    absl::StatusOr<const Json*> f = GetField(*config, kConfig, key);
    if (!f.ok()) return f.status();
    if (*f == nullptr) continue;
    bool b = false;
    absl::Status s = GetBool(*config, kConfig, key, &b);
    if (!s.ok()) return s;
    *out = b;
  }

  std::unique_ptr<Tokenizer> tokenizer;
  HfTokenizer* hf = nullptr;
  SentencePieceTokenizer* sp = nullptr;
  const std::string json_path = model_dir + "/tokenizer.json";
  const std::string model_path = model_dir + "/tokenizer.model";
  if (FileExists(json_path)) {
    absl::StatusOr<std::string> text = ReadFile(json_path);
    if (!text.ok()) return text.status();
    absl::StatusOr<std::unique_ptr<HfTokenizer>> t = HfTokenizer::FromJson(*text);
    if (!t.ok()) return t.status();
    hf = t->get();
    tokenizer = std::move(*t);
    tokenizer->source_ = "tokenizer.json";
  } else if (FileExists(model_path)) {
    absl::StatusOr<std::string> bytes = ReadFile(model_path);
    if (!bytes.ok()) return bytes.status();
    SentencePieceOptions o;
    o.add_bos = add_bos;
    o.add_eos = add_eos.value_or(false);
    absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> t =
        SentencePieceTokenizer::FromSerializedProto(*bytes, o);
    if (!t.ok()) return t.status();
    sp = t->get();
    tokenizer = std::move(*t);
    tokenizer->source_ = "tokenizer.model";
  } else {
    return absl::NotFoundError(
        absl::StrCat("model directory ", model_dir, " has no tokenizer.json or tokenizer.model"));
  }

  absl::StatusOr<std::optional<int32_t>> id = ConfigTokenId(*config, "bos_token", *tokenizer);
  if (!id.ok()) return id.status();
  tokenizer->bos_id_ = *id;
  if (!(id = ConfigTokenId(*config, "eos_token", *tokenizer)).ok()) return id.status();
  tokenizer->eos_id_ = *id;
  // A pad token outside the vocabulary (transformers would append it as a
  // new id the model never produces) leaves pad_id unset.
  absl::StatusOr<std::optional<std::string>> pad = ConfigToken(*config, "pad_token");
  if (!pad.ok()) return pad.status();
  if (pad->has_value()) tokenizer->pad_id_ = tokenizer->TokenToId(**pad);
  if (sp != nullptr) {
    if (!tokenizer->bos_id_.has_value()) tokenizer->bos_id_ = sp->model_bos_id();
    if (!tokenizer->eos_id_.has_value()) tokenizer->eos_id_ = sp->model_eos_id();
  }
  // transformers rebuilds the post-processor from these two flags when
  // tokenizer_config.json sets either of them.
  if (hf != nullptr && (add_bos.has_value() || add_eos.has_value())) {
    std::optional<int32_t> bos, eos;
    if (add_bos.value_or(false)) bos = tokenizer->bos_id_;
    if (add_eos.value_or(false)) eos = tokenizer->eos_id_;
    hf->SetBosEosTemplate(bos, eos);
  }

  constexpr absl::string_view kGeneration = "generation_config.json: ";
  std::vector<int32_t> eos_ids;
  absl::Status s = ParseIdList(*generation, kGeneration, "eos_token_id", &eos_ids);
  if (!s.ok()) return s;
  if (tokenizer->eos_id_.has_value()) eos_ids.push_back(*tokenizer->eos_id_);
  for (int32_t e : eos_ids) {
    if (std::find(tokenizer->eos_ids_.begin(), tokenizer->eos_ids_.end(), e) ==
        tokenizer->eos_ids_.end()) {
      tokenizer->eos_ids_.push_back(e);
    }
  }
  s = ParseGenerationDefaults(*generation, &tokenizer->generation_defaults_);
  if (!s.ok()) return s;
  return tokenizer;
}

}  // namespace tokenizer
}  // namespace colo
