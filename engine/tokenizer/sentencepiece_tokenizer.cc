#include "engine/tokenizer/sentencepiece_tokenizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/utf8.h"

namespace colo {
namespace tokenizer {

SentencePieceTokenizer::SentencePieceTokenizer() = default;
SentencePieceTokenizer::~SentencePieceTokenizer() = default;

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::FromSerializedProto(
    absl::string_view model_proto, const SentencePieceOptions& options) {
  std::unique_ptr<SentencePieceTokenizer> t(new SentencePieceTokenizer());
  std::string error;
  t->sp_ = SentencePieceModel::Load(std::string(model_proto), &error);
  if (t->sp_ == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.model: not a SentencePiece model: ", error));
  }
  t->vocab_size_ = t->sp_->size();
  t->special_.assign(t->vocab_size_, false);
  std::vector<AddedToken> specials;
  for (int32_t id = 0; id < t->vocab_size_; ++id) {
    if (!t->sp_->IsControl(id) && !t->sp_->IsUnknown(id)) continue;
    t->special_[id] = true;
    const std::string& piece = t->sp_->IdToPiece(id);
    if (piece.empty() || !IsValidUtf8(piece)) continue;
    AddedToken a;
    a.content = piece;
    a.id = id;
    a.special = true;
    a.normalized = false;
    specials.push_back(std::move(a));
  }
  t->specials_ = std::make_unique<AddedVocabulary>(std::move(specials), nullptr);
  t->add_bos_ = options.add_bos.value_or(t->sp_->bos_id() >= 0);
  t->add_eos_ = options.add_eos;
  return t;
}

std::optional<int32_t> SentencePieceTokenizer::model_bos_id() const {
  const int id = sp_->bos_id();
  return id >= 0 ? std::optional<int32_t>(id) : std::nullopt;
}

std::optional<int32_t> SentencePieceTokenizer::model_eos_id() const {
  const int id = sp_->eos_id();
  return id >= 0 ? std::optional<int32_t>(id) : std::nullopt;
}

absl::StatusOr<std::vector<int32_t>> SentencePieceTokenizer::Encode(
    absl::string_view text, const EncodeOptions& options) const {
  std::string valid;
  if (!IsValidUtf8(text)) {
    valid = LossyUtf8(text);
    text = valid;
  }
  std::vector<int32_t> ids;
  if (options.add_special_tokens && add_bos_ && sp_->bos_id() >= 0) ids.push_back(sp_->bos_id());
  std::vector<Segment> segments;
  specials_->Split(text, /*at_origin=*/true, &segments);
  std::vector<int> piece_ids;
  for (const Segment& seg : segments) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    piece_ids.clear();
    std::string error;
    if (!sp_->Encode(seg.text, &piece_ids, &error)) {
      return absl::InternalError(absl::StrCat("sentencepiece Encode: ", error));
    }
    ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
  }
  if (options.add_special_tokens && add_eos_ && sp_->eos_id() >= 0) ids.push_back(sp_->eos_id());
  return ids;
}

absl::StatusOr<std::string> SentencePieceTokenizer::Decode(absl::Span<const int32_t> ids,
                                                           const DecodeOptions& options) const {
  std::string out;
  std::vector<int> run;
  auto flush = [&]() -> absl::Status {
    if (run.empty()) return absl::OkStatus();
    std::string text, error;
    if (!sp_->Decode(run, &text, &error)) {
      return absl::InternalError(absl::StrCat("sentencepiece Decode: ", error));
    }
    // SentencePiece drops the leading space of a run's first piece; after
    // a special token it is a real space (as Hugging Face decodes it).
    if (!out.empty() && sp_->IdToPiece(run[0]).rfind("\xE2\x96\x81", 0) == 0 &&
        (text.empty() || text[0] != ' ')) {
      out.push_back(' ');
    }
    out.append(text);
    run.clear();
    return absl::OkStatus();
  };
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= vocab_size_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ids[", i, "]: ", id, " is not a token id (vocabulary size ", vocab_size_, ")"));
    }
    if (!special_[id]) {
      run.push_back(id);
      continue;
    }
    if (options.skip_special_tokens) continue;  // the runs around it join
    absl::Status s = flush();
    if (!s.ok()) return s;
    out.append(sp_->IdToPiece(id));
  }
  absl::Status s = flush();
  if (!s.ok()) return s;
  // Byte pieces can leave invalid UTF-8; Hugging Face shows it as U+FFFD.
  if (!IsValidUtf8(out)) out = LossyUtf8(out);
  return out;
}

std::optional<std::string> SentencePieceTokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= vocab_size_) return std::nullopt;
  return sp_->IdToPiece(id);
}

std::optional<int32_t> SentencePieceTokenizer::TokenToId(absl::string_view token) const {
  const int id = sp_->PieceToId(std::string(token));
  // PieceToId returns the unk id for unknown pieces.
  if (id == sp_->unk_id() && sp_->IdToPiece(id) != token) return std::nullopt;
  return id;
}

bool SentencePieceTokenizer::IsByteFallback(int32_t id) const {
  return id >= 0 && id < vocab_size_ && sp_->IsByte(id);
}

bool SentencePieceTokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size_ && special_[id];
}

}  // namespace tokenizer
}  // namespace colo
