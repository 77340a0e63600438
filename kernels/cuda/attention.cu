#include "kernels/cuda/attention.h"

#include <atomic>
#include <type_traits>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_cuda.cuh"

namespace colo::kernels::cuda {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

// The rows one block attends: `num_rows` rows; row r is batch token
// token0 + r / heads, query head head0 + r % heads (all of KV head kv_head)
// of request `req`; keys [keys.begin, keys.end).
struct BlockRows {
  int32_t req;
  int32_t token0;
  int32_t heads;
  int32_t head0;
  int32_t num_rows;
  int kv_head;
  KeyRange keys;
};

// Per-warp row state: rows warp * kAttnRowsPerWarp + i. Lane `lane` holds
// output dims lane + 32 * j.
template <int kDPL>
struct RowState {
  float m[kAttnRowsPerWarp];
  float l[kAttnRowsPerWarp];
  float acc[kAttnRowsPerWarp][kDPL];
};

// Online-softmax attention of a block's rows over its keys (see
// attention_plan.h). Every thread of the block must call it.
template <typename TQ, typename TKV, int kDPL>
__device__ __forceinline__ void AttendRows(const TQ* q, int64_t q_token_stride,
                                           const PagedBatch& batch, const BlockRows& rows,
                                           const TKV* k_pool, const TKV* v_pool,
                                           const AttentionParams& p, float* smem,
                                           RowState<kDPL>& st) {
  const int d = p.head_dim;
  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  float* q_s = smem;                                 // [kAttnRows][d]
  float* k_s = q_s + kAttnRows * d;                  // [kAttnKeyTile][d + 1]
  float* v_s = k_s + kAttnKeyTile * (d + 1);         // [kAttnKeyTile][d]
  int32_t* slot_s = reinterpret_cast<int32_t*>(v_s + kAttnKeyTile * d);  // [kAttnKeyTile]

  // Q rows, pre-scaled.
  for (int idx = tid; idx < rows.num_rows * d; idx += kAttnThreads) {
    const int r = idx / d;
    const int c = idx - r * d;
    const int64_t tok = rows.token0 + r / rows.heads;
    const int64_t h = rows.head0 + r % rows.heads;
    q_s[idx] = ToFloat(q[tok * q_token_stride + h * d + c]) * p.scale;
  }
  int32_t qpos[kAttnRowsPerWarp];
#pragma unroll
  for (int i = 0; i < kAttnRowsPerWarp; ++i) {
    const int r = warp * kAttnRowsPerWarp + i;
    qpos[i] = r < rows.num_rows ? batch.positions[rows.token0 + r / rows.heads] : -1;
    st.m[i] = -INFINITY;
    st.l[i] = 0.0f;
#pragma unroll
    for (int j = 0; j < kDPL; ++j) st.acc[i][j] = 0.0f;
  }
  const int64_t slot_stride = static_cast<int64_t>(p.num_kv_heads) * d;
  const TKV* k_base = k_pool + static_cast<int64_t>(rows.kv_head) * d;
  const TKV* v_base = v_pool + static_cast<int64_t>(rows.kv_head) * d;
  __syncthreads();

  for (int32_t k0 = rows.keys.begin; k0 < rows.keys.end; k0 += kAttnKeyTile) {
    if (tid < kAttnKeyTile) {
      const int32_t kp = k0 + tid;
      slot_s[tid] = kp < rows.keys.end ? RequestSlot(batch, rows.req, kp) : -1;
    }
    __syncthreads();
    for (int idx = tid; idx < kAttnKeyTile * d; idx += kAttnThreads) {
      const int j = idx / d;
      const int c = idx - j * d;
      const int32_t slot = slot_s[j];
      float kv = 0.0f, vv = 0.0f;
      if (slot >= 0) {
        const int64_t o = static_cast<int64_t>(slot) * slot_stride + c;
        kv = ToFloat(k_base[o]);
        vv = ToFloat(v_base[o]);
      }
      k_s[j * (d + 1) + c] = kv;
      v_s[j * d + c] = vv;
    }
    __syncthreads();

    const int32_t kp = k0 + lane;
    const bool key_ok = kp < rows.keys.end && slot_s[lane] >= 0;
#pragma unroll
    for (int i = 0; i < kAttnRowsPerWarp; ++i) {
      const int r = warp * kAttnRowsPerWarp + i;
      if (r >= rows.num_rows) break;  // warp-uniform
      float s = -INFINITY;
      if (key_ok && KeyVisible(qpos[i], kp, p.window)) {
        const float* qr = q_s + r * d;
        const float* kr = k_s + lane * (d + 1);
        float dot = 0.0f;
        for (int c = 0; c < d; ++c) dot += qr[c] * kr[c];
        s = dot;
      }
      const float m_new = fmaxf(st.m[i], WarpMax(s));
      if (m_new == -INFINITY) continue;  // nothing visible yet (warp-uniform)
      const float alpha = ScaledExp(st.m[i], m_new);
      const float pr = ScaledExp(s, m_new);
      st.l[i] = st.l[i] * alpha + WarpSum(pr);
      st.m[i] = m_new;
#pragma unroll
      for (int j = 0; j < kDPL; ++j) st.acc[i][j] *= alpha;
      for (int jj = 0; jj < kAttnKeyTile; ++jj) {
        const float pj = __shfl_sync(kFullMask, pr, jj);
        if (pj == 0.0f) continue;  // masked or negligible key (warp-uniform)
        const float* vr = v_s + jj * d;
#pragma unroll
        for (int j = 0; j < kDPL; ++j) {
          const int c = lane + 32 * j;
          if (c < d) st.acc[i][j] += pj * vr[c];
        }
      }
    }
    __syncthreads();  // the next tile overwrites slot_s, k_s, v_s
  }
}

// Normalises each row (with its sink) and stores it to out.
template <typename TQ, int kDPL>
__device__ __forceinline__ void WriteRows(const BlockRows& rows, const AttentionParams& p,
                                          const RowState<kDPL>& st, TQ* out) {
  const int d = p.head_dim;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int i = 0; i < kAttnRowsPerWarp; ++i) {
    const int r = warp * kAttnRowsPerWarp + i;
    if (r >= rows.num_rows) break;
    const int64_t tok = rows.token0 + r / rows.heads;
    const int h = rows.head0 + r % rows.heads;
    const bool has_sink = p.sinks != nullptr;
    const float sink = has_sink ? p.sinks[h] : 0.0f;
    const float m = st.m[i];
    const float l = st.l[i];
    const MergeScale ms = MergePartials(&m, &l, 1, 1, has_sink, sink);
    const float w = MergeWeight(ms, m);
    TQ* o = out + (tok * p.num_heads + h) * static_cast<int64_t>(d);
#pragma unroll
    for (int j = 0; j < kDPL; ++j) {
      const int c = lane + 32 * j;
      if (c < d) o[c] = FromFloat<TQ>(st.acc[i][j] * w);
    }
  }
}

