#include "engine/tokenizer/tokenize_main_lib.h"

#include <iostream>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/tokenizer/incremental_decoder.h"
#include "engine/tokenizer/json_fields.h"

ABSL_FLAG(std::string, model, "", "Model directory (tokenizer.json or tokenizer.model).");
ABSL_FLAG(std::string, text, "", "Text to encode (prints the ids).");
ABSL_FLAG(std::string, ids, "", "Comma-separated ids to decode (prints the text).");
ABSL_FLAG(bool, jsonl, false, "Serve JSON-lines requests on stdin (see tokenize_main_lib.h).");
ABSL_FLAG(bool, add_special_tokens, true, "With --text: add the model's special tokens.");
ABSL_FLAG(bool, skip_special_tokens, false, "With --ids: drop special tokens.");

namespace colo {
namespace tokenizer {
namespace {

std::string Reply(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string ErrorReply(const absl::Status& s) {
  Json j;
  j["error"] = std::string(s.message());
  j["code"] = absl::StatusCodeToString(s.code());
  return Reply(j);
}

absl::StatusOr<std::vector<int32_t>> IdList(const Json& req, const char* key) {
  std::vector<int32_t> ids;
  auto it = req.find(key);
  if (it == req.end()) return ids;
  if (!it->is_array())
    return absl::InvalidArgumentError(std::string(key) + ": expected an array of ids");
  for (const Json& v : *it) {
    if (!v.is_number_integer() || v.get<int64_t>() < INT32_MIN || v.get<int64_t>() > INT32_MAX) {
      return absl::InvalidArgumentError(std::string(key) + ": expected 32-bit integer ids");
    }
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  return ids;
}

absl::StatusOr<std::string> FromHex(const std::string& hex) {
  if (hex.size() % 2 != 0) return absl::InvalidArgumentError("encode_hex: odd number of digits");
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    int v = 0;
    for (int k = 0; k < 2; ++k) {
      const char c = hex[i + k];
      int d = -1;
      if (c >= '0' && c <= '9') d = c - '0';
      if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      if (d < 0) return absl::InvalidArgumentError("encode_hex: not a hex digit");
      v = v * 16 + d;
    }
    out.push_back(static_cast<char>(v));
  }
  return out;
}

bool BoolField(const Json& req, const char* key, bool fallback) {
  auto it = req.find(key);
  return it != req.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

Json OptionalId(const std::optional<int32_t>& id) {
  return id.has_value() ? Json(*id) : Json(nullptr);
}

absl::StatusOr<Json> Handle(const Tokenizer& tokenizer, const Json& req) {
  if (!req.is_object()) return absl::InvalidArgumentError("expected a JSON object");
  Json out;
  if (req.contains("encode") || req.contains("encode_hex")) {
    std::string text;
    if (req.contains("encode_hex")) {
      if (!req["encode_hex"].is_string())
        return absl::InvalidArgumentError("encode_hex: expected a string");
      absl::StatusOr<std::string> bytes = FromHex(req["encode_hex"].get<std::string>());
      if (!bytes.ok()) return bytes.status();
      text = *bytes;
    } else {
      if (!req["encode"].is_string())
        return absl::InvalidArgumentError("encode: expected a string");
      text = req["encode"].get<std::string>();
    }
    EncodeOptions o;
    o.add_special_tokens = BoolField(req, "add_special_tokens", true);
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text, o);
    if (!ids.ok()) return ids.status();
    out["ids"] = *ids;
    return out;
  }
  DecodeOptions d;
  d.skip_special_tokens = BoolField(req, "skip_special_tokens", false);
  if (req.contains("decode")) {
    absl::StatusOr<std::vector<int32_t>> ids = IdList(req, "decode");
    if (!ids.ok()) return ids.status();
    absl::StatusOr<std::string> text = tokenizer.Decode(*ids, d);
    if (!text.ok()) return text.status();
    out["text"] = *text;
    return out;
  }
  if (req.contains("stream")) {
    absl::StatusOr<std::vector<int32_t>> ids = IdList(req, "stream");
    if (!ids.ok()) return ids.status();
    absl::StatusOr<std::vector<int32_t>> context = IdList(req, "context");
    if (!context.ok()) return context.status();
    IncrementalDecoder decoder(&tokenizer, d, *context);
    Json deltas = Json::array();
    for (int32_t id : *ids) {
      absl::StatusOr<std::string> delta = decoder.Append(id);
      if (!delta.ok()) return delta.status();
      deltas.push_back(*delta);
    }
    absl::StatusOr<std::string> last = decoder.Finish();
    if (!last.ok()) return last.status();
    deltas.push_back(*last);
    out["deltas"] = deltas;
    out["text"] = decoder.text();
    return out;
  }
  if (req.contains("info")) {
    out["vocab_size"] = tokenizer.vocab_size();
    out["bos_id"] = OptionalId(tokenizer.bos_id());
    out["eos_id"] = OptionalId(tokenizer.eos_id());
    out["pad_id"] = OptionalId(tokenizer.pad_id());
    out["eos_ids"] = tokenizer.eos_ids();
    out["source"] = tokenizer.source();
    const GenerationDefaults& g = tokenizer.generation_defaults();
    Json gen = Json::object();
    if (g.temperature) gen["temperature"] = *g.temperature;
    if (g.top_p) gen["top_p"] = *g.top_p;
    if (g.top_k) gen["top_k"] = *g.top_k;
    if (g.min_p) gen["min_p"] = *g.min_p;
    if (g.repetition_penalty) gen["repetition_penalty"] = *g.repetition_penalty;
    if (g.max_new_tokens) gen["max_new_tokens"] = *g.max_new_tokens;
    if (g.do_sample) gen["do_sample"] = *g.do_sample;
    out["generation_defaults"] = gen;
    return out;
  }
  if (req.contains("token_to_id")) {
    if (!req["token_to_id"].is_string())
      return absl::InvalidArgumentError("token_to_id: expected a string");
    out["id"] = OptionalId(tokenizer.TokenToId(req["token_to_id"].get<std::string>()));
    return out;
  }
  if (req.contains("id_to_token") || req.contains("is_special")) {
    const char* key = req.contains("id_to_token") ? "id_to_token" : "is_special";
    if (!req[key].is_number_integer())
      return absl::InvalidArgumentError(std::string(key) + ": expected an id");
    const int32_t id = static_cast<int32_t>(req[key].get<int64_t>());
    if (req.contains("is_special")) {
      out["special"] = tokenizer.IsSpecial(id);
    } else {
      std::optional<std::string> t = tokenizer.IdToToken(id);
      out["token"] = t.has_value() ? Json(*t) : Json(nullptr);
    }
    return out;
  }
  return absl::InvalidArgumentError(
      "expected one of encode, encode_hex, decode, stream, info, token_to_id, id_to_token, "
      "is_special");
}

}  // namespace

std::string HandleJsonRequest(const Tokenizer& tokenizer, const std::string& line) {
  absl::StatusOr<Json> req = ParseJson(line, "request");
  if (!req.ok()) return ErrorReply(req.status());
  absl::StatusOr<Json> reply = Handle(tokenizer, *req);
  if (!reply.ok()) return ErrorReply(reply.status());
  return Reply(*reply);
}

void ServeJsonLines(const Tokenizer& tokenizer, std::istream& in, std::ostream& out) {
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    out << HandleJsonRequest(tokenizer, line) << '\n';
    out.flush();
  }
}

int TokenizeMain(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string model = absl::GetFlag(FLAGS_model);
  if (model.empty()) {
    std::cerr << "colo-tokenize: --model is required\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(model);
  if (!tokenizer.ok()) {
    std::cerr << "colo-tokenize: " << tokenizer.status() << "\n";
    return 1;
  }
  if (absl::GetFlag(FLAGS_jsonl)) {
    std::ios::sync_with_stdio(false);
    ServeJsonLines(**tokenizer, std::cin, std::cout);
    return 0;
  }
  if (!absl::GetFlag(FLAGS_ids).empty()) {
    std::vector<int32_t> ids;
    for (absl::string_view part :
         absl::StrSplit(absl::GetFlag(FLAGS_ids), ',', absl::SkipWhitespace())) {
      int32_t id;
      if (!absl::SimpleAtoi(part, &id)) {
        std::cerr << "colo-tokenize: --ids: \"" << part << "\" is not an id\n";
        return 2;
      }
      ids.push_back(id);
    }
    DecodeOptions d;
    d.skip_special_tokens = absl::GetFlag(FLAGS_skip_special_tokens);
    absl::StatusOr<std::string> text = (*tokenizer)->Decode(ids, d);
    if (!text.ok()) {
      std::cerr << "colo-tokenize: " << text.status() << "\n";
      return 1;
    }
    std::cout << *text << "\n";
    return 0;
  }
  EncodeOptions e;
  e.add_special_tokens = absl::GetFlag(FLAGS_add_special_tokens);
  absl::StatusOr<std::vector<int32_t>> ids = (*tokenizer)->Encode(absl::GetFlag(FLAGS_text), e);
  if (!ids.ok()) {
    std::cerr << "colo-tokenize: " << ids.status() << "\n";
    return 1;
  }
  std::cout << absl::StrJoin(*ids, ",") << "\n";
  return 0;
}

}  // namespace tokenizer
}  // namespace colo
