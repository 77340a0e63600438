// CudaIpcReader: copies tensors out of another process's GPU memory, given
// the CUDA IPC memory handle of the allocation (what torch's
// storage._share_cuda_() returns for a CUDA tensor: the 64-byte
// cudaIpcMemHandle_t plus the storage offset). The engine's side of
// UpdateWeightsFromIpc on a GPU (ipc_update.h).
//
// Each CopyOut opens the handle (cuIpcOpenMemHandle, lazy peer access),
// checks that the requested range lies inside the allocation
// (cuMemGetAddressRange), copies every piece on the reader's own stream to
// its destination (host or device memory), synchronizes the stream and
// closes the handle before returning: nothing of the trainer's memory is
// held afterwards, and a returned OK means the bytes are in place.
//
// libcuda.so.1 is loaded with dlopen (as CudaBackend does), so this builds
// and links everywhere; Create() is UNAVAILABLE without a driver or GPU.
// Thread-safe (calls are serialized on the reader's stream).
#ifndef COLO_WEIGHT_SYNC_CUDA_IPC_H_
#define COLO_WEIGHT_SYNC_CUDA_IPC_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace colo {
namespace weight_sync {

inline constexpr size_t kCudaIpcHandleBytes = 64;

class CudaIpcReader {
 public:
  // `device`: the engine's CUDA ordinal (its primary context is used).
  // UNAVAILABLE without a driver or device; INVALID_ARGUMENT for a bad
  // ordinal.
  static absl::StatusOr<std::unique_ptr<CudaIpcReader>> Create(int device);
  ~CudaIpcReader();
  CudaIpcReader(const CudaIpcReader&) = delete;
  CudaIpcReader& operator=(const CudaIpcReader&) = delete;

  struct Piece {
    size_t offset = 0;       // from the segment's start (handle base + base_offset)
    void* dst = nullptr;     // host or device memory of this process
    size_t bytes = 0;
  };
  // Opens `handle` (kCudaIpcHandleBytes), checks [base_offset, base_offset +
  // size) lies inside its allocation, copies `pieces` (each inside `size`),
  // synchronizes and closes. INVALID_ARGUMENT for a handle of another length
  // or ranges outside the allocation; FAILED_PRECONDITION when the handle
  // cannot be opened (not exported, another machine, no peer access); the
  // driver's error otherwise. The handle is closed on every path.
  absl::Status CopyOut(const std::string& handle, size_t base_offset, size_t size,
                       const std::vector<Piece>& pieces) ABSL_LOCKS_EXCLUDED(mu_);

  struct Driver;

 private:
  explicit CudaIpcReader(std::unique_ptr<Driver> driver);
  absl::Mutex mu_;
  std::unique_ptr<Driver> driver_ ABSL_GUARDED_BY(mu_);
};

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_CUDA_IPC_H_
