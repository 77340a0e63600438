#include "kernels/cuda/paged_attention.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_status.h"

namespace colo::kernels::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kDimsPerThread = kMaxAttentionHeadDim / kThreads;
static_assert(kDimsPerThread * kThreads == kMaxAttentionHeadDim, "");

__device__ int32_t SlotOf(const int32_t* row, const int32_t* full_to_swa,
                          int64_t position) {
  const int32_t full = row[position];
  return full_to_swa != nullptr ? full_to_swa[full] : full;
}

// grid = (num_tokens, num_heads), block = kThreads.
//  1. q -> shared; every thread scores a strided subset of keys: block max.
//  2. keys in tiles of kThreads: thread j scores key j of the tile into
//     shared p = exp(s - max) (and its slot); then thread i accumulates
//     sum_j p[j] * v[j][i] for its dims i = tid + c * kThreads.
//  3. out = acc / sum(p).
__global__ void PagedAttentionKernel(const float* q, int64_t q_token_stride,
                                     TokenSlots tokens, const float* k_pool,
                                     const float* v_pool, AttentionShape shape,
                                     float* out) {
  __shared__ float q_s[kMaxAttentionHeadDim];
  __shared__ float p_s[kThreads];
  __shared__ int32_t slot_s[kThreads];
  __shared__ float red[kThreads];
  const int64_t t = blockIdx.x;
  const int h = blockIdx.y;
  const int d = shape.head_dim;
  const int tid = threadIdx.x;
  const int kv_head = h / (shape.num_heads / shape.num_kv_heads);
  const int64_t slot_stride = static_cast<int64_t>(shape.num_kv_heads) * d;
  const float* k_base = k_pool + static_cast<int64_t>(kv_head) * d;
  const float* v_base = v_pool + static_cast<int64_t>(kv_head) * d;

  const float* qh = q + t * q_token_stride + static_cast<int64_t>(h) * d;
  for (int i = tid; i < d; i += kThreads) q_s[i] = qh[i];
  __syncthreads();

  const int64_t pos = tokens.positions[t];
  int64_t lo = 0;
  if (shape.window > 0) {
    lo = pos - shape.window + 1;
    if (lo < 0) lo = 0;
  }
  const int64_t count = pos - lo + 1;
  const int32_t* row =
      tokens.slot_table + static_cast<int64_t>(tokens.token_row[t]) *
                              tokens.slot_table_stride;

  auto score = [&](int32_t slot) {
    const float* kj = k_base + static_cast<int64_t>(slot) * slot_stride;
    float acc = 0.0f;
    for (int i = 0; i < d; ++i) acc += q_s[i] * kj[i];
    return acc * shape.scale;
  };

  float local_max = -INFINITY;
  for (int64_t j = tid; j < count; j += kThreads) {
    local_max = fmaxf(local_max, score(SlotOf(row, tokens.full_to_swa, lo + j)));
  }
  const float max_score = BlockReduceMax<float, kThreads>(local_max, red);

  float acc[kDimsPerThread];
  for (int c = 0; c < kDimsPerThread; ++c) acc[c] = 0.0f;
  float local_sum = 0.0f;
  for (int64_t base = 0; base < count; base += kThreads) {
    const int64_t j = base + tid;
    float p = 0.0f;
    int32_t slot = 0;
    if (j < count) {
      slot = SlotOf(row, tokens.full_to_swa, lo + j);
      p = expf(score(slot) - max_score);
    }
    p_s[tid] = p;
    slot_s[tid] = slot;
    local_sum += p;
    __syncthreads();
    const int64_t n = count - base < kThreads ? count - base : kThreads;
    for (int64_t jj = 0; jj < n; ++jj) {
      const float pj = p_s[jj];
      const float* vj = v_base + static_cast<int64_t>(slot_s[jj]) * slot_stride;
      for (int c = 0; c < kDimsPerThread; ++c) {
        const int i = tid + c * kThreads;
        if (i < d) acc[c] += pj * vj[i];
      }
    }
    __syncthreads();
  }
  const float sum = BlockReduceSum<float, kThreads>(local_sum, red);
  const float inv = 1.0f / sum;
  float* o = out + (t * shape.num_heads + h) * static_cast<int64_t>(d);
  for (int c = 0; c < kDimsPerThread; ++c) {
    const int i = tid + c * kThreads;
    if (i < d) o[i] = acc[c] * inv;
  }
}

