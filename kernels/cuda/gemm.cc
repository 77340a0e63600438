#include "kernels/cuda/gemm.h"

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/elementwise.h"

namespace colo::kernels::cuda {

absl::Status CublasStatus(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const std::string message = absl::StrCat(what, ": ", cublasGetStatusName(status),
                                           " (", cublasGetStatusString(status), ")");
  switch (status) {
    case CUBLAS_STATUS_ALLOC_FAILED:
      return absl::ResourceExhaustedError(message);
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return absl::UnavailableError(message);
    case CUBLAS_STATUS_INVALID_VALUE:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::StatusOr<CublasHandle> CublasHandle::Create() {
  if (absl::Status s = CudaDeviceAvailable(); !s.ok()) return s;
  cublasHandle_t handle = nullptr;
  if (absl::Status s = CublasStatus(cublasCreate(&handle), "cublasCreate");
      !s.ok()) {
    return s;
  }
  // Full fp32 math: no TF32 tensor-op shortcuts.
  if (absl::Status s = CublasStatus(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH),
                                    "cublasSetMathMode");
      !s.ok()) {
    cublasDestroy(handle);
    return s;
  }
  return CublasHandle(handle);
}

CublasHandle::~CublasHandle() {
  if (handle_ != nullptr) cublasDestroy(handle_);
}

CublasHandle::CublasHandle(CublasHandle&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)),
      stream_(std::exchange(other.stream_, nullptr)),
      workspace_(std::exchange(other.workspace_, nullptr)),
      workspace_bytes_(std::exchange(other.workspace_bytes_, 0)) {}

CublasHandle& CublasHandle::operator=(CublasHandle&& other) noexcept {
  if (this != &other) {
    if (handle_ != nullptr) cublasDestroy(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
    stream_ = std::exchange(other.stream_, nullptr);
    workspace_ = std::exchange(other.workspace_, nullptr);
    workspace_bytes_ = std::exchange(other.workspace_bytes_, 0);
  }
  return *this;
}

absl::Status CublasHandle::SetWorkspace(void* workspace, size_t bytes) {
  if (handle_ == nullptr) {
    return absl::FailedPreconditionError("CublasHandle::SetWorkspace on an empty handle");
  }
  if (absl::Status s = CublasStatus(cublasSetWorkspace(handle_, workspace, bytes),
                                    "cublasSetWorkspace");
      !s.ok()) {
    return s;
  }
  workspace_ = workspace;
  workspace_bytes_ = bytes;
  return absl::OkStatus();
}

absl::Status CublasHandle::BindStream(cudaStream_t stream) {
  if (stream == stream_) return absl::OkStatus();
  if (absl::Status s = CublasStatus(cublasSetStream(handle_, stream), "cublasSetStream");
      !s.ok()) {
    return s;
  }
  // cublasSetStream resets the workspace to cuBLAS's default pool.
  if (workspace_ != nullptr) {
    if (absl::Status s = CublasStatus(
            cublasSetWorkspace(handle_, workspace_, workspace_bytes_),
            "cublasSetWorkspace (after cublasSetStream)");
        !s.ok()) {
      return s;  // stream_ unchanged: the next call binds again
    }
  }
  stream_ = stream;
  return absl::OkStatus();
}

absl::Status CublasHandle::Linear(const float* x, int64_t m, int64_t k,
                                  const float* w, int64_t n, const float* bias,
                                  float* y, cudaStream_t stream) {
  constexpr int64_t kMaxInt = std::numeric_limits<int>::max();
  if (handle_ == nullptr) {
    return absl::FailedPreconditionError("CublasHandle::Linear on an empty handle");
  }
  if (m < 0 || k <= 0 || n <= 0 || m > kMaxInt || k > kMaxInt || n > kMaxInt) {
    return absl::InvalidArgumentError(
        absl::StrCat("Linear: bad shape m=", m, " k=", k, " n=", n));
  }
  if (m == 0) return absl::OkStatus();
  if (absl::Status s = BindStream(stream); !s.ok()) return s;
  // Row-major y[m][n] is column-major y^T (n x m) = w x^T, where row-major
  // w[n][k] is column-major (k x n) and row-major x[m][k] is column-major
  // (k x m): y^T = op_T(w_cm) * x_cm.
  const float alpha = 1.0f, beta = 0.0f;
  const cublasStatus_t status = cublasGemmEx(
      handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
      static_cast<int>(k), &alpha, w, CUDA_R_32F, static_cast<int>(k), x,
      CUDA_R_32F, static_cast<int>(k), &beta, y, CUDA_R_32F, static_cast<int>(n),
      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (status != CUBLAS_STATUS_SUCCESS) {
    return CublasStatus(status, absl::StrCat("cublasGemmEx(m=", m, ", k=", k,
                                             ", n=", n, ")")
                                    .c_str());
  }
  if (bias != nullptr) return AddBias(y, m, n, bias, stream);
  return absl::OkStatus();
}

}  // namespace colo::kernels::cuda