// grid = (num_tiles, num_kv_heads * head_groups), block = kAttnThreads.
template <typename TQ, typename TKV, int kDPL>
__global__ void __launch_bounds__(kAttnThreads)
    PrefillAttentionKernel(const TQ* q, int64_t q_token_stride, PagedBatch batch,
                           const PrefillTile* tiles, const TKV* k_pool, const TKV* v_pool,
                           AttentionParams p, RowLayout layout, TQ* out) {
  extern __shared__ float smem[];
  const PrefillTile tile = tiles[blockIdx.x];
  BlockRows rows;
  rows.kv_head = blockIdx.y / layout.head_groups;
  int count = 0;
  HeadGroupOf(layout, p.num_heads, p.num_kv_heads, rows.kv_head,
              blockIdx.y % layout.head_groups, &rows.head0, &count);
  rows.heads = count;
  rows.req = tile.req;
  rows.token0 = tile.token_begin;
  const int32_t tokens = tile.num_tokens < layout.tokens_per_block ? tile.num_tokens
                                                                   : layout.tokens_per_block;
  rows.num_rows = tokens * count;
  rows.keys = BlockKeyRange(batch.positions[tile.token_begin],
                            batch.positions[tile.token_begin + tokens - 1], p.window);
  RowState<kDPL> st;
  AttendRows<TQ, TKV, kDPL>(q, q_token_stride, batch, rows, k_pool, v_pool, p, smem, st);
  WriteRows<TQ, kDPL>(rows, p, st, out);
}

