// IpcStreamUpdate: builds an update from UpdateWeightsFromIpc buckets (the
// same-device handoff: the trainer shares its tensors by handle) into an
// UpdateSink, with the same validation and commit path as the other updates.
//
// For each bucket, before a byte moves: every tensor's dtype/shape parses,
// its segment index exists, its bytes lie inside the segment's declared
// size, and the sink accepts it (Begin: known name, the model's shape, a
// tensor not already part of the update). Then each segment is opened:
//   shm_path         must resolve (realpath) to a regular file under one of
//                    `shm_dirs`, or be /proc/<pid>/fd/<n> of a memfd or of a
//                    (possibly unlinked) file under `shm_dirs` (torch's
//                    shared CPU storages); the file must hold offset_bytes +
//                    size_bytes bytes; it is mapped read-only (pages faulted
//                    in by the copy threads) and unmapped afterwards; pieces
//                    are copied into the staging area in 256 KiB chunks,
//                    each checked for NaN/inf while in cache, by up to
//                    `copy_threads` threads;
//   cuda_ipc_handle  opened with CudaIpcReader (copies on the engine's
//                    stream, synchronizes, closes);
// the tensors are copied into the sink's staging area and the segments are
// closed before Add returns: the engine holds nothing of the trainer's
// memory afterwards, and the trainer may reuse the bucket. A tensor larger
// than a bucket comes in pieces (tensor_offset_bytes / length_bytes); its
// first piece (tensor_offset_bytes 0) comes first and later pieces repeat
// its dtype and shape.
//
// Errors (the caller aborts the update; the live weights are untouched):
// INVALID_ARGUMENT for bad tensors or ranges (naming the tensor/segment),
// a path outside the allowed directories, a missing or too-small segment;
// FAILED_PRECONDITION for CUDA handles when the engine cannot open them.
// Not thread-safe.
#ifndef COLO_WEIGHT_SYNC_IPC_UPDATE_H_
#define COLO_WEIGHT_SYNC_IPC_UPDATE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "colo/v1/engine.pb.h"
#include "weight_sync/cuda_ipc.h"
#include "weight_sync/update_sink.h"

namespace colo {
namespace weight_sync {

struct IpcUpdateOptions {
  UpdateSink* sink = nullptr;  // required
  // Directories shm_path may name (after resolving symlinks).
  std::vector<std::string> shm_dirs = {"/dev/shm"};
  // The reader for CUDA segments, created on first use; null or an error:
  // CUDA segments are FAILED_PRECONDITION with that error.
  std::function<absl::StatusOr<CudaIpcReader*>()> cuda;
  // Check shared-memory pieces for NaN/inf chunk by chunk as they are copied
  // (hot in cache), so the sink need not scan them again.
  bool check_finite = true;
  // Threads that read and check a bucket's chunks in parallel.
  int copy_threads = 2;
};

class IpcStreamUpdate {
 public:
  explicit IpcStreamUpdate(IpcUpdateOptions options) : options_(std::move(options)) {}

  // Validates, copies and releases one bucket (see the file comment).
  absl::StatusOr<v1::IpcBucketAck> Add(const v1::IpcBucket& bucket);
  // INVALID_ARGUMENT when no tensor arrived or bytes are missing, or the
  // sink rejects the values (NaN): ready to commit otherwise.
  absl::Status Finish() const;

  int64_t bytes() const { return bytes_; }
  int64_t tensors() const { return tensors_; }
  int64_t buckets() const { return buckets_; }

 private:
  const IpcUpdateOptions options_;
  // Every tensor begun so far (later pieces must repeat its dtype/shape).
  absl::flat_hash_map<std::string, TensorSpec> specs_;
  int64_t bytes_ = 0;
  int64_t tensors_ = 0;
  int64_t buckets_ = 0;
};

// Where this process can share memory: "<kernel boot id>/<IPC namespace>"
// (e.g. "7d5b...-.../ipc:[4026531839]"). Two processes with the same value
// run on one kernel in one IPC namespace (e.g. containers of one pod), so
// they can share /dev/shm files and CUDA IPC handles. The Python client
// computes the same string (colo_client.ipc_domain()).
std::string LocalIpcDomain();

// Whether `path` may be opened as a shared-memory segment (see the file
// comment); the resolved path, or INVALID_ARGUMENT saying why not.
absl::StatusOr<std::string> ResolveShmPath(const std::string& path,
                                           const std::vector<std::string>& shm_dirs);

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_IPC_UPDATE_H_
