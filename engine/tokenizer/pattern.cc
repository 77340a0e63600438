#include "engine/tokenizer/pattern.h"

#include <utility>

namespace colo {
namespace tokenizer {

Pattern Pattern::Literal(std::string literal) {
  Pattern p;
  p.literal_ = std::move(literal);
  return p;
}

absl::StatusOr<Pattern> Pattern::FromRegex(absl::string_view regex) {
  absl::StatusOr<std::unique_ptr<Regex>> r = Regex::Compile(regex);
  if (!r.ok()) return r.status();
  Pattern p;
  p.regex_ = std::move(*r);
  return p;
}

absl::StatusOr<Pattern> Pattern::FromJson(const Json& spec, absl::string_view where) {
  if (!spec.is_object() || spec.size() != 1) {
    return absl::InvalidArgumentError(std::string(where) +
                                      ": expected {\"String\": ...} or {\"Regex\": ...}");
  }
  std::string value;
  if (spec.contains("String")) {
    absl::Status s = GetString(spec, where, "String", &value, true);
    if (!s.ok()) return s;
    return Literal(std::move(value));
  }
  if (spec.contains("Regex")) {
    absl::Status s = GetString(spec, where, "Regex", &value, true);
    if (!s.ok()) return s;
    absl::StatusOr<Pattern> p = FromRegex(value);
    if (!p.ok())
      return absl::InvalidArgumentError(std::string(where) + ": " +
                                        std::string(p.status().message()));
    return p;
  }
  return absl::InvalidArgumentError(std::string(where) +
                                    ": expected {\"String\": ...} or {\"Regex\": ...}");
}

absl::Status Pattern::ForEachMatch(absl::string_view text,
                                   absl::FunctionRef<void(size_t, size_t)> fn) const {
  if (regex_ != nullptr) return regex_->ForEachMatch(text, fn);
  if (literal_.empty()) return absl::OkStatus();
  size_t pos = 0;
  while ((pos = text.find(literal_, pos)) != absl::string_view::npos) {
    fn(pos, pos + literal_.size());
    pos += literal_.size();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Pattern::ReplaceAll(absl::string_view text,
                                                absl::string_view content) const {
  std::string out;
  out.reserve(text.size());
  size_t last = 0;
  absl::Status s = ForEachMatch(text, [&](size_t b, size_t e) {
    out.append(text.data() + last, b - last);
    out.append(content.data(), content.size());
    last = e;
  });
  if (!s.ok()) return s;
  out.append(text.data() + last, text.size() - last);
  return out;
}

absl::StatusOr<Replacement> ReplacementFromJson(const Json& spec, absl::string_view where) {
  absl::StatusOr<const Json*> p = GetRequired(spec, where, "pattern");
  if (!p.ok()) return p.status();
  absl::StatusOr<Pattern> pattern = Pattern::FromJson(**p, FieldPath(where, "pattern"));
  if (!pattern.ok()) return pattern.status();
  Replacement r{std::move(*pattern), std::string()};
  absl::Status s = GetString(spec, where, "content", &r.content, true);
  if (!s.ok()) return s;
  return r;
}

}  // namespace tokenizer
}  // namespace colo
