#include "engine/tokenizer/bpe_model.h"

#include <queue>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/tokenizer/utf8.h"

namespace colo {
namespace tokenizer {
namespace {

// Ids above this are rejected as malformed (real vocabularies are < 1M).
constexpr int64_t kMaxId = 1 << 24;

struct Symbol {
  int32_t id;
  int32_t prev;  // -1: none
  int32_t next;  // -1: none
  bool removed;
};

struct Merge {
  int32_t pos;
  int32_t rank;
  int32_t new_id;
};

// Lowest rank first, then lowest position (tokenizers' Merge ordering).
struct MergeAfter {
  bool operator()(const Merge& a, const Merge& b) const {
    if (a.rank != b.rank) return a.rank > b.rank;
    return a.pos > b.pos;
  }
};

}  // namespace

BpeModel::BpeModel(BpeOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(
    std::vector<std::pair<std::string, int32_t>> vocab,
    const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options) {
  std::unique_ptr<BpeModel> m(new BpeModel(std::move(options)));
  int32_t limit = 0;
  for (const auto& [token, id] : vocab) {
    if (id < 0 || id >= kMaxId) {
      return absl::InvalidArgumentError(
          absl::StrCat("vocab: id ", id, " of token \"", token, "\" is out of range"));
    }
    limit = std::max(limit, id + 1);
  }
  m->id_to_token_.resize(limit);
  m->has_id_.assign(limit, false);
  m->vocab_.reserve(vocab.size());
  for (auto& [token, id] : vocab) {
    m->id_to_token_[id] = token;
    m->has_id_[id] = true;
    m->vocab_[std::move(token)] = id;
  }
  const std::string& prefix = m->options_.continuing_subword_prefix;
  m->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ia = m->vocab_.find(a);
    auto ib = m->vocab_.find(b);
    if (ia == m->vocab_.end() || ib == m->vocab_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("merges[", rank, "]: \"", a, "\" \"", b,
                       "\" uses a token that is not in the vocabulary"));
    }
    std::string merged = a;
    if (!prefix.empty() && b.compare(0, prefix.size(), prefix) == 0) {
      merged.append(b, prefix.size(), std::string::npos);
    } else {
      merged.append(b);
    }
    auto in = m->vocab_.find(merged);
    if (in == m->vocab_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("merges[", rank, "]: \"", a, "\" \"", b,
                                                     "\" makes \"", merged,
                                                     "\", which is not in the vocabulary"));
    }
    // Later duplicates win, as in tokenizers (a map built in order).
    m->merges_[PairKey(ia->second, ib->second)] = {static_cast<int32_t>(rank), in->second};
  }
  if (m->options_.unk_token.has_value()) {
    auto it = m->vocab_.find(*m->options_.unk_token);
    if (it == m->vocab_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unk_token: \"", *m->options_.unk_token, "\" is not in the vocabulary"));
    }
    m->unk_id_ = it->second;
  }
  m->byte_ids_.assign(256, -1);
  if (m->options_.byte_fallback) {
    for (int b = 0; b < 256; ++b) {
      auto it = m->vocab_.find(absl::StrFormat("<0x%02X>", b));
      if (it != m->vocab_.end()) m->byte_ids_[b] = it->second;
    }
  }
  return m;
}

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const Json& model,
                                                             absl::string_view where) {
  BpeOptions o;
  std::optional<double> dropout;
  absl::Status s = GetDouble(model, where, "dropout", &dropout);
  if (!s.ok()) return s;
  if (dropout.has_value() && *dropout != 0.0) {
    return FieldError(where, "dropout", "BPE dropout is not supported (sampling tokenizations)");
  }
  std::string unk;
  bool has_unk = false;
  {
    absl::StatusOr<const Json*> f = GetField(model, where, "unk_token");
    if (!f.ok()) return f.status();
    has_unk = *f != nullptr;
  }
  if (has_unk) {
    if (!(s = GetString(model, where, "unk_token", &unk)).ok()) return s;
    o.unk_token = unk;
  }
  if (!(s = GetString(model, where, "continuing_subword_prefix", &o.continuing_subword_prefix))
           .ok())
    return s;
  if (!(s = GetString(model, where, "end_of_word_suffix", &o.end_of_word_suffix)).ok()) return s;
  if (!(s = GetBool(model, where, "fuse_unk", &o.fuse_unk)).ok()) return s;
  if (!(s = GetBool(model, where, "byte_fallback", &o.byte_fallback)).ok()) return s;
  if (!(s = GetBool(model, where, "ignore_merges", &o.ignore_merges)).ok()) return s;

  absl::StatusOr<const Json*> vocab_json = GetRequired(model, where, "vocab");
  if (!vocab_json.ok()) return vocab_json.status();
  if (!(*vocab_json)->is_object())
    return FieldError(where, "vocab", "expected an object token -> id");
  std::vector<std::pair<std::string, int32_t>> vocab;
  vocab.reserve((*vocab_json)->size());
  for (auto it = (*vocab_json)->begin(); it != (*vocab_json)->end(); ++it) {
    if (!it.value().is_number_integer()) {
      return FieldError(where, "vocab", absl::StrCat("id of \"", it.key(), "\" is not an integer"));
    }
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id >= kMaxId) {
      return FieldError(where, "vocab",
                        absl::StrCat("id ", id, " of \"", it.key(), "\" is out of range"));
    }
    vocab.emplace_back(it.key(), static_cast<int32_t>(id));
  }

  std::vector<std::pair<std::string, std::string>> merges;
  absl::StatusOr<const Json*> merges_json = GetField(model, where, "merges");
  if (!merges_json.ok()) return merges_json.status();
  if (*merges_json != nullptr) {
    const Json& mj = **merges_json;
    if (!mj.is_array()) return FieldError(where, "merges", "expected an array");
    merges.reserve(mj.size());
    for (size_t i = 0; i < mj.size(); ++i) {
      const Json& e = mj[i];
      if (e.is_string()) {
        const std::string& line = e.get_ref<const std::string&>();
        const size_t space = line.find(' ');
        if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
          return FieldError(
              where, absl::StrCat("merges[", i, "]"),
              absl::StrCat("\"", line, "\" is not two tokens separated by one space"));
        }
        merges.emplace_back(line.substr(0, space), line.substr(space + 1));
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
      } else {
        return FieldError(where, absl::StrCat("merges[", i, "]"),
                          "expected \"a b\" or [\"a\", \"b\"]");
      }
    }
  }
  absl::StatusOr<std::unique_ptr<BpeModel>> m = Create(std::move(vocab), merges, std::move(o));
  if (!m.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".", m.status().message()));
  }
  return m;
}

