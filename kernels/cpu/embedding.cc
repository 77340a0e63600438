#include "kernels/cpu/embedding.h"

#include <cstring>

namespace colo {
namespace kernels {

bool EmbeddingLookup(const float* table, int64_t vocab, int64_t dim,
                     const int32_t* tokens, int64_t num_tokens, float* out) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (tokens[t] < 0 || tokens[t] >= vocab) return false;
  }
  for (int64_t t = 0; t < num_tokens; ++t) {
    std::memcpy(out + t * dim, table + static_cast<int64_t>(tokens[t]) * dim,
                sizeof(float) * dim);
  }
  return true;
}

}  // namespace kernels
}  // namespace colo
