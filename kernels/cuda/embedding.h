// Embedding lookup on the device: out[t] = table[tokens[t]] for a
// [vocab][dim] table of a compute dtype (the CUDA counterpart of
// kernels/cpu/embedding.h); out has the table's dtype.
//
// All pointers are device pointers; work is queued on `stream`. The CPU
// kernel refuses a batch with a token outside [0, vocab); a device kernel
// cannot report that without a synchronisation, so callers validate tokens
// on the host first (CudaTransformerModel::Validate does) and a bad token
// here yields a row of zeros (never an out-of-bounds read).
// Errors: INVALID_ARGUMENT for bad sizes or dtypes; the launch error otherwise.
#ifndef COLO_KERNELS_CUDA_EMBEDDING_H_
#define COLO_KERNELS_CUDA_EMBEDDING_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/dtype.h"

namespace colo::kernels::cuda {

absl::Status EmbeddingLookup(const void* table, DType dtype, int64_t vocab, int64_t dim,
                             const int32_t* tokens, int64_t num_tokens, void* out,
                             cudaStream_t stream);

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_EMBEDDING_H_