// grid = (num_items, num_kv_heads * head_groups, num_splits).
template <typename TQ, typename TKV, int kDPL>
__global__ void __launch_bounds__(kAttnThreads)
    DecodeAttentionKernel(const TQ* q, int64_t q_token_stride, PagedBatch batch,
                          const int32_t* decode_tokens, const TKV* k_pool, const TKV* v_pool,
                          AttentionParams p, RowLayout layout, float* workspace, TQ* out) {
  extern __shared__ float smem[];
  const int32_t item = blockIdx.x;
  const int32_t split = blockIdx.z;
  const int32_t splits = gridDim.z;
  BlockRows rows;
  rows.kv_head = blockIdx.y / layout.head_groups;
  int count = 0;
  HeadGroupOf(layout, p.num_heads, p.num_kv_heads, rows.kv_head,
              blockIdx.y % layout.head_groups, &rows.head0, &count);
  rows.heads = count;
  rows.token0 = decode_tokens[item];
  rows.req = batch.token_req[rows.token0];
  rows.num_rows = count;
  const int32_t pos = batch.positions[rows.token0];
  rows.keys = SplitKeyRange(BlockKeyRange(pos, pos, p.window), splits, split);
  RowState<kDPL> st;
  AttendRows<TQ, TKV, kDPL>(q, q_token_stride, batch, rows, k_pool, v_pool, p, smem, st);
  if (splits == 1) {
    WriteRows<TQ, kDPL>(rows, p, st, out);
    return;
  }
  // Partial of (item, head, split): m, l, then the unnormalised output.
  const int d = p.head_dim;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t n = static_cast<int64_t>(gridDim.x) * p.num_heads * splits;
  float* ws_m = workspace;
  float* ws_l = workspace + n;
  float* ws_acc = workspace + 2 * n;
#pragma unroll
  for (int i = 0; i < kAttnRowsPerWarp; ++i) {
    const int r = warp * kAttnRowsPerWarp + i;
    if (r >= rows.num_rows) break;
    const int h = rows.head0 + r;
    const int64_t pi = (static_cast<int64_t>(item) * p.num_heads + h) * splits + split;
    if (lane == 0) {
      ws_m[pi] = st.m[i];
      ws_l[pi] = st.l[i];
    }
#pragma unroll
    for (int j = 0; j < kDPL; ++j) {
      const int c = lane + 32 * j;
      if (c < d) ws_acc[pi * d + c] = st.acc[i][j];
    }
  }
}

// grid = (num_items, num_heads), block = 128: merges the splits of one
// (item, head).
template <typename TQ>
__global__ void MergeSplitsKernel(const int32_t* decode_tokens, int32_t splits,
                                  AttentionParams p, const float* workspace, TQ* out) {
  const int32_t item = blockIdx.x;
  const int h = blockIdx.y;
  const int d = p.head_dim;
  const int64_t n = static_cast<int64_t>(gridDim.x) * p.num_heads * splits;
  const float* ws_m = workspace;
  const float* ws_l = workspace + n;
  const float* ws_acc = workspace + 2 * n;
  const int64_t base = (static_cast<int64_t>(item) * p.num_heads + h) * splits;
  const bool has_sink = p.sinks != nullptr;
  const MergeScale ms =
      MergePartials(ws_m + base, ws_l + base, splits, 1, has_sink, has_sink ? p.sinks[h] : 0.0f);
  const int64_t tok = decode_tokens[item];
  TQ* o = out + (tok * p.num_heads + h) * static_cast<int64_t>(d);
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float sum = 0.0f;
    for (int32_t s = 0; s < splits; ++s) {
      sum += ws_acc[(base + s) * d + c] * MergeWeight(ms, ws_m[base + s]);
    }
    o[c] = FromFloat<TQ>(sum);
  }
}

