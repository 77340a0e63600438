// colo-tokenize: encode and decode with a model directory's tokenizer from
// the command line or as a JSON-lines service (tests and scripts drive
// thousands of strings through one process).
//
//   colo-tokenize --model=DIR --text="Hello"      prints the ids
//   colo-tokenize --model=DIR --ids=1,2,3         prints the text
//   colo-tokenize --model=DIR --jsonl < requests  one JSON reply per line:
//     {"encode": "text"} or {"encode_hex": "68656c6c6f"}
//         [, "add_special_tokens": false]                -> {"ids": [...]}
//     {"decode": [ids] [, "skip_special_tokens": true]}  -> {"text": "..."}
//     {"stream": [ids] [, "skip_special_tokens": true] [, "context": [ids]]}
//         -> {"deltas": [...], "text": "..."} (IncrementalDecoder, one id
//            at a time, the last delta from Finish)
//     {"info": true} -> vocab_size, bos/eos/pad ids, eos_ids, source,
//                       generation defaults
//     {"token_to_id": "tok"} / {"id_to_token": 5} / {"is_special": 5}
//   errors: {"error": "message", "code": "INVALID_ARGUMENT"}
#ifndef COLO_ENGINE_TOKENIZER_TOKENIZE_MAIN_LIB_H_
#define COLO_ENGINE_TOKENIZER_TOKENIZE_MAIN_LIB_H_

#include <istream>
#include <ostream>
#include <string>

#include "engine/tokenizer/tokenizer.h"

namespace colo {
namespace tokenizer {

// Answers one JSON-lines request (never throws; bad requests get an error
// reply).
std::string HandleJsonRequest(const Tokenizer& tokenizer, const std::string& line);

// Serves requests from `in` until EOF.
void ServeJsonLines(const Tokenizer& tokenizer, std::istream& in, std::ostream& out);

int TokenizeMain(int argc, char** argv);

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_TOKENIZE_MAIN_LIB_H_
