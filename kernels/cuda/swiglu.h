// SwiGLU on the device (CUDA counterpart of kernels/cpu/swiglu.h):
//   out[t][i] = silu(gate_up[t][i]) * gate_up[t][inter + i],
//   silu(g) = g / (1 + exp(-g)), in float, rounded to the dtype.
// gate_up: [tokens][2 * inter]; out: [tokens][inter], one compute dtype.
// Device pointers; work is queued on `stream`. Errors: INVALID_ARGUMENT for
// bad shapes or dtypes; the launch error otherwise.
#ifndef COLO_KERNELS_CUDA_SWIGLU_H_
#define COLO_KERNELS_CUDA_SWIGLU_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/dtype.h"

namespace colo::kernels::cuda {

absl::Status SwiGlu(const void* gate_up, int64_t tokens, int64_t inter, void* out,
                    DType dtype, cudaStream_t stream);

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_SWIGLU_H_
