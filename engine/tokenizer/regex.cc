#include "engine/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/strings/str_cat.h"

namespace colo {
namespace tokenizer {
namespace {

// Per-thread scratch: one match-data block (only the whole match is read)
// and a JIT stack large enough for long whitespace or letter runs.
struct Scratch {
  Scratch()
      : match_data(pcre2_match_data_create(1, nullptr)),
        jit_stack(pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr)),
        match_context(pcre2_match_context_create(nullptr)) {
    if (jit_stack != nullptr && match_context != nullptr) {
      pcre2_jit_stack_assign(match_context, nullptr, jit_stack);
    }
  }
  ~Scratch() {
    pcre2_match_context_free(match_context);
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_data_free(match_data);
  }
  pcre2_match_data* match_data;
  pcre2_jit_stack* jit_stack;
  pcre2_match_context* match_context;
};

Scratch& ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

}  // namespace

std::string OnigurumaToPcre2(absl::string_view pattern) {
  constexpr absl::string_view kWord = "\\p{L}\\p{M}\\p{Nd}\\p{Pc}";
  std::string out;
  out.reserve(pattern.size() + 16);
  bool in_class = false;
  bool quoted = false;  // inside \Q...\E
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (quoted) {
      if (c == '\\' && i + 1 < pattern.size() && pattern[i + 1] == 'E') {
        quoted = false;
        out.append("\\E");
        ++i;
      } else {
        out.push_back(c);
      }
      continue;
    }
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      switch (e) {
        case 's':
          out.append("\\p{White_Space}");
          break;
        case 'S':
          out.append("\\P{White_Space}");
          break;
        case 'w':
          if (in_class) {
            out.append(kWord.data(), kWord.size());
          } else {
            out.append("[").append(kWord.data(), kWord.size()).append("]");
          }
          break;
        case 'W':
          if (in_class) {
            out.append("\\W");
          } else {
            out.append("[^").append(kWord.data(), kWord.size()).append("]");
          }
          break;
        case 'h':  // Oniguruma: a hex digit (PCRE2: horizontal space)
          out.append(in_class ? "0-9a-fA-F" : "[0-9a-fA-F]");
          break;
        case 'H':
          if (in_class) {
            out.append("\\H");
          } else {
            out.append("[^0-9a-fA-F]");
          }
          break;
        case 'Q':
          quoted = true;
          out.append("\\Q");
          break;
        default:
          out.push_back('\\');
          out.push_back(e);
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out.push_back(pattern[++i]);
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out.push_back(pattern[++i]);
      continue;
    }
    if (in_class && c == '[' && i + 1 < pattern.size() && pattern[i + 1] == ':') {
      const size_t end = pattern.find(":]", i + 2);
      if (end != absl::string_view::npos) {
        out.append(pattern.data() + i, end + 2 - i);
        i = end + 1;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out.push_back(c);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::Compile(absl::string_view original) {
  const std::string pattern = OnigurumaToPcre2(original);
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    return absl::InvalidArgumentError(absl::StrCat("regex \"", original,
                                                   "\" does not compile at offset ", offset, ": ",
                                                   reinterpret_cast<char*>(message)));
  }
  const bool jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return std::unique_ptr<Regex>(new Regex(std::string(original), code, jit));
}

Regex::Regex(std::string pattern, void* code, bool jit)
    : pattern_(std::move(pattern)), code_(code), jit_(jit) {}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

absl::Status Regex::ForEachMatch(absl::string_view text,
                                 absl::FunctionRef<void(size_t, size_t)> fn) const {
  Scratch& scratch = ThreadScratch();
  if (scratch.match_data == nullptr) return absl::ResourceExhaustedError("pcre2: out of memory");
  const auto* code = static_cast<const pcre2_code*>(code_);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  while (start <= text.size()) {
    const int rc = jit_ ? pcre2_jit_match(code, subject, text.size(), start, 0, scratch.match_data,
                                          scratch.match_context)
                        : pcre2_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK,
                                      scratch.match_data, scratch.match_context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof(message));
      return absl::ResourceExhaustedError(
          absl::StrCat("regex \"", pattern_, "\" failed on ", text.size(),
                       " bytes: ", reinterpret_cast<char*>(message)));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(scratch.match_data);
    const size_t begin = ov[0];
    const size_t end = ov[1];
    if (end > begin) {
      fn(begin, end);
      start = end;
    } else {
      // Empty match: skip one character, as Oniguruma's iterator does.
      if (begin >= text.size()) break;
      size_t next = begin + 1;
      while (next < text.size() && (static_cast<unsigned char>(text[next]) & 0xC0) == 0x80) ++next;
      start = next;
    }
  }
  return absl::OkStatus();
}

}  // namespace tokenizer
}  // namespace colo