// One block per token.
__global__ void WritePagedKvKernel(const float* k_src, const float* v_src,
                                   int64_t src_token_stride, TokenSlots tokens,
                                   int64_t slot_elements, float* k_pool,
                                   float* v_pool) {
  const int64_t t = blockIdx.x;
  const int32_t* row =
      tokens.slot_table + static_cast<int64_t>(tokens.token_row[t]) *
                              tokens.slot_table_stride;
  const int64_t slot = SlotOf(row, tokens.full_to_swa, tokens.positions[t]);
  const float* ks = k_src + t * src_token_stride;
  const float* vs = v_src + t * src_token_stride;
  float* kd = k_pool + slot * slot_elements;
  float* vd = v_pool + slot * slot_elements;
  for (int64_t e = threadIdx.x; e < slot_elements; e += kThreads) {
    kd[e] = ks[e];
    vd[e] = vs[e];
  }
}

absl::Status CheckTokens(const char* kernel, const TokenSlots& tokens) {
  if (tokens.num_tokens < 0 || tokens.num_tokens > 0x7fffffff ||
      (tokens.num_tokens > 0 &&
       (tokens.positions == nullptr || tokens.token_row == nullptr ||
        tokens.slot_table == nullptr || tokens.slot_table_stride <= 0))) {
    return absl::InvalidArgumentError(absl::StrCat(
        kernel, ": bad token slots (num_tokens=", tokens.num_tokens,
        ", slot_table_stride=", tokens.slot_table_stride,
        ", positions/token_row/slot_table must be set)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status PagedAttention(const float* q, int64_t q_token_stride,
                            const TokenSlots& tokens, const float* k_pool,
                            const float* v_pool, const AttentionShape& shape,
                            float* out, cudaStream_t stream) {
  if (absl::Status s = CheckTokens("PagedAttention", tokens); !s.ok()) return s;
  if (shape.num_heads <= 0 || shape.num_heads > 65535 ||
      shape.num_kv_heads <= 0 || shape.num_heads % shape.num_kv_heads != 0 ||
      shape.head_dim <= 0 || shape.head_dim > kMaxAttentionHeadDim ||
      shape.window < 0 ||
      q_token_stride < int64_t{shape.num_heads} * shape.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PagedAttention: bad shape heads=", shape.num_heads, " kv_heads=",
        shape.num_kv_heads, " head_dim=", shape.head_dim, " (max ",
        kMaxAttentionHeadDim, ") window=", shape.window, " q_token_stride=",
        q_token_stride));
  }
  if (tokens.num_tokens == 0) return absl::OkStatus();
  const dim3 grid(static_cast<unsigned>(tokens.num_tokens),
                  static_cast<unsigned>(shape.num_heads));
  PagedAttentionKernel<<<grid, kThreads, 0, stream>>>(
      q, q_token_stride, tokens, k_pool, v_pool, shape, out);
  return LaunchStatus("PagedAttentionKernel");
}

absl::Status WritePagedKv(const float* k_src, const float* v_src,
                          int64_t src_token_stride, const TokenSlots& tokens,
                          int64_t slot_elements, float* k_pool, float* v_pool,
                          cudaStream_t stream) {
  if (absl::Status s = CheckTokens("WritePagedKv", tokens); !s.ok()) return s;
  if (slot_elements <= 0 || src_token_stride < slot_elements) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WritePagedKv: bad shape slot_elements=", slot_elements,
        " src_token_stride=", src_token_stride));
  }
  if (tokens.num_tokens == 0) return absl::OkStatus();
  WritePagedKvKernel<<<static_cast<unsigned>(tokens.num_tokens), kThreads, 0,
                       stream>>>(k_src, v_src, src_token_stride, tokens,
                                 slot_elements, k_pool, v_pool);
  return LaunchStatus("WritePagedKvKernel");
}

}  // namespace colo::kernels::cuda
