#include "engine/tokenizer/pre_tokenizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/pattern.h"
#include "engine/tokenizer/unicode.h"
#include "engine/tokenizer/utf8.h"

namespace colo {
namespace tokenizer {
namespace {

// GPT-2's pattern, used by ByteLevel when use_regex is true.
constexpr absl::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// A part of a piece, in piece-relative byte offsets.
struct Part {
  uint32_t begin;
  uint32_t end;
  bool is_match;
};

// tokenizers' find_matches: parts covering the whole piece, alternating
// between gaps and matches (consecutive matches stay separate).
template <typename ForEach>
absl::Status FindParts(absl::string_view piece, ForEach for_each, std::vector<Part>* parts) {
  parts->clear();
  uint32_t last = 0;
  absl::Status s = for_each(piece, [&](size_t b, size_t e) {
    if (last < b) parts->push_back({last, static_cast<uint32_t>(b), false});
    parts->push_back({static_cast<uint32_t>(b), static_cast<uint32_t>(e), true});
    last = static_cast<uint32_t>(e);
  });
  if (!s.ok()) return s;
  if (last < piece.size()) parts->push_back({last, static_cast<uint32_t>(piece.size()), false});
  return absl::OkStatus();
}

// tokenizers' NormalizedString::split: applies `behavior` to the parts and
// appends the resulting non-empty spans (made absolute) to *out.
void CutSpan(const PieceList::Span& span, std::vector<Part>& parts, Behavior behavior,
             std::vector<PieceList::Span>* out) {
  struct Cut {
    uint32_t begin;
    uint32_t end;
    bool remove;
  };
  std::vector<Cut> cuts;
  cuts.reserve(parts.size());
  switch (behavior) {
    case Behavior::kRemoved:
      for (const Part& p : parts) cuts.push_back({p.begin, p.end, p.is_match});
      break;
    case Behavior::kIsolated:
      for (const Part& p : parts) cuts.push_back({p.begin, p.end, false});
      break;
    case Behavior::kContiguous: {
      bool previous = false;
      for (const Part& p : parts) {
        if (p.is_match == previous && !cuts.empty()) {
          cuts.back().end = p.end;
        } else {
          cuts.push_back({p.begin, p.end, false});
        }
        previous = p.is_match;
      }
      break;
    }
    case Behavior::kMergedWithPrevious: {
      bool previous = false;
      for (const Part& p : parts) {
        if (p.is_match && !previous && !cuts.empty()) {
          cuts.back().end = p.end;
        } else {
          cuts.push_back({p.begin, p.end, false});
        }
        previous = p.is_match;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      bool previous = false;
      for (size_t k = parts.size(); k-- > 0;) {
        const Part& p = parts[k];
        if (p.is_match && !previous && !cuts.empty()) {
          cuts.back().begin = p.begin;
        } else {
          cuts.push_back({p.begin, p.end, false});
        }
        previous = p.is_match;
      }
      std::reverse(cuts.begin(), cuts.end());
      break;
    }
  }
  for (const Cut& c : cuts) {
    if (c.remove || c.begin == c.end) continue;
    out->push_back({span.begin + c.begin, span.begin + c.end, span.at_origin && c.begin == 0});
  }
}

absl::StatusOr<Behavior> ParseBehavior(const Json& spec, absl::string_view where) {
  std::string b;
  absl::Status s = GetString(spec, where, "behavior", &b, true);
  if (!s.ok()) return s;
  if (b == "Removed") return Behavior::kRemoved;
  if (b == "Isolated") return Behavior::kIsolated;
  if (b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::kMergedWithNext;
  if (b == "Contiguous") return Behavior::kContiguous;
  return FieldError(where, "behavior", absl::StrCat("unknown behavior \"", b, "\""));
}

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(Pattern pattern, Behavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}

  absl::Status PreTokenize(PieceList* pieces) const override {
    std::vector<PieceList::Span> out;
    out.reserve(pieces->spans.size() * 4);
    std::vector<Part> parts;
    for (size_t i = 0; i < pieces->spans.size(); ++i) {
      absl::Status s = FindParts(
          pieces->piece(i),
          [this](absl::string_view t, auto fn) { return pattern_.ForEachMatch(t, fn); }, &parts);
      if (!s.ok()) return s;
      if (invert_) {
        for (Part& p : parts) p.is_match = !p.is_match;
      }
      CutSpan(pieces->spans[i], parts, behavior_, &out);
    }
    pieces->spans = std::move(out);
    return absl::OkStatus();
  }

 private:
  const Pattern pattern_;
  const Behavior behavior_;
  const bool invert_;
};

// Splits on each character for which `pred` holds, one match per character.
template <typename Pred>
absl::Status ForEachCharMatch(absl::string_view text, Pred pred,
                              absl::FunctionRef<void(size_t, size_t)> fn) {
  size_t i = 0;
  while (i < text.size()) {
    const size_t b = i;
    const char32_t cp = NextCodePoint(text, &i);
    if (pred(cp)) fn(b, i);
  }
  return absl::OkStatus();
}

class DigitsPreTokenizer : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual) : individual_(individual) {}
  absl::Status PreTokenize(PieceList* pieces) const override {
    std::vector<PieceList::Span> out;
    std::vector<Part> parts;
    for (size_t i = 0; i < pieces->spans.size(); ++i) {
      absl::Status s = FindParts(
          pieces->piece(i),
          [](absl::string_view t, auto fn) { return ForEachCharMatch(t, IsNumeric, fn); }, &parts);
      if (!s.ok()) return s;
      CutSpan(pieces->spans[i], parts, individual_ ? Behavior::kIsolated : Behavior::kContiguous,
              &out);
    }
    pieces->spans = std::move(out);
    return absl::OkStatus();
  }

