#include "engine/tokenizer/added_vocabulary.h"

#include <algorithm>
#include <utility>

#include "engine/tokenizer/unicode.h"
#include "engine/tokenizer/utf8.h"

namespace colo {
namespace tokenizer {
namespace {

// The code point ending at text[end) (end > 0, valid UTF-8).
char32_t LastCodePoint(absl::string_view text, size_t end, size_t* begin) {
  size_t b = end - 1;
  while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
  size_t i = b;
  if (begin != nullptr) *begin = b;
  return NextCodePoint(text, &i);
}

bool EndsWithWord(absl::string_view text, size_t end) {
  return end > 0 && IsWordChar(LastCodePoint(text, end, nullptr));
}

bool StartsWithWord(absl::string_view text, size_t begin) {
  if (begin >= text.size()) return false;
  size_t i = begin;
  return IsWordChar(NextCodePoint(text, &i));
}

// Start of the whitespace run that ends at `end`.
size_t WhitespaceRunStart(absl::string_view text, size_t end) {
  while (end > 0) {
    size_t b;
    if (!IsWhiteSpace(LastCodePoint(text, end, &b))) break;
    end = b;
  }
  return end;
}

// End of the whitespace run that starts at `begin`.
size_t WhitespaceRunEnd(absl::string_view text, size_t begin) {
  while (begin < text.size()) {
    size_t i = begin;
    if (!IsWhiteSpace(NextCodePoint(text, &i))) break;
    begin = i;
  }
  return begin;
}

}  // namespace

void AddedVocabulary::Matcher::Add(absl::string_view pattern, int32_t token_index) {
  if (pattern.empty()) return;
  int32_t node = 0;
  for (unsigned char b : pattern) {
    const uint64_t key = (static_cast<uint64_t>(node) << 8) | b;
    auto it = edges_.find(key);
    if (it == edges_.end()) it = edges_.emplace(key, nodes_++).first;
    node = it->second;
  }
  first_bytes_.set(static_cast<unsigned char>(pattern[0]));
  terminal_.emplace(node, token_index);  // the first token with this content wins
}

int32_t AddedVocabulary::Matcher::Find(absl::string_view text, size_t from, size_t* begin,
                                       size_t* end) const {
  if (terminal_.empty()) return -1;
  for (size_t i = from; i < text.size(); ++i) {
    if (!first_bytes_.test(static_cast<unsigned char>(text[i]))) continue;
    int32_t node = 0;
    int32_t best = -1;
    size_t best_end = 0;
    for (size_t j = i; j < text.size(); ++j) {
      auto it =
          edges_.find((static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(text[j]));
      if (it == edges_.end()) break;
      node = it->second;
      auto t = terminal_.find(node);
      if (t != terminal_.end()) {
        best = t->second;
        best_end = j + 1;
      }
    }
    if (best >= 0) {
      *begin = i;
      *end = best_end;
      return best;
    }
  }
  return -1;
}

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer)
    : tokens_(std::move(tokens)), normalizer_(normalizer) {
  // tokenizers orders its matchers' patterns special tokens first.
  std::vector<size_t> order(tokens_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [this](size_t a, size_t b) {
    return tokens_[a].special && !tokens_[b].special;
  });
  for (size_t i : order) {
    const AddedToken& t = tokens_[i];
    if (t.normalized) {
      std::string pattern = t.content;
      if (normalizer_ != nullptr) normalizer_->Normalize(&pattern);
      normalized_.Add(pattern, static_cast<int32_t>(i));
    } else {
      raw_.Add(t.content, static_cast<int32_t>(i));
    }
  }
  for (size_t i = 0; i < tokens_.size(); ++i) {
    by_id_.emplace(tokens_[i].id, i);
    by_content_.emplace(tokens_[i].content, i);
  }
}

const AddedToken* AddedVocabulary::Find(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::Find(absl::string_view content) const {
  auto it = by_content_.find(content);
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

void AddedVocabulary::SplitWith(const Matcher& matcher, absl::string_view text, bool at_origin,
                                bool normalize_rest, std::vector<Segment>* out) const {
  auto emit_text = [&](size_t b, size_t e) {
    const bool origin = at_origin && b == 0;
    if (!normalize_rest) {
      if (e > b) out->push_back({std::string(text.substr(b, e - b)), -1, origin});
      return;
    }
    std::string piece(text.substr(b, e - b));
    if (normalizer_ != nullptr) normalizer_->Normalize(&piece);
    if (normalized_.empty()) {
      if (!piece.empty()) out->push_back({std::move(piece), -1, origin});
      return;
    }
    SplitWith(normalized_, piece, origin, /*normalize_rest=*/false, out);
  };
  size_t start_offset = 0;
  size_t pos = 0;
  size_t b = 0, e = 0;
  int32_t index;
  while (pos < text.size() && (index = matcher.Find(text, pos, &b, &e)) >= 0) {
    pos = e;
    const AddedToken& token = tokens_[index];
    size_t start = b, stop = e;
    if (token.single_word) {
      const bool start_space = start == 0 || !EndsWithWord(text, start);
      const bool stop_space = stop == text.size() || !StartsWithWord(text, stop);
      if (!start_space || !stop_space) continue;
    }
    if (token.lstrip) start = std::max(WhitespaceRunStart(text, start), start_offset);
    if (token.rstrip) stop = WhitespaceRunEnd(text, stop);
    if (start_offset < start) emit_text(start_offset, start);
    out->push_back({std::string(), token.id, at_origin && start == 0});
    start_offset = stop;
  }
  if (start_offset < text.size()) emit_text(start_offset, text.size());
}

void AddedVocabulary::Split(absl::string_view text, bool at_origin,
                            std::vector<Segment>* out) const {
  if (text.empty()) return;
  SplitWith(raw_, text, at_origin, /*normalize_rest=*/true, out);
}

}  // namespace tokenizer
}  // namespace colo
