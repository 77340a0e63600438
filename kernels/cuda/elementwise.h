// Small device helpers the forward pass needs between the main kernels.
//
// AddInPlace:  dst[i] += src[i] for i < n (the residual add).
// AddBias:     y[r][c] += bias[c] for a [rows][cols] matrix.
// GatherRows:  dst[i] = src[rows[i]] for [*][dim] matrices (e.g. the last
//              token of each request before the final norm and logits).
// All pointers are device pointers; work is queued on `stream`.
// Preconditions (callers validate): every rows[i] indexes a row of src.
// Errors: INVALID_ARGUMENT for bad shapes; the launch error otherwise.
#ifndef COLO_KERNELS_CUDA_ELEMENTWISE_H_
#define COLO_KERNELS_CUDA_ELEMENTWISE_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"

namespace colo::kernels::cuda {

absl::Status AddInPlace(float* dst, const float* src, int64_t n,
                        cudaStream_t stream);

absl::Status AddBias(float* y, int64_t rows, int64_t cols, const float* bias,
                     cudaStream_t stream);

absl::Status GatherRows(const float* src, const int32_t* rows,
                        int64_t num_rows, int64_t dim, float* dst,
                        cudaStream_t stream);

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_ELEMENTWISE_H_