 private:
  const bool individual_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}

  bool IsByteLevel() const override { return true; }

  absl::Status PreTokenize(PieceList* pieces) const override {
    std::string text;
    text.reserve(pieces->text.size() * 2 + pieces->spans.size());
    std::vector<PieceList::Span> out;
    out.reserve(pieces->spans.size());
    std::string prefixed;
    for (size_t i = 0; i < pieces->spans.size(); ++i) {
      absl::string_view piece = pieces->piece(i);
      if (add_prefix_space_ && piece.front() != ' ') {
        prefixed.assign(" ");
        prefixed.append(piece.data(), piece.size());
        piece = prefixed;
      }
      auto emit = [&](size_t b, size_t e) {
        const uint32_t begin = static_cast<uint32_t>(text.size());
        AppendByteLevel(piece.substr(b, e - b), &text);
        out.push_back(
            {begin, static_cast<uint32_t>(text.size()), pieces->spans[i].at_origin && b == 0});
      };
      if (regex_ == nullptr) {
        emit(0, piece.size());
        continue;
      }
      size_t last = 0;
      absl::Status s = regex_->ForEachMatch(piece, [&](size_t b, size_t e) {
        if (last < b) emit(last, b);
        emit(b, e);
        last = e;
      });
      if (!s.ok()) return s;
      if (last < piece.size()) emit(last, piece.size());
    }
    pieces->text = std::move(text);
    pieces->spans = std::move(out);
    return absl::OkStatus();
  }

 private:
  const bool add_prefix_space_;
  const std::unique_ptr<Regex> regex_;  // null: no GPT-2 split
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}

  absl::Status PreTokenize(PieceList* pieces) const override {
    std::string text;
    text.reserve(pieces->text.size() * 2);
    std::vector<PieceList::Span> out;
    std::vector<Part> parts;
    for (size_t i = 0; i < pieces->spans.size(); ++i) {
      const absl::string_view piece = pieces->piece(i);
      const PieceList::Span& span = pieces->spans[i];
      const uint32_t begin = static_cast<uint32_t>(text.size());
      const bool starts_with_replacement = piece.substr(0, replacement_.size()) == replacement_ ||
                                           (piece.front() == ' ');  // becomes the replacement below
      if (!starts_with_replacement && (scheme_ == PrependScheme::kAlways ||
                                       (scheme_ == PrependScheme::kFirst && span.at_origin))) {
        text.append(replacement_);
      }
      for (char c : piece) {
        if (c == ' ') {
          text.append(replacement_);
        } else {
          text.push_back(c);
        }
      }
      const PieceList::Span whole{begin, static_cast<uint32_t>(text.size()), span.at_origin};
      if (!split_) {
        out.push_back(whole);
        continue;
      }
      const absl::string_view rewritten = absl::string_view(text).substr(begin);
      parts.clear();
      uint32_t last = 0;
      size_t pos = 0;
      while ((pos = rewritten.find(replacement_, pos)) != absl::string_view::npos) {
        if (last < pos) parts.push_back({last, static_cast<uint32_t>(pos), false});
        parts.push_back(
            {static_cast<uint32_t>(pos), static_cast<uint32_t>(pos + replacement_.size()), true});
        pos += replacement_.size();
        last = static_cast<uint32_t>(pos);
      }
      if (last < rewritten.size())
        parts.push_back({last, static_cast<uint32_t>(rewritten.size()), false});
      CutSpan(whole, parts, Behavior::kMergedWithNext, &out);
    }
    pieces->text = std::move(text);
    pieces->spans = std::move(out);
    return absl::OkStatus();
  }