absl::Status CheckParams(const char* what, const AttentionParams& p, int64_t q_token_stride,
                         const PagedBatch& b) {
  if (p.num_heads <= 0 || p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0 ||
      p.head_dim <= 0 || p.head_dim > kAttnMaxHeadDim || p.head_dim % 2 != 0 ||
      p.window < 0 || q_token_stride < int64_t{p.num_heads} * p.head_dim ||
      int64_t{p.num_kv_heads} * MakeRowLayout(p.num_heads, p.num_kv_heads).head_groups >
          65535 ||
      b.page_size <= 0 || b.positions == nullptr || b.token_req == nullptr ||
      b.req_page_begin == nullptr || b.pages == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": bad shape heads=", p.num_heads, " kv_heads=", p.num_kv_heads,
        " head_dim=", p.head_dim, " (even, max ", kAttnMaxHeadDim, ") window=", p.window,
        " q_token_stride=", q_token_stride, " page_size=", b.page_size,
        " (the batch's positions/token_req/req_page_begin/pages must be set)"));
  }
  return absl::OkStatus();
}

// Raises the kernel's dynamic shared memory limit once when it needs more
// than the default 48 KiB (a host call; done before any graph capture by the
// eager warm-up step).
template <typename Kernel>
absl::Status PrepareSmem(Kernel kernel, size_t bytes, std::atomic<size_t>* raised,
                         const char* what) {
  if (bytes <= 48 * 1024 || raised->load(std::memory_order_acquire) >= bytes) {
    return absl::OkStatus();
  }
  if (absl::Status s = CudaStatus(
          cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(bytes)),
          absl::StrCat(what, ": cudaFuncSetAttribute(MaxDynamicSharedMemorySize, ", bytes, ")"));
      !s.ok()) {
    return s;
  }
  raised->store(bytes, std::memory_order_release);
  return absl::OkStatus();
}

// Calls f(std::integral_constant<int, kDPL>) with the dims-per-lane that
// covers head_dim (2 for head_dim <= 64: tiny test models share the
// 64-wide instantiation).
template <typename F>
absl::Status DispatchHeadDim(int head_dim, F&& f) {
  if (head_dim <= 64) return f(std::integral_constant<int, 2>{});
  if (head_dim <= 128) return f(std::integral_constant<int, 4>{});
  return f(std::integral_constant<int, 8>{});
}

// The KV cache holds the compute dtype TQ or fp8 e4m3 (the combinations the
// engine offers; fewer instantiations keep the build time down).
template <typename TQ, typename F>
absl::Status DispatchKv(DType kv_dtype, DType dtype, const char* what, F&& f) {
  if (kv_dtype == dtype) return f(TypeTag<TQ>{});
  if (kv_dtype == DType::kFp8E4M3) return f(TypeTag<__nv_fp8_e4m3>{});
  return absl::InvalidArgumentError(absl::StrCat(what, ": a ", DTypeName(kv_dtype),
                                                 " KV cache with ", DTypeName(dtype),
                                                 " activations (the KV cache must have the "
                                                 "compute dtype or be fp8_e4m3)"));
}

}  // namespace

