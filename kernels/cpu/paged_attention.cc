#include "kernels/cpu/paged_attention.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/simd_reduce.h"

namespace colo {
namespace kernels {

namespace {

// AVX-512 intrinsics built on _mm512_undefined_* trip these (simd_reduce.h).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// AttendOne for head_dim == 16 * NV. Scores: per key a 16-lane product
// accumulated over the head in order, then ReduceSixteen over blocks of 16
// keys (padding keys are zero and do not touch the others' lanes). Softmax
// as in the portable path. Values: two accumulators (even / odd keys) added
// at the end. Every step depends only on (q, the attended keys, position).
template <int NV>
COLO_AVX512 void AttendOneAvx512(const float* q_head, int64_t lo, int64_t count,
                                 const int32_t* key_slots, const float* k_pool,
                                 const float* v_pool, int64_t slot_stride,
                                 int64_t head_offset, float scale, float sink,
                                 float* scratch, float* out_head) {
  __m512 qv[NV];
#pragma GCC unroll 16
  for (int c = 0; c < NV; ++c) qv[c] = _mm512_loadu_ps(q_head + 16 * c);
  const __m512 scale_v = _mm512_set1_ps(scale);
  __m512 max_v = _mm512_set1_ps(-INFINITY);
  for (int64_t j0 = 0; j0 < count; j0 += 16) {
    const int nk = static_cast<int>(std::min<int64_t>(16, count - j0));
    __m512 acc[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {
      if (i < nk) {
        const float* kj = k_pool + key_slots[lo + j0 + i] * slot_stride + head_offset;
        __m512 a = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kj));
#pragma GCC unroll 16
        for (int c = 1; c < NV; ++c) a = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(kj + 16 * c), a);
        acc[i] = a;
      } else {
        acc[i] = _mm512_setzero_ps();
      }
    }
    const __mmask16 mask = static_cast<__mmask16>((1u << nk) - 1);
    const __m512 s = _mm512_mul_ps(ReduceSixteen(acc), scale_v);
    _mm512_mask_storeu_ps(scratch + j0, mask, s);
    max_v = _mm512_mask_max_ps(max_v, mask, max_v, s);
  }
  const bool has_sink = sink != -INFINITY;
  float max_score = _mm512_reduce_max_ps(max_v);
  if (has_sink) max_score = std::max(max_score, sink);
  float sum = 0.0f;
  for (int64_t j = 0; j < count; ++j) {
    scratch[j] = std::exp(scratch[j] - max_score);
    sum += scratch[j];
  }
  if (has_sink) sum += std::exp(sink - max_score);
  const float inv = 1.0f / sum;
  __m512 even[NV], odd[NV];
#pragma GCC unroll 16
  for (int c = 0; c < NV; ++c) even[c] = odd[c] = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 2 <= count; j += 2) {
    const __m512 p0 = _mm512_set1_ps(scratch[j] * inv);
    const __m512 p1 = _mm512_set1_ps(scratch[j + 1] * inv);
    const float* v0 = v_pool + key_slots[lo + j] * slot_stride + head_offset;
    const float* v1 = v_pool + key_slots[lo + j + 1] * slot_stride + head_offset;
#pragma GCC unroll 16
    for (int c = 0; c < NV; ++c) {
      even[c] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 16 * c), even[c]);
      odd[c] = _mm512_fmadd_ps(p1, _mm512_loadu_ps(v1 + 16 * c), odd[c]);
    }
  }
  if (j < count) {
    const __m512 p0 = _mm512_set1_ps(scratch[j] * inv);
    const float* v0 = v_pool + key_slots[lo + j] * slot_stride + head_offset;
#pragma GCC unroll 16
    for (int c = 0; c < NV; ++c)
      even[c] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 16 * c), even[c]);
  }
#pragma GCC unroll 16
  for (int c = 0; c < NV; ++c)
    _mm512_storeu_ps(out_head + 16 * c, _mm512_add_ps(even[c], odd[c]));
}

#pragma GCC diagnostic pop

}  // namespace

bool AttentionUsesAvx512(int head_dim) {
  return HasAvx512() &&
         (head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128);
}

void AttendOne(const float* q_head, int64_t position, const int32_t* key_slots,
               const float* k_pool, const float* v_pool, int kv_head,
               const AttentionShape& shape, float* scratch, float* out_head, float sink) {
  if (AttentionUsesAvx512(shape.head_dim)) {
    const int64_t slot_stride = static_cast<int64_t>(shape.num_kv_heads) * shape.head_dim;
    const int64_t lo = FirstAttendedPosition(position, shape.window);
    const int64_t count = position - lo + 1;
    const int64_t off = static_cast<int64_t>(kv_head) * shape.head_dim;
    switch (shape.head_dim) {
      case 16:
        return AttendOneAvx512<1>(q_head, lo, count, key_slots, k_pool, v_pool,
                                  slot_stride, off, shape.scale, sink, scratch, out_head);
      case 32:
        return AttendOneAvx512<2>(q_head, lo, count, key_slots, k_pool, v_pool,
                                  slot_stride, off, shape.scale, sink, scratch, out_head);
      case 64:
        return AttendOneAvx512<4>(q_head, lo, count, key_slots, k_pool, v_pool,
                                  slot_stride, off, shape.scale, sink, scratch, out_head);
      default:
        return AttendOneAvx512<8>(q_head, lo, count, key_slots, k_pool, v_pool,
                                  slot_stride, off, shape.scale, sink, scratch, out_head);
    }
  }
  const int d = shape.head_dim;
  const int64_t slot_stride = static_cast<int64_t>(shape.num_kv_heads) * d;
  const int64_t lo = FirstAttendedPosition(position, shape.window);
  const int64_t count = position - lo + 1;
  float max_score = -INFINITY;
  for (int64_t j = 0; j < count; ++j) {
    const float* kj = k_pool + key_slots[lo + j] * slot_stride + kv_head * d;
    const float s = DotProduct(q_head, kj, d) * shape.scale;
    scratch[j] = s;
    if (s > max_score) max_score = s;
  }
  const bool has_sink = sink != -INFINITY;
  if (has_sink && sink > max_score) max_score = sink;
  float sum = 0.0f;
  for (int64_t j = 0; j < count; ++j) {
    scratch[j] = std::exp(scratch[j] - max_score);
    sum += scratch[j];
  }
  if (has_sink) sum += std::exp(sink - max_score);
  const float inv = 1.0f / sum;
  for (int i = 0; i < d; ++i) out_head[i] = 0.0f;
  for (int64_t j = 0; j < count; ++j) {
    const float p = scratch[j] * inv;
    const float* vj = v_pool + key_slots[lo + j] * slot_stride + kv_head * d;
    for (int i = 0; i < d; ++i) out_head[i] += p * vj[i];
  }
}

void PagedAttention(const float* q, int64_t num_queries,
                    int64_t first_position, const int32_t* key_slots,
                    const float* k_pool, const float* v_pool,
                    const AttentionShape& shape, float* out, const float* sinks) {
  const int group = shape.num_heads / shape.num_kv_heads;
  std::vector<float> scratch(first_position + num_queries + 1);
  for (int64_t i = 0; i < num_queries; ++i) {
    for (int h = 0; h < shape.num_heads; ++h) {
      const int64_t off = (i * shape.num_heads + h) * shape.head_dim;
      AttendOne(q + off, first_position + i, key_slots, k_pool, v_pool,
                h / group, shape, scratch.data(), out + off,
                sinks != nullptr ? sinks[h] : -INFINITY);
    }
  }
}

}  // namespace kernels
}  // namespace colo
