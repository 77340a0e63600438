#include "engine/tokenizer/post_processor.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace colo {
namespace tokenizer {
namespace {

// A template: each element is either the sequence ($A) or fixed ids.
class TemplatePostProcessor : public PostProcessor {
 public:
  struct Element {
    bool is_sequence;
    std::vector<int32_t> ids;
  };
  explicit TemplatePostProcessor(std::vector<Element> elements) : elements_(std::move(elements)) {}
  void Process(std::vector<int32_t>* ids) const override {
    std::vector<int32_t> out;
    out.reserve(ids->size() + elements_.size());
    for (const Element& e : elements_) {
      if (e.is_sequence) {
        out.insert(out.end(), ids->begin(), ids->end());
      } else {
        out.insert(out.end(), e.ids.begin(), e.ids.end());
      }
    }
    *ids = std::move(out);
  }

 private:
  const std::vector<Element> elements_;
};

class NoopPostProcessor : public PostProcessor {
 public:
  void Process(std::vector<int32_t>*) const override {}
};

class SequencePostProcessor : public PostProcessor {
 public:
  explicit SequencePostProcessor(std::vector<std::unique_ptr<PostProcessor>> stages)
      : stages_(std::move(stages)) {}
  void Process(std::vector<int32_t>* ids) const override {
    for (const auto& s : stages_) s->Process(ids);
  }

 private:
  const std::vector<std::unique_ptr<PostProcessor>> stages_;
};

absl::StatusOr<std::unique_ptr<PostProcessor>> TemplateFromJson(const Json& spec,
                                                                absl::string_view where) {
  absl::StatusOr<const Json*> single = GetRequired(spec, where, "single");
  if (!single.ok()) return single.status();
  absl::StatusOr<const Json*> specials = GetField(spec, where, "special_tokens");
  if (!specials.ok()) return specials.status();
  const std::string single_where = FieldPath(where, "single");
  if (!(*single)->is_array()) return FieldError(where, "single", "expected an array of pieces");
  std::vector<TemplatePostProcessor::Element> elements;
  for (size_t i = 0; i < (*single)->size(); ++i) {
    const Json& piece = (**single)[i];
    const std::string pw = IndexPath(single_where, i);
    if (!piece.is_object() || piece.size() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(pw, ": expected {\"Sequence\": ...} or {\"SpecialToken\": ...}"));
    }
    if (piece.contains("Sequence")) {
      std::string id;
      absl::Status s = GetString(piece["Sequence"], FieldPath(pw, "Sequence"), "id", &id, true);
      if (!s.ok()) return s;
      if (id != "A") {
        return absl::InvalidArgumentError(
            absl::StrCat(pw, ": a single-sequence template can only use $A"));
      }
      elements.push_back({true, {}});
      continue;
    }
    if (!piece.contains("SpecialToken")) {
      return absl::InvalidArgumentError(
          absl::StrCat(pw, ": expected {\"Sequence\": ...} or {\"SpecialToken\": ...}"));
    }
    std::string name;
    absl::Status s =
        GetString(piece["SpecialToken"], FieldPath(pw, "SpecialToken"), "id", &name, true);
    if (!s.ok()) return s;
    const std::string sw = FieldPath(where, "special_tokens");
    if (*specials == nullptr || !(*specials)->is_object() || !(*specials)->contains(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(sw, ": \"", name, "\" is used by the template but not defined"));
    }
    const Json& def = (**specials)[name];
    absl::StatusOr<const Json*> ids = GetRequired(def, FieldPath(sw, name), "ids");
    if (!ids.ok()) return ids.status();
    if (!(*ids)->is_array())
      return FieldError(FieldPath(sw, name), "ids", "expected an array of ids");
    TemplatePostProcessor::Element e{false, {}};
    for (const Json& id : **ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (1 << 24)) {
        return FieldError(FieldPath(sw, name), "ids", "expected non-negative integer ids");
      }
      e.ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
    elements.push_back(std::move(e));
  }
  return std::make_unique<TemplatePostProcessor>(std::move(elements));
}

// BertProcessing / RobertaProcessing: {"cls": [token, id], "sep": [token, id]}.
absl::StatusOr<int32_t> TokenPairId(const Json& spec, absl::string_view where,
                                    absl::string_view key) {
  absl::StatusOr<const Json*> f = GetRequired(spec, where, key);
  if (!f.ok()) return f.status();
  const Json& v = **f;
  if (!v.is_array() || v.size() != 2 || !v[1].is_number_integer() || v[1].get<int64_t>() < 0 ||
      v[1].get<int64_t>() >= (1 << 24)) {
    return FieldError(where, key, "expected [token, id]");
  }
  return static_cast<int32_t>(v[1].get<int64_t>());
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostProcessor>> PostProcessorFromJson(const Json& spec,
                                                                     absl::string_view where) {
  std::string type;
  absl::Status s = GetString(spec, where, "type", &type, true);
  if (!s.ok()) return s;
  if (type == "ByteLevel") return std::make_unique<NoopPostProcessor>();
  if (type == "TemplateProcessing") return TemplateFromJson(spec, where);
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    absl::StatusOr<int32_t> cls = TokenPairId(spec, where, "cls");
    if (!cls.ok()) return cls.status();
    absl::StatusOr<int32_t> sep = TokenPairId(spec, where, "sep");
    if (!sep.ok()) return sep.status();
    std::vector<TemplatePostProcessor::Element> elements = {
        {false, {*cls}}, {true, {}}, {false, {*sep}}};
    return std::make_unique<TemplatePostProcessor>(std::move(elements));
  }
  if (type == "Sequence") {
    auto stages = BuildList<PostProcessor>(spec, where, "processors", PostProcessorFromJson);
    if (!stages.ok()) return stages.status();
    return std::make_unique<SequencePostProcessor>(std::move(*stages));
  }
  return FieldError(where, "type",
                    absl::StrCat("post-processor \"", type,
                                 "\" is not supported (supported: TemplateProcessing, ByteLevel, "
                                 "BertProcessing, RobertaProcessing, Sequence)"));
}

}  // namespace tokenizer
}  // namespace colo
