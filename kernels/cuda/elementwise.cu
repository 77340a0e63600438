#include "kernels/cuda/elementwise.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"

namespace colo::kernels::cuda {
namespace {

constexpr int kThreads = 256;
// Grid-stride loops over at most this many blocks.
constexpr int64_t kMaxBlocks = 4096;

unsigned BlocksFor(int64_t n) {
  return static_cast<unsigned>(
      std::min<int64_t>(kMaxBlocks, (n + kThreads - 1) / kThreads));
}

__global__ void AddInPlaceKernel(float* dst, const float* src, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
       i < n; i += static_cast<int64_t>(gridDim.x) * kThreads) {
    dst[i] += src[i];
  }
}

__global__ void AddBiasKernel(float* y, int64_t n, int64_t cols,
                              const float* bias) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
       i < n; i += static_cast<int64_t>(gridDim.x) * kThreads) {
    y[i] += bias[i % cols];
  }
}

// One block per gathered row.
__global__ void GatherRowsKernel(const float* src, const int32_t* rows,
                                 int64_t dim, float* dst) {
  const int64_t r = blockIdx.x;
  const float* s = src + static_cast<int64_t>(rows[r]) * dim;
  float* d = dst + r * dim;
  for (int64_t i = threadIdx.x; i < dim; i += kThreads) d[i] = s[i];
}

}  // namespace

absl::Status AddInPlace(float* dst, const float* src, int64_t n,
                        cudaStream_t stream) {
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat("AddInPlace: n=", n));
  if (n == 0) return absl::OkStatus();
  AddInPlaceKernel<<<BlocksFor(n), kThreads, 0, stream>>>(dst, src, n);
  return LaunchStatus("AddInPlaceKernel");
}

absl::Status AddBias(float* y, int64_t rows, int64_t cols, const float* bias,
                     cudaStream_t stream) {
  if (rows < 0 || cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("AddBias: bad shape rows=", rows, " cols=", cols));
  }
  if (rows == 0) return absl::OkStatus();
  const int64_t n = rows * cols;
  AddBiasKernel<<<BlocksFor(n), kThreads, 0, stream>>>(y, n, cols, bias);
  return LaunchStatus("AddBiasKernel");
}

absl::Status GatherRows(const float* src, const int32_t* rows,
                        int64_t num_rows, int64_t dim, float* dst,
                        cudaStream_t stream) {
  if (num_rows < 0 || dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GatherRows: bad shape rows=", num_rows, " dim=", dim));
  }
  if (num_rows == 0) return absl::OkStatus();
  GatherRowsKernel<<<static_cast<unsigned>(num_rows), kThreads, 0, stream>>>(
      src, rows, dim, dst);
  return LaunchStatus("GatherRowsKernel");
}

}  // namespace colo::kernels::cuda
