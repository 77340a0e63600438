#include "kernels/cuda/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/device_array.h"
#include "kernels/cuda/test_util.h"
#include "tests/util/status_matchers.h"

namespace colo::kernels::cuda {
namespace {

using testing::ExpectAllNear;
using testing::RandomFloats;

struct Case {
  int num_heads;
  int num_kv_heads;
  int head_dim;
  int64_t window;  // 0 = full attention; > 0 = SWA pool through full_to_swa
  int page_size;
};

struct Seq {
  int64_t cached_len;
  int64_t new_tokens;
};

class CudaPagedAttentionTest : public ::testing::TestWithParam<Case> {};

// Three sequences (extend over a cached prefix, decode, fresh prefill) on
// shuffled pages. Writes the new tokens' K/V with WritePagedKv from a fused
// qkv buffer, attends with PagedAttention, and compares with the CPU kernels
// doing the same per sequence. For SWA, positions outside every query's
// window map to a poison slot whose V is huge: reading it would show.
TEST_P(CudaPagedAttentionTest, MatchesCpu) {
  COLO_SKIP_WITHOUT_GPU();
  const Case c = GetParam();
  const bool sliding = c.window > 0;
  const std::vector<Seq> seqs = {{10, 3}, {8, 1}, {0, 5}, {37, 1}};
  const int ps = c.page_size;
  const int64_t slot_elems = int64_t{c.num_kv_heads} * c.head_dim;
  const int64_t Q = int64_t{c.num_heads} * c.head_dim;
  const int64_t QKV = Q + 2 * slot_elems;
  std::mt19937 rng(1234 + c.head_dim + c.window);

  // Full pool pages (page 0 = padding), handed out in shuffled order.
  int64_t max_len = 0, total_pages = 1;
  for (const Seq& s : seqs) {
    max_len = std::max(max_len, s.cached_len + s.new_tokens);
    total_pages += (s.cached_len + s.new_tokens + ps - 1) / ps;
  }
  const int64_t full_pages = total_pages + 3;
  std::vector<int32_t> pages(full_pages - 1);
  std::iota(pages.begin(), pages.end(), 1);
  std::shuffle(pages.begin(), pages.end(), rng);
  const int64_t stride = max_len + 2;
  std::vector<int32_t> table((seqs.size() + 1) * stride, 0);  // row 0 = padding row
  size_t next_page = 0;
  for (size_t r = 0; r < seqs.size(); ++r) {
    const int64_t len = seqs[r].cached_len + seqs[r].new_tokens;
    int32_t page = 0;
    for (int64_t p = 0; p < len; ++p) {
      if (p % ps == 0) page = pages[next_page++];
      table[(r + 1) * stride + p] = page * ps + p % ps;
    }
  }
  const int64_t full_slots = full_pages * ps;

  // SWA pool: distinct slots for in-window positions; slot 0..ps-1 padding;
  // the last slot is the poison slot.
  int64_t swa_slots = full_slots;
  std::vector<int32_t> full_to_swa(full_slots, -1);
  if (sliding) {
    swa_slots = full_slots + ps + 1;
    const int32_t poison = static_cast<int32_t>(swa_slots - 1);
    std::vector<int32_t> free_swa(swa_slots - ps - 1);
    std::iota(free_swa.begin(), free_swa.end(), ps);
    std::shuffle(free_swa.begin(), free_swa.end(), rng);
    size_t next = 0;
    for (size_t r = 0; r < seqs.size(); ++r) {
      const int64_t len = seqs[r].cached_len + seqs[r].new_tokens;
      const int64_t lo = kernels::FirstAttendedPosition(seqs[r].cached_len, c.window);
      for (int64_t p = 0; p < len; ++p) {
        const int32_t full = table[(r + 1) * stride + p];
        full_to_swa[full] = p >= lo ? free_swa[next++] : poison;
      }
    }
  }
  const int64_t pool_slots = sliding ? swa_slots : full_slots;
  std::vector<float> k_pool = RandomFloats(pool_slots * slot_elems, 21);
  std::vector<float> v_pool = RandomFloats(pool_slots * slot_elems, 22);
  if (sliding) {
    for (int64_t e = 0; e < slot_elems; ++e) {
      k_pool[(pool_slots - 1) * slot_elems + e] = 4.0f;
      v_pool[(pool_slots - 1) * slot_elems + e] = 1.0e4f;
    }
  }

  // The batch's tokens.
  std::vector<int64_t> positions;
  std::vector<int32_t> token_row;
  for (size_t r = 0; r < seqs.size(); ++r) {
    for (int64_t i = 0; i < seqs[r].new_tokens; ++i) {
      positions.push_back(seqs[r].cached_len + i);
      token_row.push_back(static_cast<int32_t>(r + 1));
    }
  }
  const int64_t T = positions.size();
  const std::vector<float> qkv = RandomFloats(T * QKV, 23, -2.0f, 2.0f);

  // CPU reference.
  auto slot_of = [&](size_t r, int64_t p) {
    const int32_t full = table[(r + 1) * stride + p];
    return sliding ? full_to_swa[full] : full;
  };
  std::vector<float> k_ref = k_pool, v_ref = v_pool;
  for (int64_t t = 0; t < T; ++t) {
    const int32_t slot = slot_of(token_row[t] - 1, positions[t]);
    std::memcpy(&k_ref[slot * slot_elems], &qkv[t * QKV + Q], slot_elems * sizeof(float));
    std::memcpy(&v_ref[slot * slot_elems], &qkv[t * QKV + Q + slot_elems],
                slot_elems * sizeof(float));
  }
  kernels::AttentionShape cpu_shape;
  cpu_shape.num_heads = c.num_heads;
  cpu_shape.num_kv_heads = c.num_kv_heads;
  cpu_shape.head_dim = c.head_dim;
  cpu_shape.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  cpu_shape.window = c.window;
  std::vector<float> want(T * Q);
  {
    int64_t t0 = 0;
    for (size_t r = 0; r < seqs.size(); ++r) {
      const int64_t len = seqs[r].cached_len + seqs[r].new_tokens;
      std::vector<int32_t> key_slots(len);
      for (int64_t p = 0; p < len; ++p) key_slots[p] = slot_of(r, p);
      std::vector<float> q(seqs[r].new_tokens * Q);
      for (int64_t i = 0; i < seqs[r].new_tokens; ++i) {
        std::memcpy(&q[i * Q], &qkv[(t0 + i) * QKV], Q * sizeof(float));
      }
      kernels::PagedAttention(q.data(), seqs[r].new_tokens, seqs[r].cached_len,
                              key_slots.data(), k_ref.data(), v_ref.data(),
                              cpu_shape, &want[t0 * Q]);
      t0 += seqs[r].new_tokens;
    }
  }

  // Device.
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  ASSERT_OK_AND_ASSIGN(auto d_k, DeviceArray<float>::FromHost(k_pool));
  ASSERT_OK_AND_ASSIGN(auto d_v, DeviceArray<float>::FromHost(v_pool));
  ASSERT_OK_AND_ASSIGN(auto d_qkv, DeviceArray<float>::FromHost(qkv));
  ASSERT_OK_AND_ASSIGN(auto d_pos, DeviceArray<int64_t>::FromHost(positions));
  ASSERT_OK_AND_ASSIGN(auto d_row, DeviceArray<int32_t>::FromHost(token_row));
  ASSERT_OK_AND_ASSIGN(auto d_table, DeviceArray<int32_t>::FromHost(table));
  ASSERT_OK_AND_ASSIGN(auto d_f2s, DeviceArray<int32_t>::FromHost(full_to_swa));
  ASSERT_OK_AND_ASSIGN(auto d_out, DeviceArray<float>::Create(T * Q));
  TokenSlots tokens;
  tokens.num_tokens = T;
  tokens.positions = d_pos.data();
  tokens.token_row = d_row.data();
  tokens.slot_table = d_table.data();
  tokens.slot_table_stride = stride;
  tokens.full_to_swa = sliding ? d_f2s.data() : nullptr;
  AttentionShape shape;
  shape.num_heads = c.num_heads;
  shape.num_kv_heads = c.num_kv_heads;
  shape.head_dim = c.head_dim;
  shape.scale = cpu_shape.scale;
  shape.window = c.window;
  ASSERT_OK(WritePagedKv(d_qkv.data() + Q, d_qkv.data() + Q + slot_elems, QKV,
                         tokens, slot_elems, d_k.data(), d_v.data(), stream.get()));
  ASSERT_OK(PagedAttention(d_qkv.data(), QKV, tokens, d_k.data(), d_v.data(),
                           shape, d_out.data(), stream.get()));
  ASSERT_OK(stream.Synchronize());
  ASSERT_OK_AND_ASSIGN(std::vector<float> k_got, d_k.ToHost());
  ASSERT_OK_AND_ASSIGN(std::vector<float> v_got, d_v.ToHost());
  ASSERT_OK_AND_ASSIGN(std::vector<float> got, d_out.ToHost());
  EXPECT_EQ(k_got, k_ref);
  EXPECT_EQ(v_got, v_ref);
  ExpectAllNear(got, want, 2e-5f, 1e-4f);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaPagedAttentionTest,
    ::testing::Values(Case{8, 2, 64, 0, 4},     // GQA, full, paged
                      Case{8, 2, 64, 5, 4},     // GQA, sliding window
                      Case{4, 4, 200, 0, 1},    // MHA, head_dim not a multiple of 128
                      Case{6, 3, 128, 3, 16},   // window smaller than a page
                      Case{2, 1, 512, 7, 2},    // the largest head_dim
                      Case{16, 2, 128, 40, 8},  // window larger than every sequence
                      Case{4, 1, 96, 200, 4}));

TEST(CudaPagedAttentionShapeTest, RejectsBadShapes) {
  TokenSlots tokens;  // zero tokens: only the shape is checked
  AttentionShape shape;
  shape.num_heads = 6;
  shape.num_kv_heads = 4;  // not a divisor
  shape.head_dim = 64;
  EXPECT_THAT(PagedAttention(nullptr, 6 * 64, tokens, nullptr, nullptr, shape,
                             nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  shape.num_kv_heads = 2;
  shape.head_dim = kMaxAttentionHeadDim + 2;
  EXPECT_THAT(PagedAttention(nullptr, 6 * shape.head_dim, tokens, nullptr,
                             nullptr, shape, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  tokens.num_tokens = 3;  // but no pointers
  shape.head_dim = 64;
  EXPECT_THAT(PagedAttention(nullptr, 6 * 64, tokens, nullptr, nullptr, shape,
                             nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace colo::kernels::cuda
