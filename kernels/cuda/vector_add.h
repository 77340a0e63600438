// A trivial CUDA kernel that proves the nvcc build path end to end.
#ifndef COLO_KERNELS_CUDA_VECTOR_ADD_H_
#define COLO_KERNELS_CUDA_VECTOR_ADD_H_

#include <cstdint>
#include <string>

namespace colo::kernels::cuda {

// Returns the number of usable CUDA devices (0 when there is no driver or
// no device), and the runtime's reason in `why` when there are none.
int UsableDeviceCount(std::string* why);

// out[i] = a[i] + b[i] on device 0 for host arrays of n floats. Returns an
// empty string on success, else the CUDA error.
std::string VectorAdd(const float* a, const float* b, float* out, int64_t n);

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_VECTOR_ADD_H_
