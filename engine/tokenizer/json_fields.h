// Typed, non-throwing access to JSON fields for the tokenizer loaders. Every
// error is INVALID_ARGUMENT naming the place: "<where>.<key>: expected ...",
// where `where` is e.g. "tokenizer.json: pre_tokenizer.pretokenizers[1]".
// Absent and null fields leave the output unchanged unless required.
#ifndef COLO_ENGINE_TOKENIZER_JSON_FIELDS_H_
#define COLO_ENGINE_TOKENIZER_JSON_FIELDS_H_

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace colo {
namespace tokenizer {

using Json = nlohmann::json;

inline constexpr int kMaxJsonDepth = 64;

// Parses `text` (INVALID_ARGUMENT naming `file` when it is not JSON or nests
// arrays/objects deeper than kMaxJsonDepth: the stage builders recurse).
absl::StatusOr<Json> ParseJson(absl::string_view text, absl::string_view file);
// Reads and parses a file; NOT_FOUND when it does not exist.
absl::StatusOr<Json> ReadJsonFile(const std::string& path, absl::string_view file);
absl::StatusOr<std::string> ReadFile(const std::string& path);

std::string FieldPath(absl::string_view where, absl::string_view key);
std::string IndexPath(absl::string_view where, size_t index);

absl::Status FieldError(absl::string_view where, absl::string_view key, absl::string_view what);

// The field or nullptr when absent or null; error when `obj` is not an object.
absl::StatusOr<const Json*> GetField(const Json& obj, absl::string_view where,
                                     absl::string_view key);
absl::StatusOr<const Json*> GetRequired(const Json& obj, absl::string_view where,
                                        absl::string_view key);

absl::Status GetString(const Json& obj, absl::string_view where, absl::string_view key,
                       std::string* out, bool required = false);
absl::Status GetOptionalString(const Json& obj, absl::string_view where, absl::string_view key,
                               std::optional<std::string>* out);
absl::Status GetBool(const Json& obj, absl::string_view where, absl::string_view key, bool* out);
absl::Status GetInt(const Json& obj, absl::string_view where, absl::string_view key, int64_t* out,
                    bool required = false);
absl::Status GetDouble(const Json& obj, absl::string_view where, absl::string_view key,
                       std::optional<double>* out);

// A single character given as a JSON string (e.g. Metaspace's "replacement");
// returns its UTF-8.
absl::Status GetChar(const Json& obj, absl::string_view where, absl::string_view key,
                     std::string* out, bool required = false);

// Builds each element of the array field `key` with build(element, where)
// (the "Sequence" stages of tokenizer.json).
template <typename T, typename Build>
absl::StatusOr<std::vector<std::unique_ptr<T>>> BuildList(const Json& spec, absl::string_view where,
                                                          absl::string_view key, Build build) {
  absl::StatusOr<const Json*> list = GetRequired(spec, where, key);
  if (!list.ok()) return list.status();
  if (!(*list)->is_array()) return FieldError(where, key, "expected an array");
  const std::string list_where = FieldPath(where, key);
  std::vector<std::unique_ptr<T>> out;
  for (size_t i = 0; i < (*list)->size(); ++i) {
    absl::StatusOr<std::unique_ptr<T>> item = build((**list)[i], IndexPath(list_where, i));
    if (!item.ok()) return item.status();
    out.push_back(std::move(*item));
  }
  return out;
}

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_JSON_FIELDS_H_
