// Per-tensor CRC32C of the engine's weights, for GetWeightChecksums.
//
// The checksum covers the bytes the engine stores: float32, little endian,
// row-major. A trainer verifies an update by converting its tensors to
// float32 and comparing (weight_sync::Crc32c). Read-only; call it where no
// update commits concurrently (the scheduler thread, or while paused).
#ifndef COLO_ENGINE_MODEL_WEIGHT_CHECKSUMS_H_
#define COLO_ENGINE_MODEL_WEIGHT_CHECKSUMS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model_weights.h"

namespace colo {
namespace engine {

struct WeightChecksumEntry {
  std::string name;
  std::string dtype;  // "float32"
  std::vector<int64_t> shape;
  uint32_t crc32c = 0;
};

// `names` empty = every tensor, in ModelWeights::List() order. NOT_FOUND
// listing every unknown name.
absl::StatusOr<std::vector<WeightChecksumEntry>> ComputeWeightChecksums(
    const ModelWeights& weights, const std::vector<std::string>& names);

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_WEIGHT_CHECKSUMS_H_
