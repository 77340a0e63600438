// DeviceArray<T>: a move-only cudaMalloc'ed array with host copy helpers, for
// kernel tests and benchmarks. The engine itself never uses it: its device
// memory comes from the TaggedPool (weights, kv_cache, cuda_graph) and the
// CachingAllocator (transients).
#ifndef COLO_KERNELS_CUDA_DEVICE_ARRAY_H_
#define COLO_KERNELS_CUDA_DEVICE_ARRAY_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_status.h"

namespace colo::kernels::cuda {

template <typename T>
class DeviceArray {
 public:
  // n elements (at least one byte is allocated), content undefined.
  static absl::StatusOr<DeviceArray> Create(size_t n) {
    void* p = nullptr;
    if (absl::Status s = CudaStatus(cudaMalloc(&p, n == 0 ? 1 : n * sizeof(T)),
                                    "DeviceArray: cudaMalloc");
        !s.ok()) {
      return s;
    }
    return DeviceArray(static_cast<T*>(p), n);
  }
  static absl::StatusOr<DeviceArray> FromHost(const std::vector<T>& host) {
    absl::StatusOr<DeviceArray> a = Create(host.size());
    if (!a.ok()) return a.status();
    if (absl::Status s = a->CopyFromHost(host); !s.ok()) return s;
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

  // Synchronous copies (cudaMemcpy: ordered after all prior device work).
  absl::Status CopyFromHost(const std::vector<T>& host) {
    if (host.size() != size_) {
      return absl::InvalidArgumentError("DeviceArray: host size mismatch");
    }
    return CudaStatus(cudaMemcpy(data_, host.data(), size_ * sizeof(T),
                                 cudaMemcpyHostToDevice),
                      "DeviceArray: cudaMemcpy H2D");
  }
  absl::StatusOr<std::vector<T>> ToHost() const {
    std::vector<T> host(size_);
    if (absl::Status s = CudaStatus(cudaMemcpy(host.data(), data_, size_ * sizeof(T),
                                               cudaMemcpyDeviceToHost),
                                    "DeviceArray: cudaMemcpy D2H");
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