std::optional<int32_t> BpeModel::TokenToId(absl::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(id_to_token_.size()) || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::InitialSymbols(absl::string_view word, std::vector<int32_t>* ids) const {
  const bool decorate =
      !options_.continuing_subword_prefix.empty() || !options_.end_of_word_suffix.empty();
  std::optional<int32_t> pending_unk;
  std::string buf;
  size_t i = 0;
  while (i < word.size()) {
    const size_t n = ValidSequenceLength(word, i);
    const size_t len = n == 0 ? 1 : n;  // input is valid UTF-8; be safe anyway
    absl::string_view ch = word.substr(i, len);
    const bool is_first = i == 0;
    const bool is_last = i + len >= word.size();
    i += len;
    absl::string_view piece = ch;
    if (decorate) {
      buf.clear();
      if (!is_first) buf.append(options_.continuing_subword_prefix);
      buf.append(ch.data(), ch.size());
      if (is_last) buf.append(options_.end_of_word_suffix);
      piece = buf;
    }
    auto it = vocab_.find(piece);
    if (it != vocab_.end()) {
      if (pending_unk.has_value()) {
        ids->push_back(*pending_unk);
        pending_unk.reset();
      }
      ids->push_back(it->second);
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (unsigned char b : piece) all = all && byte_ids_[b] >= 0;
      if (all) {
        // As in tokenizers, a pending unk is not flushed before byte tokens.
        for (unsigned char b : piece) ids->push_back(byte_ids_[b]);
        continue;
      }
    }
    if (unk_id_.has_value()) {
      if (pending_unk.has_value() && !options_.fuse_unk) ids->push_back(*pending_unk);
      pending_unk = *unk_id_;
    }
    // No unk token: the character is dropped, as in tokenizers.
  }
  if (pending_unk.has_value()) ids->push_back(*pending_unk);
}

void BpeModel::MergeAll(std::vector<int32_t>* ids) const {
  const int32_t n = static_cast<int32_t>(ids->size());
  if (n < 2 || merges_.empty()) return;
  std::vector<Symbol> symbols(n);
  std::priority_queue<Merge, std::vector<Merge>, MergeAfter> queue;
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {(*ids)[i], i - 1, i + 1 < n ? i + 1 : -1, false};
    if (i + 1 < n) {
      auto it = merges_.find(PairKey((*ids)[i], (*ids)[i + 1]));
      if (it != merges_.end()) queue.push({i, it->second.rank, it->second.new_id});
    }
  }
  while (!queue.empty()) {
    const Merge top = queue.top();
    queue.pop();
    Symbol& cur = symbols[top.pos];
    if (cur.removed || cur.next < 0) continue;
    const int32_t next_pos = cur.next;
    const Symbol right = symbols[next_pos];
    auto it = merges_.find(PairKey(cur.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;  // stale entry
    cur.id = top.new_id;
    cur.next = right.next;
    symbols[next_pos].removed = true;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (cur.prev >= 0) {
      auto p = merges_.find(PairKey(symbols[cur.prev].id, cur.id));
      if (p != merges_.end()) queue.push({cur.prev, p->second.rank, p->second.new_id});
    }
    if (cur.next >= 0) {
      auto q = merges_.find(PairKey(cur.id, symbols[cur.next].id));
      if (q != merges_.end()) queue.push({top.pos, q->second.rank, q->second.new_id});
    }
  }
  ids->clear();
  for (const Symbol& s : symbols) {
    if (!s.removed) ids->push_back(s.id);
  }
}

void BpeModel::Tokenize(absl::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  if (cache_.Lookup(word, out)) return;
  const size_t start = out->size();
  thread_local std::vector<int32_t> ids;
  ids.clear();
  InitialSymbols(word, &ids);
  MergeAll(&ids);
  out->insert(out->end(), ids.begin(), ids.end());
  cache_.Insert(word, out->data() + start, ids.size());
  if (ids.capacity() > (1 << 16)) std::vector<int32_t>().swap(ids);  // after a huge word
}

}  // namespace tokenizer
}  // namespace colo
