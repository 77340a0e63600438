#include "kernels/cuda/rope.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_cuda.cuh"

namespace colo::kernels::cuda {
namespace {

constexpr int kThreads = 128;

// One block per position.
__global__ void RopeCosSinKernel(const float* inv_freq, int half, const int32_t* positions,
                                 float* cos_out, float* sin_out) {
  const int64_t t = blockIdx.x;
  const float p = static_cast<float>(positions[t]);
  for (int i = threadIdx.x; i < half; i += kThreads) {
    const float angle = p * inv_freq[i];
    cos_out[t * half + i] = static_cast<float>(cos(static_cast<double>(angle)));
    sin_out[t * half + i] = static_cast<float>(sin(static_cast<double>(angle)));
  }
}

// One block per (token, head); thread i rotates the pair (i, i + half).
template <typename T>
__global__ void ApplyRopeKernel(T* x, int head_dim, int64_t token_stride,
                                const float* cos_table, const float* sin_table) {
  const int64_t t = blockIdx.x;
  const int h = blockIdx.y;
  const int half = head_dim / 2;
  T* v = x + t * token_stride + static_cast<int64_t>(h) * head_dim;
  const float* c = cos_table + t * half;
  const float* s = sin_table + t * half;
  for (int i = threadIdx.x; i < half; i += kThreads) {
    const float a = ToFloat(v[i]);
    const float b = ToFloat(v[i + half]);
    // Explicit roundings: no FMA contraction, so float32 results are the CPU's.
    v[i] = FromFloat<T>(__fsub_rn(__fmul_rn(a, c[i]), __fmul_rn(b, s[i])));
    v[i + half] = FromFloat<T>(__fadd_rn(__fmul_rn(b, c[i]), __fmul_rn(a, s[i])));
  }
}

}  // namespace

absl::Status RopeCosSin(const float* inv_freq, int half, const int32_t* positions,
                        int64_t num_positions, float* cos_out, float* sin_out,
                        cudaStream_t stream) {
  if (half <= 0 || num_positions < 0 || num_positions > 0x7fffffff) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RopeCosSin: bad shape half=", half, " positions=", num_positions));
  }
  if (num_positions == 0) return absl::OkStatus();
  RopeCosSinKernel<<<static_cast<unsigned>(num_positions), kThreads, 0, stream>>>(
      inv_freq, half, positions, cos_out, sin_out);
  return LaunchStatus("RopeCosSinKernel");
}

absl::Status ApplyRope(void* x, DType dtype, int64_t num_tokens, int num_heads, int head_dim,
                       int64_t token_stride, const float* cos_table, const float* sin_table,
                       cudaStream_t stream) {
  if (num_tokens < 0 || num_tokens > 0x7fffffff || num_heads <= 0 || num_heads > 65535 ||
      head_dim <= 0 || head_dim % 2 != 0 || token_stride < int64_t{num_heads} * head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ApplyRope: bad shape tokens=", num_tokens, " heads=", num_heads,
        " head_dim=", head_dim, " (must be even) token_stride=", token_stride));
  }
  if (num_tokens == 0) return absl::OkStatus();
  const dim3 grid(static_cast<unsigned>(num_tokens), static_cast<unsigned>(num_heads));
  return DispatchCompute(dtype, "ApplyRope", [&](auto tag) {
    using T = typename decltype(tag)::type;
    ApplyRopeKernel<T><<<grid, kThreads, 0, stream>>>(static_cast<T*>(x), head_dim,
                                                     token_stride, cos_table, sin_table);
    return LaunchStatus("ApplyRopeKernel");
  });
}

}  // namespace colo::kernels::cuda
