#include "controller/testing/journal_bytes.h"

#include <cstdint>
#include <fstream>
#include <sstream>

namespace colo {
namespace controller {
namespace {

uint32_t GetU32(const std::string& d, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v |= static_cast<uint32_t>(static_cast<unsigned char>(d[at + i])) << (8 * i);
  }
  return v;
}

}  // namespace

std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFileBytes(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

std::vector<std::pair<size_t, size_t>> JournalRecordFrames(const std::string& data) {
  std::vector<std::pair<size_t, size_t>> frames;
  size_t at = 0;
  if (data.compare(0, 8, "COLOJRN2") == 0 && data.size() >= 16) at = 8 + 8 + GetU32(data, 8);
  while (at + 8 <= data.size() && at + 8 + GetU32(data, at) <= data.size()) {
    frames.emplace_back(at, 8 + GetU32(data, at));
    at += 8 + GetU32(data, at);
  }
  return frames;
}

}  // namespace controller
}  // namespace colo