 private:
  const std::string replacement_;
  const PrependScheme scheme_;
  const bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> stages)
      : stages_(std::move(stages)) {}
  absl::Status PreTokenize(PieceList* pieces) const override {
    for (const auto& s : stages_) {
      absl::Status st = s->PreTokenize(pieces);
      if (!st.ok()) return st;
    }
    return absl::OkStatus();
  }
  bool IsByteLevel() const override {
    for (const auto& s : stages_) {
      if (s->IsByteLevel()) return true;
    }
    return false;
  }

 private:
  const std::vector<std::unique_ptr<PreTokenizer>> stages_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizerFromJson(const Json& spec,
                                                                   absl::string_view where) {
  std::string type;
  absl::Status s = GetString(spec, where, "type", &type, true);
  if (!s.ok()) return s;
  if (type == "Split") {
    absl::StatusOr<const Json*> p = GetRequired(spec, where, "pattern");
    if (!p.ok()) return p.status();
    absl::StatusOr<Pattern> pattern = Pattern::FromJson(**p, FieldPath(where, "pattern"));
    if (!pattern.ok()) return pattern.status();
    absl::StatusOr<Behavior> behavior = ParseBehavior(spec, where);
    if (!behavior.ok()) return behavior.status();
    bool invert = false;
    if (!(s = GetBool(spec, where, "invert", &invert)).ok()) return s;
    return std::make_unique<SplitPreTokenizer>(std::move(*pattern), *behavior, invert);
  }
  if (type == "ByteLevel") {
    bool add_prefix_space = true, use_regex = true;
    if (!(s = GetBool(spec, where, "add_prefix_space", &add_prefix_space)).ok()) return s;
    if (!(s = GetBool(spec, where, "use_regex", &use_regex)).ok()) return s;
    std::unique_ptr<Regex> regex;
    if (use_regex) {
      absl::StatusOr<std::unique_ptr<Regex>> r = Regex::Compile(kGpt2Pattern);
      if (!r.ok()) return r.status();
      regex = std::move(*r);
    }
    return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, std::move(regex));
  }
  if (type == "Metaspace") {
    std::string replacement = "\xE2\x96\x81";  // U+2581
    if (!(s = GetChar(spec, where, "replacement", &replacement)).ok()) return s;
    PrependScheme scheme = PrependScheme::kAlways;
    absl::StatusOr<const Json*> ps = GetField(spec, where, "prepend_scheme");
    if (!ps.ok()) return ps.status();
    if (*ps != nullptr) {
      std::string v;
      if (!(s = GetString(spec, where, "prepend_scheme", &v)).ok()) return s;
      if (v == "always") {
        scheme = PrependScheme::kAlways;
      } else if (v == "first") {
        scheme = PrependScheme::kFirst;
      } else if (v == "never") {
        scheme = PrependScheme::kNever;
      } else {
        return FieldError(where, "prepend_scheme", absl::StrCat("unknown scheme \"", v, "\""));
      }
    } else {
      bool add_prefix_space = true;
      if (!(s = GetBool(spec, where, "add_prefix_space", &add_prefix_space)).ok()) return s;
      scheme = add_prefix_space ? PrependScheme::kAlways : PrependScheme::kNever;
    }
    bool split = true;
    if (!(s = GetBool(spec, where, "split", &split)).ok()) return s;
    return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), scheme, split);
  }
  if (type == "Digits") {
    bool individual = false;
    if (!(s = GetBool(spec, where, "individual_digits", &individual)).ok()) return s;
    return std::make_unique<DigitsPreTokenizer>(individual);
  }
  if (type == "Sequence") {
    auto stages = BuildList<PreTokenizer>(spec, where, "pretokenizers", PreTokenizerFromJson);
    if (!stages.ok()) return stages.status();
    return std::make_unique<SequencePreTokenizer>(std::move(*stages));
  }
  return FieldError(where, "type",
                    absl::StrCat("pre-tokenizer \"", type,
                                 "\" is not supported (supported: Split, ByteLevel, Metaspace, "
                                 "Digits, Sequence)"));
}

}  // namespace tokenizer
}  // namespace colo
