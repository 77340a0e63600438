// Rotary position embedding on the device (CUDA counterpart of
// kernels/cpu/rope.h, Hugging Face "rotate_half" layout).
//
// RopeCosSin: float cos_out/sin_out [num_positions][half] for positions[t];
//   the angle is formed in float32 as float(position) * inv_freq[i]
//   (inv_freq is the float32 rounding of RopeInverseFrequencies), cos/sin
//   are computed in double and rounded to float, exactly as the CPU kernel
//   does.
// ApplyRope: rotates x (a compute dtype) in place in float math; token t's
//   heads are x[t * token_stride + h * head_dim + i]; token t uses row t of
//   the tables.
// All pointers are device pointers; work is queued on `stream`.
// Errors: INVALID_ARGUMENT for bad shapes or dtypes (head_dim must be even);
// the launch error otherwise.
#ifndef COLO_KERNELS_CUDA_ROPE_H_
#define COLO_KERNELS_CUDA_ROPE_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/dtype.h"

namespace colo::kernels::cuda {

absl::Status RopeCosSin(const float* inv_freq, int half, const int32_t* positions,
                        int64_t num_positions, float* cos_out, float* sin_out,
                        cudaStream_t stream);

absl::Status ApplyRope(void* x, DType dtype, int64_t num_tokens, int num_heads, int head_dim,
                       int64_t token_stride, const float* cos_table, const float* sin_table,
                       cudaStream_t stream);

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_ROPE_H_
