// UpdateSink: where a weight update lands. One interface for every update
// path (collective broadcast, gRPC chunk stream, safetensors directory), so
// they share validation and the all-or-nothing commit.
//
// Life of an update:
//   Validate(specs)      check only: INVALID_ARGUMENT listing EVERY offender
//                        (unknown name, wrong shape, unsupported dtype,
//                        duplicate) before any byte moves.
//   Begin(specs)         Validate + reserve staging ("shadow") storage for
//                        these tensors. May be called several times (a chunk
//                        stream discovers tensors as it goes); a tensor
//                        begun twice is INVALID_ARGUMENT.
//   Stage(name, ...)*    copy host bytes of a tensor's wire representation
//                        at a byte offset, in any order and chunking.
//   CheckComplete()      INVALID_ARGUMENT naming every begun tensor with
//                        bytes never staged.
//   Commit()             make the staged tensors live. Does no I/O and
//                        allocates no memory: only copies/converts staged
//                        bytes (or exchanges their pages with the live
//                        ones, see ModelWeightUpdateSink), so the engine can
//                        run it between two forward steps.
//   Abort()              drop everything staged; the live weights are
//                        untouched. Idempotent; also done by the destructor.
// Nothing is visible to readers of the live weights before Commit.
//
// Thread safety: not thread-safe; one caller at a time (the receiver hands
// Stage calls from one thread; Commit runs on the engine's scheduler thread
// after staging finished).
#ifndef COLO_WEIGHT_SYNC_UPDATE_SINK_H_
#define COLO_WEIGHT_SYNC_UPDATE_SINK_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "weight_sync/tensor_spec.h"

namespace colo {
namespace weight_sync {

class UpdateSink {
 public:
  virtual ~UpdateSink() = default;

  // Every tensor the sink holds, with the dtype it stores (used to build a
  // full update from a checkpoint directory).
  virtual std::vector<TensorSpec> ExpectedTensors() const = 0;
  virtual absl::Status Validate(const std::vector<TensorSpec>& specs) const = 0;
  virtual absl::Status Begin(const std::vector<TensorSpec>& specs) = 0;
  // INVALID_ARGUMENT when `name` was not begun or the range is outside the
  // tensor's bytes.
  virtual absl::Status Stage(const std::string& name, size_t offset,
                             const void* data, size_t bytes) = 0;
  // Optional zero-copy path: a host pointer where a transport may write
  // `bytes` bytes of tensor `name` at byte `offset` (the wire bytes, as
  // Stage would copy them), or null when the sink cannot offer one. Call it
  // after Begin and before any Stage/MarkStaged of the update (pointers stay
  // valid until Commit/Abort); the bytes count as staged only after
  // MarkStaged with the same range.
  virtual void* StagingArea(const std::string& name, size_t offset,
                            size_t bytes) {
    return nullptr;
  }
  virtual absl::Status MarkStaged(const std::string& name, size_t offset,
                                  size_t bytes) {
    return absl::FailedPreconditionError("this sink has no staging area");
  }
  // MarkStaged for a range whose values the caller already checked finite
  // (weight_sync/finite_check.h, e.g. while the bytes were hot in cache):
  // a tensor whose every byte arrived checked is not scanned again.
  virtual absl::Status MarkStagedChecked(const std::string& name, size_t offset,
                                         size_t bytes) {
    return MarkStaged(name, offset, bytes);
  }
  virtual absl::Status CheckComplete() const = 0;
  // FAILED_PRECONDITION when CheckComplete fails or nothing was begun.
  virtual absl::Status Commit() = 0;
  virtual void Abort() = 0;
};

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_UPDATE_SINK_H_
