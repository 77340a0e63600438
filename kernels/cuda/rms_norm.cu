#include "kernels/cuda/rms_norm.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_status.h"

namespace colo::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// One block per row. Row r starts at
//   (r / rows_per_group) * group_stride + (r % rows_per_group) * dim.
__global__ void RmsNormKernel(const float* x, int64_t dim, int64_t rows_per_group,
                              int64_t group_stride, const float* weight,
                              float eps, float* y) {
  __shared__ double shared[kThreads];
  const int64_t r = blockIdx.x;
  const int64_t offset =
      (r / rows_per_group) * group_stride + (r % rows_per_group) * dim;
  const float* xr = x + offset;
  float* yr = y + offset;
  double ss = 0.0;
  for (int64_t i = threadIdx.x; i < dim; i += kThreads) {
    ss += static_cast<double>(xr[i]) * xr[i];
  }
  ss = BlockReduceSum<double, kThreads>(ss, shared);
  const float inv = static_cast<float>(
      1.0 / sqrt(ss / static_cast<double>(dim) + static_cast<double>(eps)));
  // Each element is read and written by the same thread, after the
  // reduction, so y == x is safe.
  for (int64_t i = threadIdx.x; i < dim; i += kThreads) {
    yr[i] = weight[i] * (xr[i] * inv);
  }
}

}  // namespace

absl::Status RmsNorm(const float* x, int64_t rows, int64_t dim,
                     const float* weight, float eps, float* y,
                     cudaStream_t stream) {
  if (rows < 0 || dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("RmsNorm: bad shape rows=", rows, " dim=", dim));
  }
  if (rows == 0) return absl::OkStatus();
  RmsNormKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
      x, dim, 1, dim, weight, eps, y);
  return LaunchStatus("RmsNormKernel");
}

absl::Status RmsNormHeads(float* x, int64_t num_tokens, int num_heads,
                          int head_dim, int64_t token_stride,
                          const float* weight, float eps, cudaStream_t stream) {
  if (num_tokens < 0 || num_heads <= 0 || head_dim <= 0 ||
      token_stride < int64_t{num_heads} * head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RmsNormHeads: bad shape tokens=", num_tokens, " heads=", num_heads,
        " head_dim=", head_dim, " token_stride=", token_stride));
  }
  if (num_tokens == 0) return absl::OkStatus();
  RmsNormKernel<<<static_cast<unsigned>(num_tokens * num_heads), kThreads, 0,
                  stream>>>(x, head_dim, num_heads, token_stride, weight, eps, x);
  return LaunchStatus("RmsNormKernel(heads)");
}

}  // namespace colo::kernels::cuda
