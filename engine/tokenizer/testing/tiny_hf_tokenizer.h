// Tests: the tiny tokenizer (tiny_tokenizer.h) of `vocab` ids, loaded in
// memory as an HfTokenizer without writing files.
#ifndef COLO_ENGINE_TOKENIZER_TESTING_TINY_HF_TOKENIZER_H_
#define COLO_ENGINE_TOKENIZER_TESTING_TINY_HF_TOKENIZER_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/tiny_tokenizer.h"

namespace colo {
namespace tokenizer {

inline absl::StatusOr<std::unique_ptr<HfTokenizer>> TinyHfTokenizer(int64_t vocab) {
  TinyTokenizerOptions o;
  o.vocab = vocab;
  absl::StatusOr<TinyTokenizerFiles> files = MakeTinyTokenizer(o);
  if (!files.ok()) return files.status();
  return HfTokenizer::FromJson(files->tokenizer_json);
}

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_TESTING_TINY_HF_TOKENIZER_H_
