#include "weight_sync/crc32c.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace colo {
namespace weight_sync {
namespace {

TEST(Crc32cTest, KnownValues) {
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(Crc32cExtendPortable(0, "123456789", 9), 0xE3069283u);
  EXPECT_EQ(Crc32c("", 0), 0u);
  std::vector<uint8_t> zeros(32, 0);
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);  // RFC 3720
}

TEST(Crc32cTest, HardwareMatchesPortableAndExtends) {
  std::mt19937 rng(7);
  std::vector<uint8_t> data(10007);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{9}, size_t{10007}}) {
    EXPECT_EQ(Crc32c(data.data(), n), Crc32cExtendPortable(0, data.data(), n)) << n;
  }
  const uint32_t whole = Crc32c(data.data(), data.size());
  const uint32_t split = Crc32cExtend(Crc32c(data.data(), 1234), data.data() + 1234,
                                      data.size() - 1234);
  EXPECT_EQ(whole, split);
}

}  // namespace
}  // namespace weight_sync
}  // namespace colo
