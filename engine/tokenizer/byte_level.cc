#include "engine/tokenizer/byte_level.h"

#include "engine/tokenizer/utf8.h"

namespace colo {
namespace tokenizer {
namespace {

struct Tables {
  std::array<char32_t, 256> byte_to_char;
  std::array<std::string, 256> byte_to_utf8;
  // Code point -> byte + 1 (0 = not in the alphabet), for code points < 512.
  std::array<uint16_t, 512> char_to_byte;
};

Tables MakeTables() {
  Tables t{};
  auto printable = [](int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const char32_t cp = printable(b) ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
    t.byte_to_char[b] = cp;
    AppendUtf8(cp, &t.byte_to_utf8[b]);
    t.char_to_byte[cp] = static_cast<uint16_t>(b + 1);
  }
  return t;
}

const Tables& GetTables() {
  static const Tables* tables = new Tables(MakeTables());
  return *tables;
}

}  // namespace

char32_t ByteToChar(uint8_t b) { return GetTables().byte_to_char[b]; }

const std::array<std::string, 256>& ByteToCharUtf8() { return GetTables().byte_to_utf8; }

void AppendByteLevel(absl::string_view bytes, std::string* out) {
  const auto& utf8 = GetTables().byte_to_utf8;
  for (unsigned char b : bytes) out->append(utf8[b]);
}

std::optional<std::string> FromByteLevel(absl::string_view chars) {
  const Tables& t = GetTables();
  std::string out;
  out.reserve(chars.size());
  size_t i = 0;
  while (i < chars.size()) {
    if (ValidSequenceLength(chars, i) == 0) return std::nullopt;
    const char32_t cp = NextCodePoint(chars, &i);
    if (cp >= 512 || t.char_to_byte[cp] == 0) return std::nullopt;
    out.push_back(static_cast<char>(t.char_to_byte[cp] - 1));
  }
  return out;
}

}  // namespace tokenizer
}  // namespace colo
