#include "kernels/cuda/rms_norm.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_cuda.cuh"

namespace colo::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// One block per row. Row r starts at
//   (r / rows_per_group) * group_stride + (r % rows_per_group) * dim.
template <typename T>
__global__ void RmsNormKernel(const T* x, int64_t dim, int64_t rows_per_group,
                              int64_t group_stride, const T* weight, float eps, T* y) {
  __shared__ double shared[kThreads];
  const int64_t r = blockIdx.x;
  const int64_t offset = (r / rows_per_group) * group_stride + (r % rows_per_group) * dim;
  const T* xr = x + offset;
  T* yr = y + offset;
  double ss = 0.0;
  for (int64_t i = threadIdx.x; i < dim; i += kThreads) {
    const double v = ToFloat(xr[i]);
    ss += v * v;
  }
  ss = BlockReduceSum<double, kThreads>(ss, shared);
  const float inv =
      static_cast<float>(1.0 / sqrt(ss / static_cast<double>(dim) + static_cast<double>(eps)));
  // Each element is read and written by the same thread, after the
  // reduction, so y == x is safe.
  for (int64_t i = threadIdx.x; i < dim; i += kThreads) {
    yr[i] = FromFloat<T>(ToFloat(weight[i]) * (ToFloat(xr[i]) * inv));
  }
}

}  // namespace

absl::Status RmsNorm(const void* x, int64_t rows, int64_t dim, const void* weight, float eps,
                     void* y, DType dtype, cudaStream_t stream) {
  if (rows < 0 || rows > 0x7fffffff || dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("RmsNorm: bad shape rows=", rows, " dim=", dim));
  }
  if (rows == 0) return absl::OkStatus();
  return DispatchCompute(dtype, "RmsNorm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    RmsNormKernel<T><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
        static_cast<const T*>(x), dim, 1, dim, static_cast<const T*>(weight), eps,
        static_cast<T*>(y));
    return LaunchStatus("RmsNormKernel");
  });
}

absl::Status RmsNormHeads(void* x, int64_t num_tokens, int num_heads, int head_dim,
                          int64_t token_stride, const void* weight, float eps, DType dtype,
                          cudaStream_t stream) {
  if (num_tokens < 0 || num_heads <= 0 || head_dim <= 0 ||
      token_stride < int64_t{num_heads} * head_dim ||
      num_tokens * num_heads > 0x7fffffff) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RmsNormHeads: bad shape tokens=", num_tokens, " heads=", num_heads,
        " head_dim=", head_dim, " token_stride=", token_stride));
  }
  if (num_tokens == 0) return absl::OkStatus();
  return DispatchCompute(dtype, "RmsNormHeads", [&](auto tag) {
    using T = typename decltype(tag)::type;
    RmsNormKernel<T><<<static_cast<unsigned>(num_tokens * num_heads), kThreads, 0, stream>>>(
        static_cast<const T*>(x), head_dim, num_heads, token_stride,
        static_cast<const T*>(weight), eps, static_cast<T*>(x));
    return LaunchStatus("RmsNormKernel(heads)");
  });
}

}  // namespace colo::kernels::cuda
