// Small device kernels the forward pass needs between the main ones, for
// any compute dtype (float32, float16, bfloat16; math in float32, results
// rounded to the dtype).
//
// AddInPlace:      dst[i] += src[i] for i < n (the residual add).
// AddBias:         y[r][c] += bias[c] for a [rows][cols] matrix.
// GatherRows:      dst[i] = src[rows[i]] for [*][dim] matrices (e.g. the
//                  last token of each request before the final norm).
// ConvertElements: dst[i] = src[i] converted between any two dtypes (fp8
//                  included; see dtype_cuda.cuh for the rounding). src may
//                  be mapped pinned host memory (weight uploads read it over
//                  the bus).
// Pointers are device pointers of the given dtype; work is queued on
// `stream`. Preconditions (callers validate): every rows[i] indexes a row
// of src. Errors: INVALID_ARGUMENT for bad shapes or dtypes; the launch
// error otherwise.
#ifndef COLO_KERNELS_CUDA_ELEMENTWISE_H_
#define COLO_KERNELS_CUDA_ELEMENTWISE_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/dtype.h"

namespace colo::kernels::cuda {

absl::Status AddInPlace(void* dst, const void* src, int64_t n, DType dtype,
                        cudaStream_t stream);

absl::Status AddBias(void* y, int64_t rows, int64_t cols, const void* bias, DType dtype,
                     cudaStream_t stream);

absl::Status GatherRows(const void* src, const int32_t* rows, int64_t num_rows, int64_t dim,
                        void* dst, DType dtype, cudaStream_t stream);

absl::Status ConvertElements(const void* src, DType src_dtype, void* dst, DType dst_dtype,
                             int64_t n, cudaStream_t stream);

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_ELEMENTWISE_H_
