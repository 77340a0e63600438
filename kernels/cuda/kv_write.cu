#include "kernels/cuda/kv_write.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_cuda.cuh"

namespace colo::kernels::cuda {
namespace {

constexpr int kThreads = 128;

// One block per token.
template <typename TS, typename TKV>
__global__ void WritePagedKvKernel(const TS* k_src, const TS* v_src, int64_t src_token_stride,
                                   PagedBatch batch, int64_t slot_elements, TKV* k_pool,
                                   TKV* v_pool) {
  const int32_t t = blockIdx.x;
  const int32_t slot = TokenSlot(batch, t);
  if (slot < 0) return;
  const TS* ks = k_src + t * src_token_stride;
  const TS* vs = v_src + t * src_token_stride;
  TKV* kd = k_pool + static_cast<int64_t>(slot) * slot_elements;
  TKV* vd = v_pool + static_cast<int64_t>(slot) * slot_elements;
  for (int64_t e = threadIdx.x; e < slot_elements; e += kThreads) {
    kd[e] = FromFloat<TKV>(ToFloat(ks[e]));
    vd[e] = FromFloat<TKV>(ToFloat(vs[e]));
  }
}

}  // namespace

absl::Status WritePagedKv(const void* k_src, const void* v_src, DType src_dtype,
                          int64_t src_token_stride, const PagedBatch& batch,
                          int64_t slot_elements, void* k_pool, void* v_pool, DType kv_dtype,
                          cudaStream_t stream) {
  if (batch.num_tokens < 0 || slot_elements <= 0 || src_token_stride < slot_elements ||
      batch.page_size <= 0 ||
      (batch.num_tokens > 0 && (batch.positions == nullptr || batch.token_req == nullptr ||
                                batch.req_page_begin == nullptr || batch.pages == nullptr))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WritePagedKv: bad shape tokens=", batch.num_tokens, " slot_elements=", slot_elements,
        " src_token_stride=", src_token_stride, " page_size=", batch.page_size,
        " (positions/token_req/req_page_begin/pages must be set)"));
  }
  if (batch.num_tokens == 0) return absl::OkStatus();
  return DispatchCompute(src_dtype, "WritePagedKv (source)", [&](auto stag) {
    using TS = typename decltype(stag)::type;
    return DispatchAny(kv_dtype, "WritePagedKv (KV cache)", [&](auto ktag) {
      using TKV = typename decltype(ktag)::type;
      WritePagedKvKernel<TS, TKV><<<static_cast<unsigned>(batch.num_tokens), kThreads, 0,
                                    stream>>>(
          static_cast<const TS*>(k_src), static_cast<const TS*>(v_src), src_token_stride, batch,
          slot_elements, static_cast<TKV*>(k_pool), static_cast<TKV*>(v_pool));
      return LaunchStatus("WritePagedKvKernel");
    });
  });
}

}  // namespace colo::kernels::cuda
