#include "engine/tp/crc32c_combine.h"

namespace colo {
namespace engine {
namespace {

constexpr uint32_t kPoly = 0x82F63B78u;  // reflected Castagnoli polynomial
using Matrix = std::array<uint32_t, 32>;

uint32_t Times(const Matrix& m, uint32_t v) {
  uint32_t sum = 0;
  for (int i = 0; v != 0; ++i, v >>= 1) {
    if (v & 1) sum ^= m[i];
  }
  return sum;
}

// a after b (apply b first).
Matrix Compose(const Matrix& a, const Matrix& b) {
  Matrix out;
  for (int i = 0; i < 32; ++i) out[i] = Times(a, b[i]);
  return out;
}

Matrix Identity() {
  Matrix m;
  for (int i = 0; i < 32; ++i) m[i] = 1u << i;
  return m;
}

}  // namespace

Crc32cShift::Crc32cShift(uint64_t bytes) {
  // One zero bit, then square up to one zero byte (8 bits).
  Matrix bit;
  bit[0] = kPoly;
  for (int i = 1; i < 32; ++i) bit[i] = 1u << (i - 1);
  Matrix power = Compose(bit, bit);  // 2 bits
  power = Compose(power, power);     // 4 bits
  power = Compose(power, power);     // 8 bits = 1 byte
  matrix_ = Identity();
  while (bytes != 0) {
    if (bytes & 1) matrix_ = Compose(power, matrix_);
    bytes >>= 1;
    if (bytes != 0) power = Compose(power, power);
  }
}

uint32_t Crc32cShift::Combine(uint32_t crc_a, uint32_t crc_b) const {
  return Times(matrix_, crc_a) ^ crc_b;
}

}  // namespace engine
}  // namespace colo
