// Combining CRC32C checksums (weight_sync/crc32c.h) of consecutive byte
// ranges: Crc32cCombine(crc(A), crc(B), |B|) == crc(A B). A tensor-parallel
// engine checksums each rank's pieces of a tensor and combines them into the
// full tensor's CRC without moving the bytes (engine/tp/tp_checksums.h).
// zlib's crc32_combine method over the Castagnoli polynomial.
// Thread-compatible.
#ifndef COLO_ENGINE_TP_CRC32C_COMBINE_H_
#define COLO_ENGINE_TP_CRC32C_COMBINE_H_

#include <array>
#include <cstdint>

namespace colo {
namespace engine {

// The linear map "append `bytes` zero bytes" on CRC32C registers; building
// it costs O(log bytes) 32x32 GF(2) matrix products, applying it 32 steps,
// so combining many pieces of one length reuses one shift.
class Crc32cShift {
 public:
  explicit Crc32cShift(uint64_t bytes);
  // crc(A B) from crc(A) and crc(B), for |B| == the shift's bytes.
  uint32_t Combine(uint32_t crc_a, uint32_t crc_b) const;

 private:
  std::array<uint32_t, 32> matrix_;
};

inline uint32_t Crc32cCombine(uint32_t crc_a, uint32_t crc_b, uint64_t bytes_b) {
  return Crc32cShift(bytes_b).Combine(crc_a, crc_b);
}

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_TP_CRC32C_COMBINE_H_
