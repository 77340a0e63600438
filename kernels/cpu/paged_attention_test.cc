#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace colo {
namespace kernels {
namespace {

// Dense reference: keys/values given per position (not paged).
void DenseAttention(const std::vector<float>& q, int64_t nq, int64_t first,
                    const std::vector<float>& k, const std::vector<float>& v,
                    const AttentionShape& s, std::vector<float>* out,
                    const std::vector<float>* sinks = nullptr) {
  out->assign(nq * s.num_heads * s.head_dim, 0.0f);
  const int group = s.num_heads / s.num_kv_heads;
  for (int64_t i = 0; i < nq; ++i) {
    const int64_t pos = first + i;
    for (int h = 0; h < s.num_heads; ++h) {
      const int kvh = h / group;
      std::vector<double> sc;
      std::vector<int64_t> js;
      for (int64_t j = 0; j <= pos; ++j) {
        if (s.window > 0 && pos - j >= s.window) continue;
        double d = 0;
        for (int e = 0; e < s.head_dim; ++e)
          d += double(q[(i * s.num_heads + h) * s.head_dim + e]) *
               k[(j * s.num_kv_heads + kvh) * s.head_dim + e];
        sc.push_back(d * s.scale);
        js.push_back(j);
      }
      double mx = *std::max_element(sc.begin(), sc.end()), sum = 0;
      if (sinks != nullptr) mx = std::max<double>(mx, (*sinks)[h]);
      for (double& x : sc) sum += (x = std::exp(x - mx));
      if (sinks != nullptr) sum += std::exp((*sinks)[h] - mx);
      for (size_t t = 0; t < js.size(); ++t)
        for (int e = 0; e < s.head_dim; ++e)
          (*out)[(i * s.num_heads + h) * s.head_dim + e] +=
              sc[t] / sum * v[(js[t] * s.num_kv_heads + kvh) * s.head_dim + e];
    }
  }
}

void RunCase(int64_t window, int64_t prefix, int64_t nq, uint32_t seed,
             int head_dim = 8, bool with_sinks = false) {
  SCOPED_TRACE(testing::Message() << "window=" << window << " prefix=" << prefix
                                  << " nq=" << nq << " seed=" << seed
                                  << " head_dim=" << head_dim << " sinks=" << with_sinks);
  AttentionShape s{6, 2, head_dim, 1.0f / std::sqrt(float(head_dim)), window};
  const int64_t kv = 2 * head_dim;  // floats per slot
  const int64_t len = prefix + nq, slots = 3 * len + 5;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> q(nq * s.num_heads * s.head_dim), k(len * kv), v(len * kv);
  for (float& x : q) x = u(rng);
  for (float& x : k) x = u(rng);
  for (float& x : v) x = u(rng);
  // Scatter positions to shuffled slots; poison every other slot.
  std::vector<int32_t> all(slots);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  std::vector<int32_t> key_slots(all.begin(), all.begin() + len);
  std::vector<float> kp(slots * kv, NAN), vp(slots * kv, NAN);
  for (int64_t j = 0; j < len; ++j) {
    if (window > 0 && j < prefix + 1 - window) {
      key_slots[j] = -1;  // fell out of the window: must never be read
      continue;
    }
    std::copy(&k[j * kv], &k[j * kv] + kv, &kp[key_slots[j] * kv]);
    std::copy(&v[j * kv], &v[j * kv] + kv, &vp[key_slots[j] * kv]);
  }
  // Sinks from well below to well above the scores (the max may be a sink).
  std::vector<float> sinks(s.num_heads);
  for (int h = 0; h < s.num_heads; ++h) sinks[h] = -3.0f + 1.5f * h;
  std::vector<float> out(q.size()), ref;
  PagedAttention(q.data(), nq, prefix, key_slots.data(), kp.data(), vp.data(), s,
                 out.data(), with_sinks ? sinks.data() : nullptr);
  DenseAttention(q, nq, prefix, k, v, s, &ref, with_sinks ? &sinks : nullptr);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 1e-5) << i;
}

TEST(PagedAttentionTest, PrefillDecodeAndWindowsMatchDenseReference) {
  for (int64_t window : {0, 1, 3, 8}) {
    RunCase(window, 0, 7, 1);    // prefill from scratch
    RunCase(window, 9, 4, 2);    // extend over a cached prefix
    RunCase(window, 20, 1, 3);   // decode
  }
}

// Head sizes of the vectorized path (16 * {1, 2, 4, 8}) and one that is not,
// with contexts that are and are not multiples of its 16-key blocks.
TEST(PagedAttentionTest, HeadSizesAndLongContextsMatchDenseReference) {
  SCOPED_TRACE(testing::Message() << "AttentionUsesAvx512(64)="
                                  << AttentionUsesAvx512(64));
  for (int head_dim : {16, 24, 32, 64, 128}) {
    for (int64_t window : {0, 5, 16, 17}) {
      RunCase(window, 0, 37, 4, head_dim);   // prefill across 16-key blocks
      RunCase(window, 31, 2, 5, head_dim);   // extend: 32 and 33 keys
      RunCase(window, 47, 1, 6, head_dim);   // decode over exactly 48 keys
    }
  }
}

TEST(PagedAttentionTest, SinksMatchDenseReference) {
  for (int head_dim : {8, 16, 64}) {
    for (int64_t window : {0, 5, 16}) {
      RunCase(window, 0, 19, 7, head_dim, /*with_sinks=*/true);
      RunCase(window, 31, 2, 8, head_dim, /*with_sinks=*/true);
      RunCase(window, 47, 1, 9, head_dim, /*with_sinks=*/true);
    }
  }
}

TEST(PagedAttentionTest, SinkShrinksTheOutputAndMinusInfinityIsBitIdentical) {
  // One key with value 1: without a sink the output is exactly 1; a sink
  // equal to the score takes half of the probability mass.
  AttentionShape s{1, 1, 16, 1.0f, 0};
  std::vector<float> kp(16, 0.0f), vp(16, 1.0f), q(16, 0.0f);
  std::vector<int32_t> slots = {0};
  std::vector<float> none(16), minus_inf(16), half(16), scratch(2);
  AttendOne(q.data(), 0, slots.data(), kp.data(), vp.data(), 0, s, scratch.data(),
            none.data());
  AttendOne(q.data(), 0, slots.data(), kp.data(), vp.data(), 0, s, scratch.data(),
            minus_inf.data(), -INFINITY);
  AttendOne(q.data(), 0, slots.data(), kp.data(), vp.data(), 0, s, scratch.data(),
            half.data(), 0.0f);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(none[i], 1.0f);
    EXPECT_EQ(minus_inf[i], none[i]);
    EXPECT_FLOAT_EQ(half[i], 0.5f);
  }
}

TEST(PagedAttentionTest, WindowChangesTheAnswer) {
  AttentionShape full{1, 1, 2, 1.0f, 0}, sliding{1, 1, 2, 1.0f, 2};
  std::vector<float> kp = {10, 0, 0, 0, 0, 0}, vp = {5, 5, 1, 1, 1, 1};
  std::vector<int32_t> slots = {0, 1, 2};
  std::vector<float> q = {1, 0}, a(2), b(2);
  PagedAttention(q.data(), 1, 2, slots.data(), kp.data(), vp.data(), full, a.data());
  PagedAttention(q.data(), 1, 2, slots.data(), kp.data(), vp.data(), sliding, b.data());
  EXPECT_GT(a[0], 4.9f);         // attends position 0 (score 10)
  EXPECT_FLOAT_EQ(b[0], 1.0f);   // position 0 is outside the window
}

}  // namespace
}  // namespace kernels
}  // namespace colo
