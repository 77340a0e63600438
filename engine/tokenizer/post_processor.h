// tokenizer.json "post_processor" for single sequences: TemplateProcessing
// (e.g. Llama-3's "<|begin_of_text|> $A"), BertProcessing /
// RobertaProcessing (cls $A sep), ByteLevel (offsets only: no id change)
// and Sequence. Applied only when special tokens are requested.
//
// Thread-safe (immutable after construction).
#ifndef COLO_ENGINE_TOKENIZER_POST_PROCESSOR_H_
#define COLO_ENGINE_TOKENIZER_POST_PROCESSOR_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/json_fields.h"

namespace colo {
namespace tokenizer {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Rewrites the ids of one sequence (add_special_tokens is true).
  virtual void Process(std::vector<int32_t>* ids) const = 0;
};

absl::StatusOr<std::unique_ptr<PostProcessor>> PostProcessorFromJson(const Json& spec,
                                                                     absl::string_view where);

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_POST_PROCESSOR_H_
