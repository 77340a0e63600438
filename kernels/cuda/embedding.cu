#include "kernels/cuda/embedding.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"

namespace colo::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// One block per token.
__global__ void EmbeddingKernel(const float* table, int64_t vocab, int64_t dim,
                                const int32_t* tokens, float* out) {
  const int64_t t = blockIdx.x;
  const int32_t token = tokens[t];
  float* dst = out + t * dim;
  const bool valid = token >= 0 && token < vocab;
  const float* src = table + (valid ? static_cast<int64_t>(token) : 0) * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    dst[i] = valid ? src[i] : 0.0f;
  }
}

}  // namespace

absl::Status EmbeddingLookup(const float* table, int64_t vocab, int64_t dim,
                             const int32_t* tokens, int64_t num_tokens,
                             float* out, cudaStream_t stream) {
  if (vocab <= 0 || dim <= 0 || num_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EmbeddingLookup: bad shape vocab=", vocab, " dim=", dim,
        " num_tokens=", num_tokens));
  }
  if (num_tokens == 0) return absl::OkStatus();
  EmbeddingKernel<<<static_cast<unsigned>(num_tokens), kThreads, 0, stream>>>(
      table, vocab, dim, tokens, out);
  return LaunchStatus("EmbeddingKernel");
}

}  // namespace colo::kernels::cuda
