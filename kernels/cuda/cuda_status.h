// CUDA runtime error -> absl::Status, and the "is there a usable GPU" probe
// that GPU tests and benchmarks use to skip.
//
// Every kernel launcher in //kernels/cuda returns CudaStatus(err, "Kernel")
// so a failure names the kernel (or call) and the CUDA error:
//   "RmsNormKernel: cudaErrorInvalidValue (invalid argument)".
// Codes: cudaErrorMemoryAllocation -> RESOURCE_EXHAUSTED; no device / no
// driver / driver too old -> UNAVAILABLE; invalid value/config -> INVALID_ARGUMENT;
// anything else -> INTERNAL. Thread-safe.
#ifndef COLO_KERNELS_CUDA_CUDA_STATUS_H_
#define COLO_KERNELS_CUDA_CUDA_STATUS_H_

#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace colo::kernels::cuda {

// OK for cudaSuccess, else a Status naming `what` and the error.
absl::Status CudaStatus(cudaError_t err, absl::string_view what);

// The status of the last kernel launch on this thread (cudaGetLastError),
// naming `kernel`. Call right after a <<<...>>> launch.
absl::Status LaunchStatus(absl::string_view kernel);

// OK when device `device` exists and the runtime can use it; else
// UNAVAILABLE with the runtime's reason (no driver, no device, ...).
absl::Status CudaDeviceAvailable(int device = 0);

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_CUDA_STATUS_H_
