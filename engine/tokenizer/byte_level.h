// GPT-2's byte-level alphabet: every byte maps to one printable code point
// (bytes_to_unicode in GPT-2, ByteLevel in Hugging Face tokenizers), so any
// byte string becomes a string of 256 possible characters that BPE merges.
#ifndef COLO_ENGINE_TOKENIZER_BYTE_LEVEL_H_
#define COLO_ENGINE_TOKENIZER_BYTE_LEVEL_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace colo {
namespace tokenizer {

// The code point byte `b` maps to.
char32_t ByteToChar(uint8_t b);

// UTF-8 of ByteToChar(b), for all 256 bytes (1 or 2 bytes each).
const std::array<std::string, 256>& ByteToCharUtf8();

// Appends the byte-level form of `bytes` to *out.
void AppendByteLevel(absl::string_view bytes, std::string* out);

// The bytes a byte-level string stands for; nullopt when it has a character
// outside the 256-character alphabet (such tokens decode to their own UTF-8,
// as Hugging Face's ByteLevel decoder does).
std::optional<std::string> FromByteLevel(absl::string_view chars);

}  // namespace tokenizer
}  // namespace colo

#endif  // COLO_ENGINE_TOKENIZER_BYTE_LEVEL_H_
