#include "engine/tokenizer/incremental_decoder.h"

#include <algorithm>

#include "engine/tokenizer/utf8.h"

namespace colo {
namespace tokenizer {
namespace {

bool EndsWithReplacement(const std::string& s) {
  return s.size() >= kReplacementUtf8.size() &&
         s.compare(s.size() - kReplacementUtf8.size(), kReplacementUtf8.size(),
                   kReplacementUtf8.data(), kReplacementUtf8.size()) == 0;
}

}  // namespace

IncrementalDecoder::IncrementalDecoder(const Tokenizer* tokenizer, DecodeOptions options,
                                       absl::Span<const int32_t> context)
    : tokenizer_(tokenizer), options_(options) {
  const size_t keep = std::min(context.size(), kContextIds);
  ids_.assign(context.end() - keep, context.end());
  context_size_ = keep;
  read_offset_ = keep;
  if (keep > 0) {
    absl::StatusOr<std::string> p = tokenizer_->Decode(ids_, options_);
    if (p.ok()) {
      prefix_text_ = std::move(*p);
    } else {
      // Context the tokenizer cannot decode gives no context.
      ids_.clear();
      context_size_ = 0;
      read_offset_ = 0;
    }
  }
}

absl::StatusOr<std::string> IncrementalDecoder::Append(absl::Span<const int32_t> ids) {
  const size_t old_size = ids_.size();
  ids_.insert(ids_.end(), ids.begin(), ids.end());
  absl::StatusOr<std::string> delta = Step(/*final=*/false);
  if (!delta.ok()) ids_.resize(old_size);
  return delta;
}

absl::StatusOr<std::string> IncrementalDecoder::Finish() { return Step(/*final=*/true); }

bool IncrementalDecoder::EndsInByteRun() const {
  for (size_t i = ids_.size(); i-- > read_offset_;) {
    const int32_t id = ids_[i];
    if (options_.skip_special_tokens && tokenizer_->IsSpecial(id)) continue;  // not decoded
    return tokenizer_->IsByteFallback(id);
  }
  return false;
}

absl::StatusOr<std::string> IncrementalDecoder::Step(bool final) {
  if (read_offset_ >= ids_.size()) return std::string();
  absl::StatusOr<std::string> new_text =
      tokenizer_->Decode(absl::MakeConstSpan(ids_).subspan(prefix_offset_), options_);
  if (!new_text.ok()) return new_text.status();
  if (ids_.size() - read_offset_ > kMaxPendingIds) final = true;
  if (!final && EndsInByteRun()) return std::string();
  if (!final && (new_text->size() <= prefix_text_.size() || EndsWithReplacement(*new_text))) {
    return std::string();
  }
  // The window's text normally extends the prefix's; if a decoder rewrote
  // the end of the prefix, emit from where they agree.
  size_t common = 0;
  const size_t limit = std::min(prefix_text_.size(), new_text->size());
  if (new_text->compare(0, prefix_text_.size(), prefix_text_) == 0) {
    common = prefix_text_.size();
  } else {
    while (common < limit && (*new_text)[common] == prefix_text_[common]) ++common;
  }
  std::string delta = new_text->substr(common);
  text_.append(delta);
  // The next window starts where this one's new ids began.
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  absl::StatusOr<std::string> prefix = tokenizer_->Decode(
      absl::MakeConstSpan(ids_).subspan(prefix_offset_, read_offset_ - prefix_offset_), options_);
  if (!prefix.ok()) return prefix.status();
  prefix_text_ = std::move(*prefix);
  return delta;
}

}  // namespace tokenizer
}  // namespace colo
