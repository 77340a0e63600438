#include "kernels/cuda/embedding.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_cuda.cuh"

namespace colo::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// One block per token.
template <typename T>
__global__ void EmbeddingKernel(const T* table, int64_t vocab, int64_t dim,
                                const int32_t* tokens, T* out) {
  const int64_t t = blockIdx.x;
  const int32_t token = tokens[t];
  T* dst = out + t * dim;
  const bool valid = token >= 0 && token < vocab;
  const T* src = table + (valid ? static_cast<int64_t>(token) : 0) * dim;
  for (int64_t i = threadIdx.x; i < dim; i += kThreads) {
    dst[i] = valid ? src[i] : FromFloat<T>(0.0f);
  }
}

}  // namespace

absl::Status EmbeddingLookup(const void* table, DType dtype, int64_t vocab, int64_t dim,
                             const int32_t* tokens, int64_t num_tokens, void* out,
                             cudaStream_t stream) {
  if (vocab <= 0 || dim <= 0 || num_tokens < 0 || num_tokens > 0x7fffffff) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EmbeddingLookup: bad shape vocab=", vocab, " dim=", dim, " num_tokens=", num_tokens));
  }
  if (num_tokens == 0) return absl::OkStatus();
  return DispatchCompute(dtype, "EmbeddingLookup", [&](auto tag) {
    using T = typename decltype(tag)::type;
    EmbeddingKernel<T><<<static_cast<unsigned>(num_tokens), kThreads, 0, stream>>>(
        static_cast<const T*>(table), vocab, dim, tokens, static_cast<T*>(out));
    return LaunchStatus("EmbeddingKernel");
  });
}

}  // namespace colo::kernels::cuda
