#include "engine/tokenizer/hf_tokenizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/utf8.h"

namespace colo {
namespace tokenizer {
namespace {

constexpr absl::string_view kFile = "tokenizer.json: ";

class BosEosPostProcessor : public PostProcessor {
 public:
  BosEosPostProcessor(std::optional<int32_t> bos, std::optional<int32_t> eos)
      : bos_(bos), eos_(eos) {}
  void Process(std::vector<int32_t>* ids) const override {
    if (bos_.has_value()) ids->insert(ids->begin(), *bos_);
    if (eos_.has_value()) ids->push_back(*eos_);
  }

 private:
  const std::optional<int32_t> bos_;
  const std::optional<int32_t> eos_;
};

absl::StatusOr<std::vector<AddedToken>> ParseAddedTokens(const Json& root, const BpeModel& model) {
  std::vector<AddedToken> tokens;
  absl::StatusOr<const Json*> list = GetField(root, kFile, "added_tokens");
  if (!list.ok()) return list.status();
  if (*list == nullptr) return tokens;
  if (!(*list)->is_array()) return FieldError(kFile, "added_tokens", "expected an array");
  for (size_t i = 0; i < (*list)->size(); ++i) {
    const Json& e = (**list)[i];
    const std::string where = IndexPath(FieldPath(kFile, "added_tokens"), i);
    AddedToken t;
    int64_t id = -1;
    absl::Status s;
    if (!(s = GetInt(e, where, "id", &id, true)).ok()) return s;
    if (id < 0 || id >= (1 << 24))
      return FieldError(where, "id", absl::StrCat(id, " is out of range"));
    if (!(s = GetString(e, where, "content", &t.content, true)).ok()) return s;
    if (t.content.empty()) return FieldError(where, "content", "is empty");
    if (!IsValidUtf8(t.content)) return FieldError(where, "content", "is not valid UTF-8");
    if (!(s = GetBool(e, where, "special", &t.special)).ok()) return s;
    if (!(s = GetBool(e, where, "single_word", &t.single_word)).ok()) return s;
    if (!(s = GetBool(e, where, "lstrip", &t.lstrip)).ok()) return s;
    if (!(s = GetBool(e, where, "rstrip", &t.rstrip)).ok()) return s;
    t.normalized = !t.special;
    if (!(s = GetBool(e, where, "normalized", &t.normalized)).ok()) return s;
    // A token the model already has keeps the model's id (as in tokenizers).
    std::optional<int32_t> model_id = model.TokenToId(t.content);
    t.id = model_id.has_value() ? *model_id : static_cast<int32_t>(id);
    bool duplicate = false;
    for (AddedToken& prev : tokens) {
      if (prev.content == t.content) {
        prev = t;  // a later entry with the same content updates it
        duplicate = true;
      }
    }
    if (!duplicate) tokens.push_back(std::move(t));
  }
  return tokens;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::FromJson(absl::string_view json_text) {
  absl::StatusOr<Json> parsed = ParseJson(json_text, "tokenizer.json");
  if (!parsed.ok()) return parsed.status();
  const Json& root = *parsed;
  if (!root.is_object())
    return absl::InvalidArgumentError("tokenizer.json: expected a JSON object");
  std::unique_ptr<HfTokenizer> t(new HfTokenizer());

  absl::StatusOr<const Json*> model = GetRequired(root, kFile, "model");
  if (!model.ok()) return model.status();
  const std::string model_where = FieldPath(kFile, "model");
  std::string type = "BPE";
  absl::Status s = GetString(**model, model_where, "type", &type);
  if (!s.ok()) return s;
  if (type != "BPE") {
    return FieldError(model_where, "type",
                      absl::StrCat("model \"", type, "\" is not supported (only BPE)"));
  }
  absl::StatusOr<std::unique_ptr<BpeModel>> bpe = BpeModel::FromJson(**model, model_where);
  if (!bpe.ok()) return bpe.status();
  t->model_ = std::move(*bpe);

  absl::StatusOr<const Json*> f = GetField(root, kFile, "normalizer");
  if (!f.ok()) return f.status();
  if (*f != nullptr) {
    absl::StatusOr<std::unique_ptr<Normalizer>> n =
        NormalizerFromJson(**f, FieldPath(kFile, "normalizer"));
    if (!n.ok()) return n.status();
    t->normalizer_ = std::move(*n);
  }
  if (!(f = GetField(root, kFile, "pre_tokenizer")).ok()) return f.status();
  if (*f != nullptr) {
    absl::StatusOr<std::unique_ptr<PreTokenizer>> p =
        PreTokenizerFromJson(**f, FieldPath(kFile, "pre_tokenizer"));
    if (!p.ok()) return p.status();
    t->pre_tokenizer_ = std::move(*p);
    t->byte_level_ = t->pre_tokenizer_->IsByteLevel();
  }
  if (!(f = GetField(root, kFile, "post_processor")).ok()) return f.status();
  if (*f != nullptr) {
    absl::StatusOr<std::unique_ptr<PostProcessor>> p =
        PostProcessorFromJson(**f, FieldPath(kFile, "post_processor"));
    if (!p.ok()) return p.status();
    t->post_processor_ = std::move(*p);
  }
  if (!(f = GetField(root, kFile, "decoder")).ok()) return f.status();
  if (*f != nullptr) {
    absl::StatusOr<std::unique_ptr<Decoder>> d = DecoderFromJson(**f, FieldPath(kFile, "decoder"));
    if (!d.ok()) return d.status();
    t->decoder_ = std::move(*d);
  }
  absl::StatusOr<std::vector<AddedToken>> added = ParseAddedTokens(root, *t->model_);
  if (!added.ok()) return added.status();
  int32_t limit = t->model_->id_limit();
  for (const AddedToken& a : *added) limit = std::max(limit, a.id + 1);
  t->vocab_size_ = limit;
  t->added_ = std::make_unique<AddedVocabulary>(std::move(*added), t->normalizer_.get());
  if (t->decoder_ != nullptr && t->decoder_->HasByteFallback()) {
    t->byte_fallback_.assign(limit, false);
    for (int32_t id = 0; id < t->model_->id_limit(); ++id) {
      const std::string* token = t->model_->IdToToken(id);
      if (token != nullptr && t->added_->Find(id) == nullptr && ParseByteToken(*token) >= 0) {
        t->byte_fallback_[id] = true;
      }
    }
  }
  return t;
}

void HfTokenizer::SetBosEosTemplate(std::optional<int32_t> bos, std::optional<int32_t> eos) {
  post_processor_ = std::make_unique<BosEosPostProcessor>(bos, eos);
}

absl::Status HfTokenizer::EncodeValid(absl::string_view text, bool at_origin,
                                      std::vector<int32_t>* ids) const {
  thread_local std::vector<Segment> segments;
  thread_local PieceList pieces;
  segments.clear();
  added_->Split(text, at_origin, &segments);
  for (const Segment& seg : segments) {
    if (seg.id >= 0) {
      ids->push_back(seg.id);
      continue;
    }
    if (pre_tokenizer_ == nullptr) {
      model_->Tokenize(seg.text, ids);
      continue;
    }
    pieces.Reset(seg.text, seg.at_origin);
    absl::Status s = pre_tokenizer_->PreTokenize(&pieces);
    if (!s.ok()) return s;
    for (size_t i = 0; i < pieces.spans.size(); ++i) model_->Tokenize(pieces.piece(i), ids);
  }
  // Per-thread scratch: do not keep a huge input's buffers alive.
  constexpr size_t kKeepBytes = 1 << 20;
  if (pieces.text.capacity() > kKeepBytes) pieces = PieceList();
  if (segments.capacity() > kKeepBytes / 64) std::vector<Segment>().swap(segments);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> HfTokenizer::Encode(absl::string_view text,
                                                         const EncodeOptions& options) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  absl::Status s;
  if (IsValidUtf8(text)) {
    s = EncodeValid(text, /*at_origin=*/true, &ids);
  } else if (byte_level_) {
    std::string mapped;
    for (const Utf8Run& run : SplitUtf8Runs(text)) {
      const absl::string_view part = text.substr(run.begin, run.end - run.begin);
      if (run.valid) {
        s = EncodeValid(part, run.begin == 0, &ids);
        if (!s.ok()) break;
      } else {
        mapped.clear();
        AppendByteLevel(part, &mapped);
        model_->Tokenize(mapped, &ids);
      }
    }
  } else {
    s = EncodeValid(LossyUtf8(text), /*at_origin=*/true, &ids);
  }
  if (!s.ok()) return s;
  if (options.add_special_tokens && post_processor_ != nullptr) post_processor_->Process(&ids);
  return ids;
}

absl::StatusOr<std::string> HfTokenizer::Decode(absl::Span<const int32_t> ids,
                                                const DecodeOptions& options) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (const AddedToken* a = added_->Find(id); a != nullptr) {
      if (a->special && options.skip_special_tokens) continue;
      tokens.push_back(a->content);
      continue;
    }
    const std::string* token = model_->IdToToken(id);
    if (token == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ids[", i, "]: ", id, " is not a token id (vocabulary size ", vocab_size_, ")"));
    }
    tokens.push_back(*token);
  }
  if (decoder_ == nullptr) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out.push_back(' ');
      out.append(tokens[i]);
    }
    return out;
  }
  decoder_->DecodeChain(&tokens);
  std::string out;
  for (const std::string& t : tokens) out.append(t);
  return out;
}

std::optional<std::string> HfTokenizer::IdToToken(int32_t id) const {
  if (const AddedToken* a = added_->Find(id); a != nullptr) return a->content;
  const std::string* token = model_->IdToToken(id);
  if (token == nullptr) return std::nullopt;
  return *token;
}

std::optional<int32_t> HfTokenizer::TokenToId(absl::string_view token) const {
  if (const AddedToken* a = added_->Find(token); a != nullptr) return a->id;
  return model_->TokenToId(token);
}

bool HfTokenizer::IsByteFallback(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < byte_fallback_.size() && byte_fallback_[id];
}

bool HfTokenizer::IsSpecial(int32_t id) const {
  const AddedToken* a = added_->Find(id);
  return a != nullptr && a->special;
}

}  // namespace tokenizer
}  // namespace colo
