#include "engine/tokenizer/utf8.h"

namespace colo {
namespace tokenizer {
namespace {

inline bool InRange(unsigned char c, unsigned char lo, unsigned char hi) {
  return c >= lo && c <= hi;
}

// The allowed range of the second byte after lead byte `b` (Unicode Table 3-7),
// and the total sequence length; length 0 for bytes that cannot lead.
struct LeadInfo {
  int length;
  unsigned char lo;
  unsigned char hi;
};

inline LeadInfo Lead(unsigned char b) {
  if (b < 0x80) return {1, 0, 0};
  if (InRange(b, 0xC2, 0xDF)) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (InRange(b, 0xE1, 0xEC) || InRange(b, 0xEE, 0xEF)) return {3, 0x80, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (InRange(b, 0xF1, 0xF3)) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// Number of bytes of s[i..] that follow the rules for the sequence led by
// s[i] (1 = just the lead byte), up to its full length.
inline size_t WellFormedPrefix(absl::string_view s, size_t i, const LeadInfo& lead) {
  size_t n = 1;
  if (i + 1 >= s.size()) return n;
  if (!InRange(static_cast<unsigned char>(s[i + 1]), lead.lo, lead.hi)) return n;
  ++n;
  for (int k = 2; k < lead.length; ++k) {
    if (i + k >= s.size() || !InRange(static_cast<unsigned char>(s[i + k]), 0x80, 0xBF)) {
      return n;
    }
    ++n;
  }
  return n;
}

}  // namespace

size_t ValidSequenceLength(absl::string_view s, size_t i) {
  const unsigned char b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) return 1;
  const LeadInfo lead = Lead(b);
  if (lead.length == 0) return 0;
  const size_t n = WellFormedPrefix(s, i, lead);
  return n == static_cast<size_t>(lead.length) ? n : 0;
}

size_t InvalidPrefixLength(absl::string_view s, size_t i) {
  const LeadInfo lead = Lead(static_cast<unsigned char>(s[i]));
  if (lead.length == 0) return 1;
  return WellFormedPrefix(s, i, lead);
}

bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // Fast path over ASCII, 8 bytes at a time.
    while (i + 8 <= s.size()) {
      uint64_t w;
      __builtin_memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= s.size()) break;
    const size_t n = ValidSequenceLength(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

void AppendLossyUtf8(absl::string_view s, std::string* out) {
  size_t i = 0;
  size_t run = 0;  // start of the pending valid run
  while (i < s.size()) {
    const size_t n = ValidSequenceLength(s, i);
    if (n > 0) {
      i += n;
      continue;
    }
    out->append(s.data() + run, i - run);
    out->append(kReplacementUtf8.data(), kReplacementUtf8.size());
    i += InvalidPrefixLength(s, i);
    run = i;
  }
  out->append(s.data() + run, s.size() - run);
}

std::string LossyUtf8(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  AppendLossyUtf8(s, &out);
  return out;
}

size_t CompletePrefixLength(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const size_t n = ValidSequenceLength(s, i);
    if (n > 0) {
      i += n;
      continue;
    }
    const size_t bad = InvalidPrefixLength(s, i);
    const LeadInfo lead = Lead(static_cast<unsigned char>(s[i]));
    // A well-formed but truncated sequence at the very end: incomplete.
    if (lead.length > 0 && i + bad == s.size() && bad < static_cast<size_t>(lead.length)) {
      return i;
    }
    i += bad;
  }
  return i;
}

char32_t NextCodePoint(absl::string_view s, size_t* i) {
  const unsigned char b = static_cast<unsigned char>(s[*i]);
  if (b < 0x80) {
    ++*i;
    return b;
  }
  if (b < 0xE0) {
    const char32_t cp = ((b & 0x1F) << 6) | (static_cast<unsigned char>(s[*i + 1]) & 0x3F);
    *i += 2;
    return cp;
  }
  if (b < 0xF0) {
    const char32_t cp = ((b & 0x0F) << 12) | ((static_cast<unsigned char>(s[*i + 1]) & 0x3F) << 6) |
                        (static_cast<unsigned char>(s[*i + 2]) & 0x3F);
    *i += 3;
    return cp;
  }
  const char32_t cp = ((b & 0x07) << 18) | ((static_cast<unsigned char>(s[*i + 1]) & 0x3F) << 12) |
                      ((static_cast<unsigned char>(s[*i + 2]) & 0x3F) << 6) |
                      (static_cast<unsigned char>(s[*i + 3]) & 0x3F);
  *i += 4;
  return cp;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::vector<char32_t> CodePoints(absl::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) out.push_back(NextCodePoint(s, &i));
  return out;
}

std::vector<Utf8Run> SplitUtf8Runs(absl::string_view s) {
  std::vector<Utf8Run> runs;
  size_t i = 0;
  while (i < s.size()) {
    size_t n = ValidSequenceLength(s, i);
    const bool valid = n > 0;
    if (!valid) n = InvalidPrefixLength(s, i);
    if (!runs.empty() && runs.back().valid == valid) {
      runs.back().end = i + n;
    } else {
      runs.push_back({i, i + n, valid});
    }
    i += n;
  }
  return runs;
}

}  // namespace tokenizer
}  // namespace colo
