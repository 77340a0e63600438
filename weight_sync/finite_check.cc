#include "weight_sync/finite_check.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace colo {
namespace weight_sync {
namespace {

// A value is NaN or infinite when its exponent bits are all ones. Blocks
// are scanned branch-free (vectorizable); the exact index is looked up only
// in a block that has one.
template <typename Bits>
int64_t Scan(const unsigned char* p, int64_t n, Bits exponent) {
  constexpr int64_t kBlock = 512;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = std::min(n, b + kBlock);
    Bits bad = 0;
    for (int64_t i = b; i < e; ++i) {
      Bits v;
      std::memcpy(&v, p + i * sizeof(Bits), sizeof(Bits));
      bad |= static_cast<Bits>((v & exponent) == exponent);
    }
    if (bad == 0) continue;
    for (int64_t i = b; i < e; ++i) {
      Bits v;
      std::memcpy(&v, p + i * sizeof(Bits), sizeof(Bits));
      if ((v & exponent) == exponent) return i;
    }
  }
  return -1;
}

// "NaN", "+inf" or "-inf" for the element at `index`.
std::string Describe(TensorDtype dtype, const unsigned char* p, int64_t index) {
  uint64_t v = 0;
  uint64_t mantissa = 0;
  uint64_t sign = 0;
  switch (dtype) {
    case TensorDtype::kF32: {
      uint32_t x;
      std::memcpy(&x, p + index * 4, 4);
      v = x;
      mantissa = v & 0x7fffff;
      sign = v >> 31;
      break;
    }
    case TensorDtype::kF16: {
      uint16_t x;
      std::memcpy(&x, p + index * 2, 2);
      v = x;
      mantissa = v & 0x3ff;
      sign = v >> 15;
      break;
    }
    case TensorDtype::kBF16: {
      uint16_t x;
      std::memcpy(&x, p + index * 2, 2);
      v = x;
      mantissa = v & 0x7f;
      sign = v >> 15;
      break;
    }
    case TensorDtype::kOther:
      return "not finite";
  }
  if (mantissa != 0) return "NaN";
  return sign ? "-inf" : "+inf";
}

}  // namespace

int64_t FirstNonFinite(TensorDtype dtype, const void* data, int64_t count) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  switch (dtype) {
    case TensorDtype::kF32:
      return Scan<uint32_t>(p, count, 0x7f800000u);
    case TensorDtype::kF16:
      return Scan<uint16_t>(p, count, 0x7c00);
    case TensorDtype::kBF16:
      return Scan<uint16_t>(p, count, 0x7f80);
    case TensorDtype::kOther:
      break;
  }
  return -1;
}

absl::Status CheckFinite(const TensorSpec& spec, const void* data) {
  const int64_t i = FirstNonFinite(spec.dtype, data, spec.NumElements());
  if (i < 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "tensor \"", spec.name, "\": element ", i, " (flat, row-major) is ",
      Describe(spec.dtype, static_cast<const unsigned char*>(data), i),
      "; weight updates must be finite (nothing was applied)"));
}

}  // namespace weight_sync
}  // namespace colo
