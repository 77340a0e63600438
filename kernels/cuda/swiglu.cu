#include "kernels/cuda/swiglu.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_cuda.cuh"

namespace colo::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// One block per token.
template <typename T>
__global__ void SwiGluKernel(const T* gate_up, int64_t inter, T* out) {
  const int64_t t = blockIdx.x;
  const T* g = gate_up + t * 2 * inter;
  const T* u = g + inter;
  T* o = out + t * inter;
  for (int64_t i = threadIdx.x; i < inter; i += kThreads) {
    const float gi = ToFloat(g[i]);
    const float silu = gi / (1.0f + expf(-gi));
    o[i] = FromFloat<T>(silu * ToFloat(u[i]));
  }
}

}  // namespace

absl::Status SwiGlu(const void* gate_up, int64_t tokens, int64_t inter, void* out,
                    DType dtype, cudaStream_t stream) {
  if (tokens < 0 || tokens > 0x7fffffff || inter <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("SwiGlu: bad shape tokens=", tokens, " inter=", inter));
  }
  if (tokens == 0) return absl::OkStatus();
  return DispatchCompute(dtype, "SwiGlu", [&](auto tag) {
    using T = typename decltype(tag)::type;
    SwiGluKernel<T><<<static_cast<unsigned>(tokens), kThreads, 0, stream>>>(
        static_cast<const T*>(gate_up), inter, static_cast<T*>(out));
    return LaunchStatus("SwiGluKernel");
  });
}

}  // namespace colo::kernels::cuda
