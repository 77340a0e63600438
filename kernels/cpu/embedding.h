// Embedding lookup: out[t] = table[tokens[t]] for a [vocab][dim] table.
// Returns false (writing nothing) if any token is outside [0, vocab).
// Thread-safe.
#ifndef COLO_KERNELS_CPU_EMBEDDING_H_
#define COLO_KERNELS_CPU_EMBEDDING_H_

#include <cstdint>

namespace colo {
namespace kernels {

bool EmbeddingLookup(const float* table, int64_t vocab, int64_t dim,
                     const int32_t* tokens, int64_t num_tokens, float* out);

}  // namespace kernels
}  // namespace colo

#endif  // COLO_KERNELS_CPU_EMBEDDING_H_
