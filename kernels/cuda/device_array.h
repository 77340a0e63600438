// DeviceArray<T>: a move-only cudaMalloc'ed array with host copy helpers, for
// kernel tests and benchmarks. The engine itself never uses it: its device
// memory comes from the TaggedPool (weights, kv_cache, cuda_graph) and the
// CachingAllocator (transients).
//
// Copies are ordered on the caller's stream: the bytes go through a pinned
// staging buffer with cudaMemcpyAsync on `stream` (never the legacy default
// stream, never from pageable memory), and the call synchronizes `stream`
// before returning, so the host vector may go away and the data is in place
// for any later work on any stream.
#ifndef COLO_KERNELS_CUDA_DEVICE_ARRAY_H_
#define COLO_KERNELS_CUDA_DEVICE_ARRAY_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/pinned_buffer.h"

namespace colo::kernels::cuda {

// Copies `bytes` from host memory to device memory `dst` (any device
// allocation, e.g. from a TaggedPool) through pinned staging, ordered on
// `stream`, and synchronizes `stream`.
inline absl::Status StreamCopyToDevice(void* dst, const void* src, size_t bytes,
                                       cudaStream_t stream) {
  absl::StatusOr<PinnedBuffer> staging = PinnedBuffer::Create(bytes);
  if (!staging.ok()) return staging.status();
  if (bytes > 0) std::memcpy(staging->data(), src, bytes);
  if (absl::Status s = CudaStatus(
          cudaMemcpyAsync(dst, staging->data(), bytes, cudaMemcpyHostToDevice, stream),
          "StreamCopyToDevice: cudaMemcpyAsync");
      !s.ok()) {
    return s;
  }
  return CudaStatus(cudaStreamSynchronize(stream), "StreamCopyToDevice: cudaStreamSynchronize");
}

// The reverse: device `src` to host `dst`, ordered on `stream` (synchronous).
inline absl::Status StreamCopyToHost(void* dst, const void* src, size_t bytes,
                                     cudaStream_t stream) {
  absl::StatusOr<PinnedBuffer> staging = PinnedBuffer::Create(bytes);
  if (!staging.ok()) return staging.status();
  if (absl::Status s = CudaStatus(
          cudaMemcpyAsync(staging->data(), src, bytes, cudaMemcpyDeviceToHost, stream),
          "StreamCopyToHost: cudaMemcpyAsync");
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CudaStatus(cudaStreamSynchronize(stream), "StreamCopyToHost: cudaStreamSynchronize");
      !s.ok()) {
    return s;
  }
  if (bytes > 0) std::memcpy(dst, staging->data(), bytes);
  return absl::OkStatus();
}

template <typename T>
class DeviceArray {
 public:
  // n elements (at least one byte is allocated), content undefined.
  static absl::StatusOr<DeviceArray> Create(size_t n) {
    void* p = nullptr;
    if (absl::Status s =
            CudaStatus(cudaMalloc(&p, n == 0 ? 1 : n * sizeof(T)), "DeviceArray: cudaMalloc");
        !s.ok()) {
      return s;
    }
    return DeviceArray(static_cast<T*>(p), n);
  }
  static absl::StatusOr<DeviceArray> FromHost(const std::vector<T>& host, cudaStream_t stream) {
    absl::StatusOr<DeviceArray> a = Create(host.size());
    if (!a.ok()) return a.status();
    if (absl::Status s = a->CopyFromHost(host, stream); !s.ok()) return s;
    return a;
  }

  DeviceArray() = default;
  ~DeviceArray() {
    if (data_ != nullptr) cudaFree(data_);
  }
  DeviceArray(DeviceArray&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) {
      if (data_ != nullptr) cudaFree(data_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* data() const { return data_; }
  size_t size() const { return size_; }

  absl::Status CopyFromHost(const std::vector<T>& host, cudaStream_t stream) {
    if (host.size() != size_) {
      return absl::InvalidArgumentError("DeviceArray: host size mismatch");
    }
    return StreamCopyToDevice(data_, host.data(), size_ * sizeof(T), stream);
  }
  absl::StatusOr<std::vector<T>> ToHost(cudaStream_t stream) const {
    std::vector<T> host(size_);
    if (absl::Status s = StreamCopyToHost(host.data(), data_, size_ * sizeof(T), stream);
        !s.ok()) {
      return s;
    }
    return host;
  }

 private:
  DeviceArray(T* data, size_t size) : data_(data), size_(size) {}
  T* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_DEVICE_ARRAY_H_
