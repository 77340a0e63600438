// CudaStream: a move-only owner of a non-blocking cudaStream_t on the
// current device (destroyed on destruction). Streams are passed explicitly to
// every kernel in //kernels/cuda; capture into a CUDA graph needs a stream
// other than the legacy default stream, which is why this exists.
// Thread-compatible.
#ifndef COLO_KERNELS_CUDA_CUDA_STREAM_H_
#define COLO_KERNELS_CUDA_CUDA_STREAM_H_

#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace colo::kernels::cuda {

class CudaStream {
 public:
  // UNAVAILABLE without a GPU.
  static absl::StatusOr<CudaStream> Create();

  CudaStream() = default;
  ~CudaStream();
  CudaStream(CudaStream&& other) noexcept;
  CudaStream& operator=(CudaStream&& other) noexcept;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;

  cudaStream_t get() const { return stream_; }
  // Waits for all work queued on the stream; the first error of that work.
  absl::Status Synchronize() const;

 private:
  explicit CudaStream(cudaStream_t stream) : stream_(stream) {}
  cudaStream_t stream_ = nullptr;
};

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_CUDA_STREAM_H_
