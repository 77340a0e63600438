#include "engine/tokenizer/normalizer.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/pattern.h"
#include "engine/tokenizer/unicode.h"
#include "engine/tokenizer/utf8.h"

namespace colo {
namespace tokenizer {
namespace {

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormalForm form) : form_(form) {}
  void Normalize(std::string* text) const override {
    // ASCII is invariant under every normalization form.
    bool ascii = true;
    for (unsigned char c : *text) ascii = ascii && c < 0x80;
    if (ascii) return;
    *text = NormalizeUnicode(*text, form_);
  }

 private:
  const NormalForm form_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  void Normalize(std::string* text) const override { *text = ToLower(*text); }
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void Normalize(std::string* text) const override {
    std::vector<char32_t> cps = CodePoints(*text);
    size_t b = 0, e = cps.size();
    if (left_)
      while (b < e && IsWhiteSpace(cps[b])) ++b;
    if (right_)
      while (e > b && IsWhiteSpace(cps[e - 1])) --e;
    if (b == 0 && e == cps.size()) return;
    std::string out;
    for (size_t k = b; k < e; ++k) AppendUtf8(cps[k], &out);
    *text = std::move(out);
  }

 private:
  const bool left_;
  const bool right_;
};

class StripAccentsNormalizer : public Normalizer {
 public:
  void Normalize(std::string* text) const override {
    std::string out;
    out.reserve(text->size());
    size_t i = 0;
    while (i < text->size()) {
      const char32_t cp = NextCodePoint(*text, &i);
      if (IsNonspacingMark(cp)) continue;
      AppendUtf8(cp, &out);
    }
    *text = std::move(out);
  }
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void Normalize(std::string* text) const override {
    absl::StatusOr<std::string> r = pattern_.ReplaceAll(*text, content_);
    if (r.ok()) *text = std::move(*r);
  }

 private:
  const Pattern pattern_;
  const std::string content_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void Normalize(std::string* text) const override {
    if (!text->empty()) text->insert(0, prefix_);
  }

 private:
  const std::string prefix_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> stages)
      : stages_(std::move(stages)) {}
  void Normalize(std::string* text) const override {
    for (const auto& s : stages_) s->Normalize(text);
  }

 private:
  const std::vector<std::unique_ptr<Normalizer>> stages_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> NormalizerFromJson(const Json& spec,
                                                               absl::string_view where) {
  std::string type;
  absl::Status s = GetString(spec, where, "type", &type, true);
  if (!s.ok()) return s;
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(NormalForm::kNfc);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(NormalForm::kNfd);
  if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(NormalForm::kNfkc);
  if (type == "NFKD") return std::make_unique<UnicodeNormalizer>(NormalForm::kNfkd);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "StripAccents") return std::make_unique<StripAccentsNormalizer>();
  if (type == "Strip") {
    bool left = true, right = true;
    if (!(s = GetBool(spec, where, "strip_left", &left)).ok()) return s;
    if (!(s = GetBool(spec, where, "strip_right", &right)).ok()) return s;
    return std::make_unique<StripNormalizer>(left, right);
  }
  if (type == "Replace") {
    absl::StatusOr<Replacement> r = ReplacementFromJson(spec, where);
    if (!r.ok()) return r.status();
    return std::make_unique<ReplaceNormalizer>(std::move(r->pattern), std::move(r->content));
  }
  if (type == "Prepend") {
    std::string prefix;
    if (!(s = GetString(spec, where, "prepend", &prefix, true)).ok()) return s;
    return std::make_unique<PrependNormalizer>(std::move(prefix));
  }
  if (type == "Sequence") {
    auto stages = BuildList<Normalizer>(spec, where, "normalizers", NormalizerFromJson);
    if (!stages.ok()) return stages.status();
    return std::make_unique<SequenceNormalizer>(std::move(*stages));
  }
  return FieldError(where, "type",
                    absl::StrCat("normalizer \"", type,
                                 "\" is not supported (supported: NFC, NFD, NFKC, NFKD, Lowercase, "
                                 "Strip, StripAccents, Replace, Prepend, Sequence)"));
}

}  // namespace tokenizer
}  // namespace colo
