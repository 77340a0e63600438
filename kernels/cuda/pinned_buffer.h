// PinnedBuffer: a move-only page-locked host buffer (cudaHostAlloc, freed
// with cudaFreeHost). Copies from it with cudaMemcpyAsync are truly
// asynchronous and ordered on their stream; with unified addressing kernels
// may also read it directly (ConvertElements does, for weight uploads).
// The owner must not reuse or free the bytes while a copy or kernel reading
// them may still be in flight (record an event, or synchronize the stream).
// Thread-compatible.
#ifndef COLO_KERNELS_CUDA_PINNED_BUFFER_H_
#define COLO_KERNELS_CUDA_PINNED_BUFFER_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"

namespace colo::kernels::cuda {

class PinnedBuffer {
 public:
  // RESOURCE_EXHAUSTED / UNAVAILABLE from the runtime.
  static absl::StatusOr<PinnedBuffer> Create(size_t bytes) {
    void* p = nullptr;
    if (absl::Status s = CudaStatus(cudaHostAlloc(&p, bytes == 0 ? 1 : bytes,
                                                  cudaHostAllocPortable | cudaHostAllocMapped),
                                    absl::StrCat("cudaHostAlloc(", bytes, " bytes)"));
        !s.ok()) {
      return s;
    }
    return PinnedBuffer(p, bytes);
  }

  PinnedBuffer() = default;
  ~PinnedBuffer() { Reset(); }
  PinnedBuffer(PinnedBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    if (this != &o) {
      Reset();
      data_ = std::exchange(o.data_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void* data() const { return data_; }
  size_t size() const { return bytes_; }
  bool valid() const { return data_ != nullptr; }

  // The address kernels use to read or write the buffer directly (mapped
  // memory; equal to data() under unified addressing).
  absl::StatusOr<void*> DevicePointer() const {
    void* device = nullptr;
    if (absl::Status s = CudaStatus(cudaHostGetDevicePointer(&device, data_, 0),
                                    "cudaHostGetDevicePointer");
        !s.ok()) {
      return s;
    }
    return device;
  }

 private:
  PinnedBuffer(void* data, size_t bytes) : data_(data), bytes_(bytes) {}
  void Reset() {
    if (data_ != nullptr) cudaFreeHost(data_);
    data_ = nullptr;
    bytes_ = 0;
  }
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_PINNED_BUFFER_H_
