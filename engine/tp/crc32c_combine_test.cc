#include "engine/tp/crc32c_combine.h"

#include <random>
#include <string>

#include "gtest/gtest.h"
#include "weight_sync/crc32c.h"

namespace colo {
namespace engine {
namespace {

TEST(Crc32cCombineTest, CombiningPiecesEqualsTheWholeForAnySplit) {
  std::mt19937 rng(11);
  std::string data(5000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  const uint32_t whole = weight_sync::Crc32c(data.data(), data.size());
  for (size_t split : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{4096}, size_t{4999},
                       size_t{5000}}) {
    const uint32_t a = weight_sync::Crc32c(data.data(), split);
    const uint32_t b = weight_sync::Crc32c(data.data() + split, data.size() - split);
    EXPECT_EQ(Crc32cCombine(a, b, data.size() - split), whole) << "split " << split;
  }
  // Many equal pieces through one shift (how column shards combine).
  const size_t piece = 40;
  Crc32cShift shift(piece);
  uint32_t crc = weight_sync::Crc32c(data.data(), piece);
  for (size_t off = piece; off + piece <= 4000; off += piece) {
    crc = shift.Combine(crc, weight_sync::Crc32c(data.data() + off, piece));
  }
  EXPECT_EQ(crc, weight_sync::Crc32c(data.data(), 4000));
}

}  // namespace
}  // namespace engine
}  // namespace colo
