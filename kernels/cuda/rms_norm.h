// RMSNorm on the device (CUDA counterpart of kernels/cpu/rms_norm.h):
//   y = x / sqrt(mean(x^2) + eps) * weight,
// x, weight and y of one compute dtype; the mean of squares is accumulated in
// double and the scaling done in float, then rounded to the dtype.
//
// RmsNorm: x, y are [rows][dim] (y == x allowed); weight is [dim].
// RmsNormHeads: in-place per-head norm for q/k norm. Token t's heads are
//   x[t * token_stride + h * head_dim + i] for h < num_heads, i < head_dim
//   (e.g. the q or k part of a fused qkv row); weight is [head_dim].
// All pointers are device pointers; work is queued on `stream`.
// Errors: INVALID_ARGUMENT for bad shapes or dtypes; the launch error otherwise.
#ifndef COLO_KERNELS_CUDA_RMS_NORM_H_
#define COLO_KERNELS_CUDA_RMS_NORM_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/dtype.h"

namespace colo::kernels::cuda {

absl::Status RmsNorm(const void* x, int64_t rows, int64_t dim, const void* weight, float eps,
                     void* y, DType dtype, cudaStream_t stream);

absl::Status RmsNormHeads(void* x, int64_t num_tokens, int num_heads, int head_dim,
                          int64_t token_stride, const void* weight, float eps, DType dtype,
                          cudaStream_t stream);

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_RMS_NORM_H_
