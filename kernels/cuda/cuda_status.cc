#include "kernels/cuda/cuda_status.h"

#include "absl/strings/str_cat.h"

namespace colo::kernels::cuda {

absl::Status CudaStatus(cudaError_t err, absl::string_view what) {
  if (err == cudaSuccess) return absl::OkStatus();
  const std::string message = absl::StrCat(what, ": ", cudaGetErrorName(err),
                                           " (", cudaGetErrorString(err), ")");
  switch (err) {
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(message);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInitializationError:
    case cudaErrorInvalidDevice:
      return absl::UnavailableError(message);
    case cudaErrorInvalidValue:
    case cudaErrorInvalidConfiguration:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status LaunchStatus(absl::string_view kernel) {
  return CudaStatus(cudaGetLastError(), kernel);
}

absl::Status CudaDeviceAvailable(int device) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    // Clear the sticky "last error" so later checks are not confused by it.
    cudaGetLastError();
    return absl::UnavailableError(absl::StrCat(
        "cudaGetDeviceCount: ", cudaGetErrorName(err), " (",
        cudaGetErrorString(err), ")"));
  }
  if (device < 0 || device >= count) {
    return absl::UnavailableError(absl::StrCat(
        "CUDA device ", device, " not present (", count, " device(s))"));
  }
  return absl::OkStatus();
}

}  // namespace colo::kernels::cuda
