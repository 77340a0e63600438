#include "kernels/cuda/elementwise.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_cuda.cuh"

namespace colo::kernels::cuda {
namespace {

constexpr int kThreads = 256;
// Grid-stride loops over at most this many blocks.
constexpr int64_t kMaxBlocks = 4096;

unsigned BlocksFor(int64_t n) {
  return static_cast<unsigned>(
      std::min<int64_t>(kMaxBlocks, (n + kThreads - 1) / kThreads));
}

template <typename T>
__global__ void AddInPlaceKernel(T* dst, const T* src, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    dst[i] = FromFloat<T>(ToFloat(dst[i]) + ToFloat(src[i]));
  }
}

template <typename T>
__global__ void AddBiasKernel(T* y, int64_t n, int64_t cols, const T* bias) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    y[i] = FromFloat<T>(ToFloat(y[i]) + ToFloat(bias[i % cols]));
  }
}

// One block per gathered row.
template <typename T>
__global__ void GatherRowsKernel(const T* src, const int32_t* rows, int64_t dim, T* dst) {
  const int64_t r = blockIdx.x;
  const T* s = src + static_cast<int64_t>(rows[r]) * dim;
  T* d = dst + r * dim;
  for (int64_t i = threadIdx.x; i < dim; i += kThreads) d[i] = s[i];
}

template <typename S, typename D>
__global__ void ConvertKernel(const S* src, D* dst, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    dst[i] = FromFloat<D>(ToFloat(src[i]));
  }
}

}  // namespace

absl::Status AddInPlace(void* dst, const void* src, int64_t n, DType dtype,
                        cudaStream_t stream) {
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat("AddInPlace: n=", n));
  if (n == 0) return absl::OkStatus();
  return DispatchCompute(dtype, "AddInPlace", [&](auto tag) {
    using T = typename decltype(tag)::type;
    AddInPlaceKernel<T><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<T*>(dst),
                                                              static_cast<const T*>(src), n);
    return LaunchStatus("AddInPlaceKernel");
  });
}

absl::Status AddBias(void* y, int64_t rows, int64_t cols, const void* bias, DType dtype,
                     cudaStream_t stream) {
  if (rows < 0 || cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("AddBias: bad shape rows=", rows, " cols=", cols));
  }
  if (rows == 0) return absl::OkStatus();
  const int64_t n = rows * cols;
  return DispatchCompute(dtype, "AddBias", [&](auto tag) {
    using T = typename decltype(tag)::type;
    AddBiasKernel<T><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<T*>(y), n, cols,
                                                           static_cast<const T*>(bias));
    return LaunchStatus("AddBiasKernel");
  });
}

absl::Status GatherRows(const void* src, const int32_t* rows, int64_t num_rows, int64_t dim,
                        void* dst, DType dtype, cudaStream_t stream) {
  if (num_rows < 0 || num_rows > 0x7fffffff || dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GatherRows: bad shape rows=", num_rows, " dim=", dim));
  }
  if (num_rows == 0) return absl::OkStatus();
  return DispatchCompute(dtype, "GatherRows", [&](auto tag) {
    using T = typename decltype(tag)::type;
    GatherRowsKernel<T><<<static_cast<unsigned>(num_rows), kThreads, 0, stream>>>(
        static_cast<const T*>(src), rows, dim, static_cast<T*>(dst));
    return LaunchStatus("GatherRowsKernel");
  });
}

absl::Status ConvertElements(const void* src, DType src_dtype, void* dst, DType dst_dtype,
                             int64_t n, cudaStream_t stream) {
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat("ConvertElements: n=", n));
  if (n == 0) return absl::OkStatus();
  return DispatchAny(src_dtype, "ConvertElements (source)", [&](auto stag) {
    using S = typename decltype(stag)::type;
    return DispatchAny(dst_dtype, "ConvertElements (destination)", [&](auto dtag) {
      using D = typename decltype(dtag)::type;
      ConvertKernel<S, D><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<const S*>(src),
                                                                static_cast<D*>(dst), n);
      return LaunchStatus("ConvertKernel");
    });
  });
}

}  // namespace colo::kernels::cuda
