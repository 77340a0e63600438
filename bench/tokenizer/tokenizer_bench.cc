// Tokenizer throughput on one thread: encode (MB/s, tokens/s), decode and
// streaming decode (tokens/s) of a set of documents with a model
// directory's tokenizer. hf_tokenizer_bench.py runs Hugging Face tokenizers
// on the same documents and tokenizer and prints both (see README.md).
//
//   tokenizer_bench --model=DIR --docs=FILE.jsonl [--rounds=5]
// FILE.jsonl: one JSON string (a document) per line. Prints one JSON object
// of rates per second of process CPU time (best of the rounds).
#include <time.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "engine/tokenizer/incremental_decoder.h"
#include "engine/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model, "", "Model directory with tokenizer.json or tokenizer.model.");
ABSL_FLAG(std::string, docs, "", "JSON lines, one document (a JSON string) per line.");
ABSL_FLAG(int, rounds, 5, "Timed rounds after the cold one (the best is reported).");

namespace {

using colo::tokenizer::IncrementalDecoder;
using colo::tokenizer::Tokenizer;

// Process CPU time: on a shared machine it moves much less than wall time,
// and the benchmark is single-threaded.
double Now() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

int Run() {
  absl::StatusOr<std::unique_ptr<Tokenizer>> loaded;
  const double t_load = Now();
  loaded = Tokenizer::Load(absl::GetFlag(FLAGS_model));
  const double load_s = Now() - t_load;
  if (!loaded.ok()) {
    std::cerr << loaded.status() << "\n";
    return 1;
  }
  const Tokenizer& tok = **loaded;
  std::vector<std::string> docs;
  size_t bytes = 0;
  {
    std::ifstream in(absl::GetFlag(FLAGS_docs));
    std::string line;
    while (std::getline(in, line)) {
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_string()) continue;
      docs.push_back(j.get<std::string>());
      bytes += docs.back().size();
    }
  }
  if (docs.empty()) {
    std::cerr << "no documents in --docs\n";
    return 1;
  }
  std::vector<std::vector<int32_t>> ids(docs.size());
  auto encode_all = [&] {
    const double t0 = Now();
    for (size_t i = 0; i < docs.size(); ++i) {
      absl::StatusOr<std::vector<int32_t>> r = tok.Encode(docs[i], {.add_special_tokens = false});
      if (!r.ok()) {
        std::cerr << r.status() << "\n";
        std::exit(1);
      }
      ids[i] = std::move(*r);
    }
    return Now() - t0;
  };
  const double cold_s = encode_all();
  double best_encode = cold_s;
  for (int r = 0; r < absl::GetFlag(FLAGS_rounds); ++r)
    best_encode = std::min(best_encode, encode_all());
  size_t tokens = 0;
  for (const auto& v : ids) tokens += v.size();

  double best_decode = 1e30;
  size_t out_bytes = 0;
  for (int r = 0; r < std::max(1, absl::GetFlag(FLAGS_rounds)); ++r) {
    const double t0 = Now();
    out_bytes = 0;
    for (const auto& v : ids) {
      absl::StatusOr<std::string> text = tok.Decode(v);
      if (!text.ok()) {
        std::cerr << text.status() << "\n";
        return 1;
      }
      out_bytes += text->size();
    }
    best_decode = std::min(best_decode, Now() - t0);
  }
  // Streaming: one id at a time through IncrementalDecoder.
  double best_stream = 1e30;
  for (int r = 0; r < std::max(1, absl::GetFlag(FLAGS_rounds) / 2); ++r) {
    const double t0 = Now();
    for (const auto& v : ids) {
      IncrementalDecoder d(&tok);
      for (int32_t id : v) {
        if (!d.Append(id).ok()) return 1;
      }
      if (!d.Finish().ok()) return 1;
    }
    best_stream = std::min(best_stream, Now() - t0);
  }
  nlohmann::json out;
  out["impl"] = "colo";
  out["docs"] = docs.size();
  out["bytes"] = bytes;
  out["tokens"] = tokens;
  out["load_s"] = load_s;
  out["encode_cold_mb_s"] = bytes / cold_s / 1e6;
  out["encode_mb_s"] = bytes / best_encode / 1e6;
  out["encode_tokens_s"] = tokens / best_encode;
  out["decode_tokens_s"] = tokens / best_decode;
  out["stream_tokens_s"] = tokens / best_stream;
  out["decoded_bytes"] = out_bytes;
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return Run();
}
