// CRC32C (Castagnoli), as used for per-tensor weight checksums
// (GetWeightChecksums). Uses the SSE4.2 crc32 instruction when the CPU has
// it, a table otherwise; both give the same value. Thread-safe.
#ifndef COLO_WEIGHT_SYNC_CRC32C_H_
#define COLO_WEIGHT_SYNC_CRC32C_H_

#include <cstddef>
#include <cstdint>

namespace colo {
namespace weight_sync {

// Extends `crc` (0 for a fresh checksum) over `n` bytes at `data`.
// Crc32c("123456789") == 0xE3069283.
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n);
inline uint32_t Crc32c(const void* data, size_t n) {
  return Crc32cExtend(0, data, n);
}

// The portable table implementation (exposed for tests).
uint32_t Crc32cExtendPortable(uint32_t crc, const void* data, size_t n);

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_CRC32C_H_
