// Building an update from a gRPC chunk stream (UpdateWeightsFromTensor) or a
// safetensors directory (UpdateWeightsFromDisk) into an UpdateSink, with the
// same validation and commit path as the collective update.
#ifndef COLO_WEIGHT_SYNC_STREAM_UPDATE_H_
#define COLO_WEIGHT_SYNC_STREAM_UPDATE_H_

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "colo/v1/engine.pb.h"
#include "engine/model/safetensors.h"
#include "weight_sync/tensor_spec.h"
#include "weight_sync/update_sink.h"

namespace colo {
namespace weight_sync {

// Feeds TensorChunks (byte ranges of tensors, in any order and chunking) into
// a sink. The first chunk of a tensor declares its dtype and shape, which
// the sink validates (Begin) before any of its bytes is staged; later chunks
// must repeat the same dtype and shape. Not thread-safe.
class ChunkStreamUpdate {
 public:
  explicit ChunkStreamUpdate(UpdateSink* sink) : sink_(sink) {}

  // INVALID_ARGUMENT for a bad dtype/shape, a tensor the sink rejects, a
  // chunk whose spec differs from the tensor's first chunk, or a range
  // outside the tensor. The caller aborts the update on error.
  absl::Status Add(const v1::TensorChunk& chunk);
  // INVALID_ARGUMENT when no tensor was sent or a tensor's bytes are missing
  // (named). OK means the sink is ready to Commit.
  absl::Status Finish() const;

  int64_t bytes() const { return bytes_; }
  int64_t tensors() const { return static_cast<int64_t>(specs_.size()); }

 private:
  UpdateSink* const sink_;
  absl::flat_hash_map<std::string, TensorSpec> specs_;
  int64_t bytes_ = 0;
};

// Stages a full update from a checkpoint: every tensor the sink expects
// (ExpectedTensors) must be in the checkpoint (else INVALID_ARGUMENT listing
// the missing ones); tensors the sink does not know (e.g. rotary caches) are
// ignored, as ModelWeights::Load does. A tensor stored in a dtype colo does
// not load (e.g. F64) is INVALID_ARGUMENT naming the file's dtype string;
// other dtype/shape problems are INVALID_ARGUMENT listing every offender
// (sink->Begin). On success the sink
// is ready to Commit; `bytes` gets the bytes staged.
absl::Status StageCheckpoint(const engine::SafetensorsCheckpoint& checkpoint,
                             UpdateSink* sink, int64_t* bytes);

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_STREAM_UPDATE_H_
