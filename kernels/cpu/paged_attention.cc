#include "kernels/cpu/paged_attention.h"

#include <cmath>
#include <vector>

#include "kernels/cpu/linear.h"

namespace colo {
namespace kernels {

void AttendOne(const float* q_head, int64_t position, const int32_t* key_slots,
               const float* k_pool, const float* v_pool, int kv_head,
               const AttentionShape& shape, float* scratch, float* out_head) {
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
  float sum = 0.0f;
  for (int64_t j = 0; j < count; ++j) {
    scratch[j] = std::exp(scratch[j] - max_score);
    sum += scratch[j];
  }
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
                    const AttentionShape& shape, float* out) {
  const int group = shape.num_heads / shape.num_kv_heads;
  std::vector<float> scratch(first_position + num_queries + 1);
  for (int64_t i = 0; i < num_queries; ++i) {
    for (int h = 0; h < shape.num_heads; ++h) {
      const int64_t off = (i * shape.num_heads + h) * shape.head_dim;
      AttendOne(q + off, first_position + i, key_slots, k_pool, v_pool,
                h / group, shape, scratch.data(), out + off);
    }
  }
}

}  // namespace kernels
}  // namespace colo
