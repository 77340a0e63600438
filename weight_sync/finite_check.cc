#include "weight_sync/finite_check.h"

#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/strings/str_cat.h"

namespace colo {
namespace weight_sync {
namespace {

// A value is NaN or infinite when its exponent bits are all ones, i.e. when
// its magnitude bits (sign cleared) exceed the largest finite value's:
// float32 0x7f7fffff, bfloat16 0x7f7f, float16 0x7bff. Blocks are tested
// with SSE2 (signed compares are exact here: magnitudes are < 2^31 / 2^15);
// the exact index is looked up only in a block that has one.
template <typename Bits>
int64_t ScanScalar(const unsigned char* p, int64_t begin, int64_t end, Bits max_finite) {
  constexpr Bits kMagnitude = static_cast<Bits>(~(Bits{1} << (8 * sizeof(Bits) - 1)));
  for (int64_t i = begin; i < end; ++i) {
    Bits v;
    std::memcpy(&v, p + i * sizeof(Bits), sizeof(Bits));
    if ((v & kMagnitude) > max_finite) return i;
  }
  return -1;
}

#if defined(__SSE2__)
int64_t Scan32(const unsigned char* p, int64_t n) {
  constexpr int64_t kBlock = 16;  // floats per iteration (4 vectors)
  const __m128i magnitude = _mm_set1_epi32(0x7fffffff);
  const __m128i max_finite = _mm_set1_epi32(0x7f7fffff);
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    const unsigned char* q = p + i * 4;
    __m128i a = _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)), magnitude);
    __m128i b = _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16)), magnitude);
    __m128i c = _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 32)), magnitude);
    __m128i d = _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 48)), magnitude);
    __m128i bad = _mm_or_si128(
        _mm_or_si128(_mm_cmpgt_epi32(a, max_finite), _mm_cmpgt_epi32(b, max_finite)),
        _mm_or_si128(_mm_cmpgt_epi32(c, max_finite), _mm_cmpgt_epi32(d, max_finite)));
    if (_mm_movemask_epi8(bad) != 0) return ScanScalar<uint32_t>(p, i, i + kBlock, 0x7f7fffffu);
  }
  return ScanScalar<uint32_t>(p, i, n, 0x7f7fffffu);
}

int64_t Scan16(const unsigned char* p, int64_t n, uint16_t max_finite) {
  constexpr int64_t kBlock = 32;  // values per iteration (4 vectors)
  const __m128i magnitude = _mm_set1_epi16(0x7fff);
  const __m128i limit = _mm_set1_epi16(static_cast<int16_t>(max_finite));
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    const unsigned char* q = p + i * 2;
    __m128i a = _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)), magnitude);
    __m128i b = _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16)), magnitude);
    __m128i c = _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 32)), magnitude);
    __m128i d = _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 48)), magnitude);
    __m128i bad = _mm_or_si128(_mm_or_si128(_mm_cmpgt_epi16(a, limit), _mm_cmpgt_epi16(b, limit)),
                               _mm_or_si128(_mm_cmpgt_epi16(c, limit), _mm_cmpgt_epi16(d, limit)));
    if (_mm_movemask_epi8(bad) != 0) return ScanScalar<uint16_t>(p, i, i + kBlock, max_finite);
  }
  return ScanScalar<uint16_t>(p, i, n, max_finite);
}
#else
int64_t Scan32(const unsigned char* p, int64_t n) {
  return ScanScalar<uint32_t>(p, 0, n, 0x7f7fffffu);
}
int64_t Scan16(const unsigned char* p, int64_t n, uint16_t max_finite) {
  return ScanScalar<uint16_t>(p, 0, n, max_finite);
}
#endif

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
      return Scan32(p, count);
    case TensorDtype::kF16:
      return Scan16(p, count, 0x7bff);
    case TensorDtype::kBF16:
      return Scan16(p, count, 0x7f7f);
    case TensorDtype::kOther:
      break;
  }
  return -1;
}

absl::Status CheckFinite(const TensorSpec& spec, const void* data) {
  return CheckFiniteRange(spec, data, 0, spec.NumElements());
}

absl::Status CheckFiniteRange(const TensorSpec& spec, const void* data, int64_t first,
                              int64_t count) {
  const int64_t i = FirstNonFinite(spec.dtype, data, count);
  if (i < 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "tensor \"", spec.name, "\": element ", first + i, " (flat, row-major) is ",
      Describe(spec.dtype, static_cast<const unsigned char*>(data), i),
      "; weight updates must be finite (nothing was applied)"));
}

}  // namespace weight_sync
}  // namespace colo