absl::Status PrefillAttention(const void* q, int64_t q_token_stride, DType dtype,
                              const PagedBatch& batch, const PrefillTile* tiles,
                              int32_t num_tiles, const void* k_pool, const void* v_pool,
                              DType kv_dtype, const AttentionParams& params, void* out,
                              cudaStream_t stream) {
  if (absl::Status s = CheckParams("PrefillAttention", params, q_token_stride, batch); !s.ok()) {
    return s;
  }
  if (num_tiles < 0 || (num_tiles > 0 && tiles == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("PrefillAttention: bad tiles (", num_tiles, ")"));
  }
  if (num_tiles == 0) return absl::OkStatus();
  const RowLayout layout = MakeRowLayout(params.num_heads, params.num_kv_heads);
  const dim3 grid(static_cast<unsigned>(num_tiles),
                  static_cast<unsigned>(params.num_kv_heads * layout.head_groups));
  const size_t smem = AttentionSmemBytes(params.head_dim);
  return DispatchCompute(dtype, "PrefillAttention (q)", [&](auto qtag) {
    using TQ = typename decltype(qtag)::type;
    return DispatchKv<TQ>(kv_dtype, dtype, "PrefillAttention", [&](auto ktag) {
      using TKV = typename decltype(ktag)::type;
      return DispatchHeadDim(params.head_dim, [&](auto dpl) {
        constexpr int kDPL = decltype(dpl)::value;
        static std::atomic<size_t> raised{0};
        auto* kernel = &PrefillAttentionKernel<TQ, TKV, kDPL>;
        if (absl::Status s = PrepareSmem(kernel, smem, &raised, "PrefillAttention"); !s.ok()) {
          return s;
        }
        kernel<<<grid, kAttnThreads, smem, stream>>>(
            static_cast<const TQ*>(q), q_token_stride, batch, tiles,
            static_cast<const TKV*>(k_pool), static_cast<const TKV*>(v_pool), params, layout,
            static_cast<TQ*>(out));
        return LaunchStatus("PrefillAttentionKernel");
      });
    });
  });
}

absl::Status DecodeAttention(const void* q, int64_t q_token_stride, DType dtype,
                             const PagedBatch& batch, const int32_t* decode_tokens,
                             int32_t num_items, int32_t num_splits, const void* k_pool,
                             const void* v_pool, DType kv_dtype, const AttentionParams& params,
                             float* workspace, size_t workspace_floats, void* out,
                             cudaStream_t stream) {
  if (absl::Status s = CheckParams("DecodeAttention", params, q_token_stride, batch); !s.ok()) {
    return s;
  }
  const size_t need =
      DecodeWorkspaceFloats(num_items, num_splits, params.num_heads, params.head_dim);
  if (num_items < 0 || (num_items > 0 && decode_tokens == nullptr) || num_splits < 1 ||
      num_splits > kMaxDecodeSplits || workspace_floats < need ||
      (need > 0 && workspace == nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DecodeAttention: bad items=", num_items, " splits=", num_splits, " (max ",
        kMaxDecodeSplits, ") or workspace of ", workspace_floats, " floats (need ", need, ")"));
  }
  if (num_items == 0) return absl::OkStatus();
  const RowLayout layout = MakeRowLayout(params.num_heads, params.num_kv_heads);
  const dim3 grid(static_cast<unsigned>(num_items),
                  static_cast<unsigned>(params.num_kv_heads * layout.head_groups),
                  static_cast<unsigned>(num_splits));
  const size_t smem = AttentionSmemBytes(params.head_dim);
  return DispatchCompute(dtype, "DecodeAttention (q)", [&](auto qtag) {
    using TQ = typename decltype(qtag)::type;
    return DispatchKv<TQ>(kv_dtype, dtype, "DecodeAttention", [&](auto ktag) {
      using TKV = typename decltype(ktag)::type;
      return DispatchHeadDim(params.head_dim, [&](auto dpl) {
        constexpr int kDPL = decltype(dpl)::value;
        static std::atomic<size_t> raised{0};
        auto* kernel = &DecodeAttentionKernel<TQ, TKV, kDPL>;
        if (absl::Status s = PrepareSmem(kernel, smem, &raised, "DecodeAttention"); !s.ok()) {
          return s;
        }
        kernel<<<grid, kAttnThreads, smem, stream>>>(
            static_cast<const TQ*>(q), q_token_stride, batch, decode_tokens,
            static_cast<const TKV*>(k_pool), static_cast<const TKV*>(v_pool), params, layout,
            workspace, static_cast<TQ*>(out));
        if (absl::Status s = LaunchStatus("DecodeAttentionKernel"); !s.ok()) return s;
        if (num_splits == 1) return absl::OkStatus();
        MergeSplitsKernel<TQ><<<dim3(static_cast<unsigned>(num_items),
                                     static_cast<unsigned>(params.num_heads)),
                                128, 0, stream>>>(decode_tokens, num_splits, params, workspace,
                                                  static_cast<TQ*>(out));
        return LaunchStatus("MergeSplitsKernel");
      });
    });
  });
}

}  // namespace colo::kernels::cuda
