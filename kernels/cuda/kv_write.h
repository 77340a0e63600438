// Writes a step's new K and V into the paged KV pools (the CUDA counterpart
// of the CPU forward's KV store): token t's k_src[t * src_token_stride + e]
// and v_src[...] (e < slot_elements = num_kv_heads * head_dim, of the compute
// dtype `src_dtype`) go to slot TokenSlot(batch, t) of k_pool / v_pool
// ([slots][slot_elements] of kv_dtype, converted: fp8 rounds and saturates).
// Tokens whose layer slot is negative (unmapped SWA slot of a padded graph
// row) are skipped. Device pointers; work is queued on `stream`.
// Errors: INVALID_ARGUMENT for bad shapes or dtypes; the launch error
// otherwise.
#ifndef COLO_KERNELS_CUDA_KV_WRITE_H_
#define COLO_KERNELS_CUDA_KV_WRITE_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/attention_plan.h"
#include "kernels/cuda/dtype.h"

namespace colo::kernels::cuda {

absl::Status WritePagedKv(const void* k_src, const void* v_src, DType src_dtype,
                          int64_t src_token_stride, const PagedBatch& batch,
                          int64_t slot_elements, void* k_pool, void* v_pool, DType kv_dtype,
                          cudaStream_t stream);

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_KV_WRITE_H_
