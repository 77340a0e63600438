#include "engine/tokenizer/decoder.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/pattern.h"
#include "engine/tokenizer/utf8.h"

namespace colo {
namespace tokenizer {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

// Rust's u8::from_str_radix(&token[3..5], 16) on "<0x??>" tokens (which
// accepts a leading '+').
int ParseByteToken(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  if (t[3] == '+') return HexDigit(t[4]);
  const int hi = HexDigit(t[3]);
  const int lo = HexDigit(t[4]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

namespace {

// All tokens to bytes (tokens with a character outside the byte alphabet
// contribute their own UTF-8), then one lossy UTF-8 string.
class ByteLevelDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>* tokens) const override {
    std::string bytes;
    for (const std::string& t : *tokens) {
      std::optional<std::string> b = FromByteLevel(t);
      bytes.append(b.has_value() ? *b : t);
    }
    tokens->assign(1, LossyUtf8(bytes));
  }
};

// The replacement character becomes a space; in the first token it is
// dropped (unless prepend_scheme is "never").
class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      std::string& t = (*tokens)[i];
      std::string out;
      out.reserve(t.size());
      size_t pos = 0;
      while (pos < t.size()) {
        if (t.compare(pos, replacement_.size(), replacement_) == 0) {
          if (!(i == 0 && strip_first_)) out.push_back(' ');
          pos += replacement_.size();
        } else {
          out.push_back(t[pos++]);
        }
      }
      t = std::move(out);
    }
  }

 private:
  const std::string replacement_;
  const bool strip_first_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (std::string& t : *tokens) {
      absl::StatusOr<std::string> r = pattern_.ReplaceAll(t, content_);
      if (r.ok()) t = std::move(*r);
    }
  }

 private:
  const Pattern pattern_;
  const std::string content_;
};

// "<0xAB>" tokens -> bytes; a run of them becomes its UTF-8 text when valid,
// else one U+FFFD per byte (tokenizers' ByteFallback).
class ByteFallbackDecoder : public Decoder {
 public:
  bool HasByteFallback() const override { return true; }
  void DecodeChain(std::vector<std::string>* tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens->size());
    std::string bytes;
    auto flush = [&] {
      if (bytes.empty()) return;
      if (IsValidUtf8(bytes)) {
        out.push_back(bytes);
      } else {
        for (size_t k = 0; k < bytes.size(); ++k) out.emplace_back(kReplacementUtf8);
      }
      bytes.clear();
    };
    for (std::string& t : *tokens) {
      int byte = ParseByteToken(t);
      if (byte >= 0) {
        bytes.push_back(static_cast<char>(byte));
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    *tokens = std::move(out);
  }

 private:
};

class FuseDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>* tokens) const override {
    std::string all;
    for (const std::string& t : *tokens) all.append(t);
    tokens->assign(1, std::move(all));
  }
};

// Strips up to `start` leading and `stop` trailing `content` characters
// from each token.
class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop)
      : content_(content), start_(start), stop_(stop) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (std::string& t : *tokens) {
      std::vector<char32_t> cps = CodePoints(t);
      size_t b = 0;
      while (b < start_ && b < cps.size() && cps[b] == content_) ++b;
      size_t e = cps.size();
      size_t stripped = 0;
      while (stripped < stop_ && e > b && cps[e - 1] == content_) {
        --e;
        ++stripped;
      }
      if (b == 0 && e == cps.size()) continue;
      std::string out;
      for (size_t k = b; k < e; ++k) AppendUtf8(cps[k], &out);
      t = std::move(out);
    }
  }

 private:
  const char32_t content_;
  const size_t start_;
  const size_t stop_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> stages)
      : stages_(std::move(stages)) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (const auto& s : stages_) s->DecodeChain(tokens);
  }
  bool HasByteFallback() const override {
    for (const auto& s : stages_) {
      if (s->HasByteFallback()) return true;
    }
    return false;
  }

 private:
  const std::vector<std::unique_ptr<Decoder>> stages_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> DecoderFromJson(const Json& spec,
                                                         absl::string_view where) {
  std::string type;
  absl::Status s = GetString(spec, where, "type", &type, true);
  if (!s.ok()) return s;
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Metaspace") {
    std::string replacement = "\xE2\x96\x81";
    if (!(s = GetChar(spec, where, "replacement", &replacement)).ok()) return s;
    bool strip_first = true;
    absl::StatusOr<const Json*> ps = GetField(spec, where, "prepend_scheme");
    if (!ps.ok()) return ps.status();
    if (*ps != nullptr) {
      std::string v;
      if (!(s = GetString(spec, where, "prepend_scheme", &v)).ok()) return s;
      if (v != "always" && v != "first" && v != "never") {
        return FieldError(where, "prepend_scheme", absl::StrCat("unknown scheme \"", v, "\""));
      }
      strip_first = v != "never";
    } else {
      if (!(s = GetBool(spec, where, "add_prefix_space", &strip_first)).ok()) return s;
    }
    return std::make_unique<MetaspaceDecoder>(std::move(replacement), strip_first);
  }
  if (type == "Replace") {
    absl::StatusOr<Replacement> r = ReplacementFromJson(spec, where);
    if (!r.ok()) return r.status();
    return std::make_unique<ReplaceDecoder>(std::move(r->pattern), std::move(r->content));
  }
  if (type == "Strip") {
    std::string content;
    if (!(s = GetChar(spec, where, "content", &content, true)).ok()) return s;
    int64_t start = 0, stop = 0;
    if (!(s = GetInt(spec, where, "start", &start)).ok()) return s;
    if (!(s = GetInt(spec, where, "stop", &stop)).ok()) return s;
    if (start < 0 || stop < 0) return FieldError(where, "start", "start and stop must be >= 0");
    size_t i = 0;
    return std::make_unique<StripDecoder>(NextCodePoint(content, &i), static_cast<size_t>(start),
                                          static_cast<size_t>(stop));
  }
  if (type == "Sequence") {
    auto stages = BuildList<Decoder>(spec, where, "decoders", DecoderFromJson);
    if (!stages.ok()) return stages.status();
    return std::make_unique<SequenceDecoder>(std::move(*stages));
  }
  return FieldError(where, "type",
                    absl::StrCat("decoder \"", type,
                                 "\" is not supported (supported: ByteLevel, Metaspace, Replace, "
                                 "ByteFallback, Fuse, Strip, Sequence)"));
}

}  // namespace tokenizer
}  // namespace colo
