#include "engine/tokenizer/tiny_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/regex.h"

namespace colo {
namespace tokenizer {
namespace {

using OrderedJson = nlohmann::ordered_json;

constexpr char kLlama3Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

constexpr char kBos[] = "<|bos|>";
constexpr char kEos[] = "<|eos|>";
constexpr char kPad[] = "<|pad|>";
constexpr char kUnk[] = "<|unk|>";

// The text the merges are counted on (written for this file).
constexpr char kCorpus[] =
    R"(The rollout engine generates text for reinforcement learning while the trainer waits.
Then the engine releases its memory, the trainer trains the model, and new weights arrive.
Every step the weights, the key value cache and the graph buffers change hands on the same devices.
The controller drives the cycle and checks that each release really freed the memory it promised.
A request starts with a prompt of tokens; the scheduler batches requests and the model predicts the next token.
Tokens that share a prefix share the cached keys and values, so a second sample of the same prompt is cheap.
When the cache runs out of pages, the scheduler retracts a request and runs it again later.
She said that they would have the results in the morning, and he thought it was a good idea.
What is the answer? It is forty two. Is it not? We will see, and then we will know.
There is no reason to wait: the sooner the model learns, the better the next rollout will be.
Hello world! This is a small test of the tokenizer with numbers like 1, 2, 3, 10, 100 and 2024.
def main():
    print("hello, world")
    return 0
for i in range(10):
    total = total + i * 2
if (x > 0 && y < 10) { return x + y; }
)";

// Bytes in the order a small vocabulary keeps them: what English text and
// code use most, then the rest of ASCII, then bytes of multi-byte UTF-8,
// then control bytes, then bytes that never occur in UTF-8.
std::vector<uint8_t> BytePriority() {
  std::vector<uint8_t> order;
  std::vector<bool> seen(256, false);
  auto add = [&](int b) {
    if (!seen[b]) {
      seen[b] = true;
      order.push_back(static_cast<uint8_t>(b));
    }
  };
  for (char c : std::string(" etaoinshrdlcumwfgypbvkjxqz\n0123456789.,!?'\"-:;()"))
    add(static_cast<uint8_t>(c));
  for (char c : std::string("ETAOINSHRDLCUMWFGYPBVKJXQZ\t")) add(static_cast<uint8_t>(c));
  for (int b = 0x20; b < 0x7F; ++b) add(b);
  add('\r');
  for (int b = 0x80; b <= 0xBF; ++b) add(b);  // continuation bytes
  for (int b = 0xC2; b <= 0xF4; ++b) add(b);  // lead bytes
  for (int b = 0; b < 0x20; ++b) add(b);
  add(0x7F);
  for (int b = 0; b < 256; ++b) add(b);  // 0xC0, 0xC1, 0xF5..0xFF
  return order;
}

bool NeverInUtf8(int b) { return b == 0xC0 || b == 0xC1 || b >= 0xF5; }

struct Layout {
  std::vector<uint8_t> bytes;  // the byte alphabet, in id order
  bool unk = false;
  int64_t merges_target = 0;  // model tokens to add by merging
};

Layout ChooseLayout(int64_t vocab) {
  Layout l;
  if (vocab >= 256 + 3) {
    for (int b = 0; b < 256; ++b) l.bytes.push_back(static_cast<uint8_t>(b));
    l.merges_target = vocab - 259;
  } else if (vocab >= 243 + 4) {
    for (int b = 0; b < 256; ++b) {
      if (!NeverInUtf8(b)) l.bytes.push_back(static_cast<uint8_t>(b));
    }
    l.unk = true;
    l.merges_target = vocab - 247;
  } else {
    std::vector<uint8_t> order = BytePriority();
    l.bytes.assign(order.begin(), order.begin() + (vocab - 4));
    l.unk = true;
  }
  return l;
}

struct Trained {
  std::vector<std::string> tokens;  // model vocabulary in id order
  std::vector<std::pair<std::string, std::string>> merges;
};

absl::StatusOr<Trained> Train(const Layout& layout) {
  Trained t;
  absl::flat_hash_map<std::string, int32_t> ids;
  const auto& utf8 = ByteToCharUtf8();
  std::vector<int32_t> byte_id(256, -1);
  for (uint8_t b : layout.bytes) {
    byte_id[b] = static_cast<int32_t>(t.tokens.size());
    ids[utf8[b]] = byte_id[b];
    t.tokens.push_back(utf8[b]);
  }
  const size_t target = t.tokens.size() + layout.merges_target;
  if (layout.merges_target == 0) return t;

  // Words of the corpus as the pre-tokenizer cuts them, with counts.
  absl::StatusOr<std::unique_ptr<Regex>> regex = Regex::Compile(kLlama3Pattern);
  if (!regex.ok()) return regex.status();
  std::map<std::string, int> word_counts;
  const std::string corpus = kCorpus;
  absl::Status s = (*regex)->ForEachMatch(
      corpus, [&](size_t b, size_t e) { word_counts[corpus.substr(b, e - b)]++; });
  if (!s.ok()) return s;
  struct Word {
    std::vector<int32_t> symbols;
    int count;
  };
  std::vector<Word> words;
  for (const auto& [w, n] : word_counts) {
    Word word{{}, n};
    bool ok = true;
    for (unsigned char b : w) {
      ok = ok && byte_id[b] >= 0;
      word.symbols.push_back(byte_id[b]);
    }
    if (ok && word.symbols.size() > 1) words.push_back(std::move(word));
  }
  // Merge the most frequent adjacent pair (ties: the smaller strings) until
  // no pair occurs twice.
  while (t.tokens.size() < target) {
    std::map<std::pair<int32_t, int32_t>, int> counts;
    for (const Word& w : words) {
      for (size_t i = 0; i + 1 < w.symbols.size(); ++i)
        counts[{w.symbols[i], w.symbols[i + 1]}] += w.count;
    }
    const std::pair<int32_t, int32_t>* best = nullptr;
    int best_count = 1;
    for (const auto& [pair, n] : counts) {
      if (n > best_count || (n == best_count && best != nullptr &&
                             std::tie(t.tokens[pair.first], t.tokens[pair.second]) <
                                 std::tie(t.tokens[best->first], t.tokens[best->second]))) {
        best = &pair;
        best_count = n;
      }
    }
    if (best == nullptr) break;
    const auto [a, b] = *best;
    const std::string merged = t.tokens[a] + t.tokens[b];
    t.merges.emplace_back(t.tokens[a], t.tokens[b]);
    int32_t id;
    auto it = ids.find(merged);
    if (it != ids.end()) {
      id = it->second;
    } else {
      id = static_cast<int32_t>(t.tokens.size());
      ids[merged] = id;
      t.tokens.push_back(merged);
    }
    for (Word& w : words) {
      std::vector<int32_t> out;
      out.reserve(w.symbols.size());
      for (size_t i = 0; i < w.symbols.size(); ++i) {
        if (i + 1 < w.symbols.size() && w.symbols[i] == a && w.symbols[i + 1] == b) {
          out.push_back(id);
          ++i;
        } else {
          out.push_back(w.symbols[i]);
        }
      }
      w.symbols = std::move(out);
    }
  }
  // Large vocabularies: extend tokens by one letter, in id order.
  std::vector<int32_t> letters;
  for (char c : std::string("etaoinshrdlcumwfgypbvkjxqz")) {
    if (byte_id[static_cast<uint8_t>(c)] >= 0) letters.push_back(byte_id[static_cast<uint8_t>(c)]);
  }
  for (size_t base = 0; t.tokens.size() < target && base < t.tokens.size(); ++base) {
    for (int32_t letter : letters) {
      if (t.tokens.size() >= target) break;
      std::string merged = t.tokens[base] + t.tokens[letter];
      if (ids.contains(merged)) continue;
      ids[merged] = static_cast<int32_t>(t.tokens.size());
      t.merges.emplace_back(t.tokens[base], t.tokens[letter]);
      t.tokens.push_back(std::move(merged));
    }
  }
  if (t.tokens.size() != target) {
    return absl::InternalError(
        absl::StrCat("tiny tokenizer: made ", t.tokens.size(), " tokens, want ", target));
  }
  return t;
}

OrderedJson AddedTokenJson(int64_t id, const std::string& content) {
  OrderedJson j;
  j["id"] = id;
  j["content"] = content;
  j["single_word"] = false;
  j["lstrip"] = false;
  j["rstrip"] = false;
  j["normalized"] = false;
  j["special"] = true;
  return j;
}

std::string Dump(const OrderedJson& j) { return j.dump(2) + "\n"; }

}  // namespace

absl::StatusOr<TinyTokenizerFiles> MakeTinyTokenizer(const TinyTokenizerOptions& options) {
  const int64_t vocab = options.vocab;
  if (vocab < 5 || vocab > 1000000) {
    return absl::InvalidArgumentError(
        absl::StrCat("tiny tokenizer: vocab ", vocab, " is outside [5, 1000000]"));
  }
  const Layout layout = ChooseLayout(vocab);
  absl::StatusOr<Trained> trained = Train(layout);
  if (!trained.ok()) return trained.status();

  std::vector<std::pair<std::string, int64_t>> specials;
  int64_t next = static_cast<int64_t>(trained->tokens.size());
  const int64_t unk_id = layout.unk ? next++ : -1;
  const int64_t bos_id = next++, eos_id = next++, pad_id = next++;
  if (next != vocab)
    return absl::InternalError(absl::StrCat("tiny tokenizer: ", next, " ids for vocab ", vocab));
  if (layout.unk) specials.emplace_back(kUnk, unk_id);
  specials.emplace_back(kBos, bos_id);
  specials.emplace_back(kEos, eos_id);
  specials.emplace_back(kPad, pad_id);

  OrderedJson model;
  model["type"] = "BPE";
  model["dropout"] = nullptr;
  model["unk_token"] = layout.unk ? OrderedJson(kUnk) : OrderedJson(nullptr);
  model["continuing_subword_prefix"] = nullptr;
  model["end_of_word_suffix"] = nullptr;
  model["fuse_unk"] = false;
  model["byte_fallback"] = false;
  model["ignore_merges"] = false;
  // Keys are unique: append without ordered_json's linear-time lookup.
  OrderedJson vocab_json = OrderedJson::object();
  auto& entries = vocab_json.get_ref<OrderedJson::object_t&>();
  entries.reserve(trained->tokens.size() + 1);
  for (size_t i = 0; i < trained->tokens.size(); ++i) entries.emplace_back(trained->tokens[i], i);
  if (layout.unk)
    entries.emplace_back(kUnk, unk_id);  // the BPE model's unk must be in its vocabulary
  model["vocab"] = std::move(vocab_json);
  OrderedJson merges = OrderedJson::array();
  for (const auto& [a, b] : trained->merges) merges.push_back({a, b});
  model["merges"] = std::move(merges);

  OrderedJson tok;
  tok["version"] = "1.0";
  tok["truncation"] = nullptr;
  tok["padding"] = nullptr;
  OrderedJson added = OrderedJson::array();
  for (const auto& [content, id] : specials) added.push_back(AddedTokenJson(id, content));
  tok["added_tokens"] = std::move(added);
  tok["normalizer"] = nullptr;
  OrderedJson split = {{"type", "Split"}, {"behavior", "Isolated"}, {"invert", false}};
  split["pattern"] = {{"Regex", kLlama3Pattern}};
  OrderedJson byte_level = {{"type", "ByteLevel"},
                            {"add_prefix_space", false},
                            {"trim_offsets", true},
                            {"use_regex", false}};
  tok["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers", OrderedJson::array({split, byte_level})}};
  OrderedJson bos_piece = {{"SpecialToken", {{"id", kBos}, {"type_id", 0}}}};
  OrderedJson a_piece = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
  OrderedJson b_piece = {{"Sequence", {{"id", "B"}, {"type_id", 1}}}};
  OrderedJson template_processing = {{"type", "TemplateProcessing"}};
  template_processing["single"] = OrderedJson::array({bos_piece, a_piece});
  template_processing["pair"] = OrderedJson::array({bos_piece, a_piece, bos_piece, b_piece});
  OrderedJson bos_def = {{"id", kBos}};
  bos_def["ids"] = OrderedJson::array({bos_id});
  bos_def["tokens"] = OrderedJson::array({kBos});
  template_processing["special_tokens"] = OrderedJson::object();
  template_processing["special_tokens"][kBos] = std::move(bos_def);
  OrderedJson byte_level_post = {{"type", "ByteLevel"},
                                 {"add_prefix_space", true},
                                 {"trim_offsets", false},
                                 {"use_regex", true}};
  tok["post_processor"] = {
      {"type", "Sequence"},
      {"processors", OrderedJson::array({byte_level_post, template_processing})}};
  tok["decoder"] = {{"type", "ByteLevel"},
                    {"add_prefix_space", true},
                    {"trim_offsets", true},
                    {"use_regex", true}};
  tok["model"] = std::move(model);

