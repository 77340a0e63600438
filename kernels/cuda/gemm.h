// GEMM glue over cuBLAS: the CUDA counterpart of kernels/cpu/linear.h.
//
//   y[m][n] = sum_k x[m][k] * w[n][k] (+ bias[n])
//
// x: [m][k] row-major, w: [n][k] row-major (the nn.Linear layout), bias: [n]
// or nullptr, y: [m][n]; device pointers that must not alias. Computed with
// cublasGemmEx in full fp32 (CUBLAS_COMPUTE_32F: no TF32), so results match
// the CPU kernel within float rounding (the summation order differs).
//
// CublasHandle owns one cublasHandle_t (move-only). Linear() binds the
// handle to `stream` when it differs from the last one (cublasSetStream, which
// resets cuBLAS's workspace, so the workspace given to SetWorkspace is set
// again right after). For CUDA-graph capture set a workspace first
// (SetWorkspace, e.g. a buffer of the cuda_graph tag) so cuBLAS does not
// allocate during capture.
//
// Not thread-safe: one handle per thread (or external locking).
// Errors: INVALID_ARGUMENT for bad shapes; cuBLAS failures are INTERNAL
// (RESOURCE_EXHAUSTED for CUBLAS_STATUS_ALLOC_FAILED, UNAVAILABLE for
// CUBLAS_STATUS_NOT_INITIALIZED) naming the call, the cuBLAS status and the
// shape.
#ifndef COLO_KERNELS_CUDA_GEMM_H_
#define COLO_KERNELS_CUDA_GEMM_H_

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace colo::kernels::cuda {

class CublasHandle {
 public:
  // Creates a handle on the current device. UNAVAILABLE without a GPU.
  static absl::StatusOr<CublasHandle> Create();

  CublasHandle() = default;
  ~CublasHandle();
  CublasHandle(CublasHandle&& other) noexcept;
  CublasHandle& operator=(CublasHandle&& other) noexcept;
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;

  bool valid() const { return handle_ != nullptr; }
  cublasHandle_t get() const { return handle_; }

  // Uses `workspace` (device memory, `bytes` long, not owned; must outlive
  // the handle's use) instead of cuBLAS's own.
  absl::Status SetWorkspace(void* workspace, size_t bytes);

  absl::Status Linear(const float* x, int64_t m, int64_t k, const float* w,
                      int64_t n, const float* bias, float* y,
                      cudaStream_t stream);

 private:
  explicit CublasHandle(cublasHandle_t handle) : handle_(handle) {}
  // Binds `stream` (and re-applies the workspace) if it is not bound yet.
  absl::Status BindStream(cudaStream_t stream);

  cublasHandle_t handle_ = nullptr;
  cudaStream_t stream_ = nullptr;  // bound stream (nullptr = legacy default)
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
};

// cuBLAS status -> absl::Status naming `what`.
absl::Status CublasStatus(cublasStatus_t status, const char* what);

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_GEMM_H_
