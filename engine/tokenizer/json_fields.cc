#include "engine/tokenizer/json_fields.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/utf8.h"

namespace colo {
namespace tokenizer {

absl::StatusOr<Json> ParseJson(absl::string_view text, absl::string_view file) {
  // Nesting depth first, without recursion (the parser and the stage
  // builders would otherwise recurse as deep as the file nests).
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) {
        return absl::InvalidArgumentError(
            absl::StrCat(file, ": nested deeper than ", kMaxJsonDepth, " levels"));
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(file, ": not valid JSON"));
  return j;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return ss.str();
}

absl::StatusOr<Json> ReadJsonFile(const std::string& path, absl::string_view file) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ParseJson(*text, file);
}

std::string FieldPath(absl::string_view where, absl::string_view key) {
  if (where.empty()) return std::string(key);
  if (where.back() == ' ') return absl::StrCat(where, key);  // "file: " prefix
  return absl::StrCat(where, ".", key);
}

std::string IndexPath(absl::string_view where, size_t index) {
  return absl::StrCat(where, "[", index, "]");
}

absl::Status FieldError(absl::string_view where, absl::string_view key, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(FieldPath(where, key), ": ", what));
}

absl::StatusOr<const Json*> GetField(const Json& obj, absl::string_view where,
                                     absl::string_view key) {
  if (!obj.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": expected a JSON object"));
  }
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return static_cast<const Json*>(nullptr);
  return &*it;
}

absl::StatusOr<const Json*> GetRequired(const Json& obj, absl::string_view where,
                                        absl::string_view key) {
  absl::StatusOr<const Json*> f = GetField(obj, where, key);
  if (!f.ok()) return f.status();
  if (*f == nullptr) return FieldError(where, key, "missing");
  return *f;
}

absl::Status GetString(const Json& obj, absl::string_view where, absl::string_view key,
                       std::string* out, bool required) {
  absl::StatusOr<const Json*> f = GetField(obj, where, key);
  if (!f.ok()) return f.status();
  if (*f == nullptr) return required ? FieldError(where, key, "missing") : absl::OkStatus();
  if (!(*f)->is_string()) return FieldError(where, key, "expected a string");
  *out = (*f)->get<std::string>();
  return absl::OkStatus();
}

absl::Status GetOptionalString(const Json& obj, absl::string_view where, absl::string_view key,
                               std::optional<std::string>* out) {
  absl::StatusOr<const Json*> f = GetField(obj, where, key);
  if (!f.ok()) return f.status();
  if (*f == nullptr) return absl::OkStatus();
  if (!(*f)->is_string()) return FieldError(where, key, "expected a string");
  *out = (*f)->get<std::string>();
  return absl::OkStatus();
}

absl::Status GetBool(const Json& obj, absl::string_view where, absl::string_view key, bool* out) {
  absl::StatusOr<const Json*> f = GetField(obj, where, key);
  if (!f.ok()) return f.status();
  if (*f == nullptr) return absl::OkStatus();
  if (!(*f)->is_boolean()) return FieldError(where, key, "expected true or false");
  *out = (*f)->get<bool>();
  return absl::OkStatus();
}

absl::Status GetInt(const Json& obj, absl::string_view where, absl::string_view key, int64_t* out,
                    bool required) {
  absl::StatusOr<const Json*> f = GetField(obj, where, key);
  if (!f.ok()) return f.status();
  if (*f == nullptr) return required ? FieldError(where, key, "missing") : absl::OkStatus();
  if (!(*f)->is_number_integer()) return FieldError(where, key, "expected an integer");
  *out = (*f)->get<int64_t>();
  return absl::OkStatus();
}

absl::Status GetDouble(const Json& obj, absl::string_view where, absl::string_view key,
                       std::optional<double>* out) {
  absl::StatusOr<const Json*> f = GetField(obj, where, key);
  if (!f.ok()) return f.status();
  if (*f == nullptr) return absl::OkStatus();
  if (!(*f)->is_number()) return FieldError(where, key, "expected a number");
  *out = (*f)->get<double>();
  return absl::OkStatus();
}

absl::Status GetChar(const Json& obj, absl::string_view where, absl::string_view key,
                     std::string* out, bool required) {
  std::string s;
  bool present = false;
  {
    absl::StatusOr<const Json*> f = GetField(obj, where, key);
    if (!f.ok()) return f.status();
    present = *f != nullptr;
  }
  if (!present) return required ? FieldError(where, key, "missing") : absl::OkStatus();
  absl::Status st = GetString(obj, where, key, &s, true);
  if (!st.ok()) return st;
  if (s.empty() || !IsValidUtf8(s) || ValidSequenceLength(s, 0) != s.size()) {
    return FieldError(where, key, "expected exactly one character");
  }
  *out = s;
  return absl::OkStatus();
}

}  // namespace tokenizer
}  // namespace colo