  OrderedJson config;
  config["tokenizer_class"] = "PreTrainedTokenizerFast";
  config["bos_token"] = kBos;
  config["eos_token"] = kEos;
  config["pad_token"] = kPad;
  if (layout.unk) config["unk_token"] = kUnk;
  config["clean_up_tokenization_spaces"] = false;
  config["model_max_length"] = options.max_position;
  OrderedJson decoder_map = OrderedJson::object();
  for (const auto& [content, id] : specials) {
    OrderedJson a = AddedTokenJson(id, content);
    a.erase("id");
    decoder_map[std::to_string(id)] = std::move(a);
  }
  config["added_tokens_decoder"] = std::move(decoder_map);

  OrderedJson generation;
  generation["bos_token_id"] = bos_id;
  generation["eos_token_id"] = eos_id;
  generation["pad_token_id"] = pad_id;

  return TinyTokenizerFiles{Dump(tok), Dump(config), Dump(generation)};
}

absl::Status WriteTinyTokenizer(const TinyTokenizerOptions& options, const std::string& dir) {
  if (options.vocab < 5) return absl::OkStatus();
  absl::StatusOr<TinyTokenizerFiles> files = MakeTinyTokenizer(options);
  if (!files.ok()) return files.status();
  for (const auto& [name, content] :
       {std::pair<const char*, const std::string*>{"tokenizer.json", &files->tokenizer_json},
        {"tokenizer_config.json", &files->tokenizer_config_json},
        {"generation_config.json", &files->generation_config_json}}) {
    const std::string path = dir + "/" + name;
    std::ofstream out(path, std::ios::trunc | std::ios::binary);
    out << *content;
    out.close();
    if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

}  // namespace tokenizer
}  // namespace colo
