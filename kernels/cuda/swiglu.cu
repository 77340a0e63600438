#include "kernels/cuda/swiglu.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"

namespace colo::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// One block per token.
__global__ void SwiGluKernel(const float* gate_up, int64_t inter, float* out) {
  const int64_t t = blockIdx.x;
  const float* g = gate_up + t * 2 * inter;
  const float* u = g + inter;
  float* o = out + t * inter;
  for (int64_t i = threadIdx.x; i < inter; i += kThreads) {
    const float silu = g[i] / (1.0f + expf(-g[i]));
    o[i] = silu * u[i];
  }
}

}  // namespace

absl::Status SwiGlu(const float* gate_up, int64_t tokens, int64_t inter,
                    float* out, cudaStream_t stream) {
  if (tokens < 0 || inter <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("SwiGlu: bad shape tokens=", tokens, " inter=", inter));
  }
  if (tokens == 0) return absl::OkStatus();
  SwiGluKernel<<<static_cast<unsigned>(tokens), kThreads, 0, stream>>>(
      gate_up, inter, out);
  return LaunchStatus("SwiGluKernel");
}

}  // namespace colo::kernels::cuda
