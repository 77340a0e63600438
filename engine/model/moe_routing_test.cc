#include "engine/model/moe_routing.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"

namespace colo {
namespace engine {
namespace {

MoeConfig Qwen(int experts, int k, bool norm) {
  MoeConfig m;
  m.num_experts = experts;
  m.experts_per_token = k;
  m.norm_topk_prob = norm;
  m.router = MoeRouter::kSoftmaxTopK;
  return m;
}

MoeConfig GptOss(int experts, int k) {
  MoeConfig m = Qwen(experts, k, false);
  m.router = MoeRouter::kTopKSoftmax;
  return m;
}

TEST(MoeRoutingTest, SoftmaxTopKWithAndWithoutRenormalisation) {
  const std::vector<float> logits = {0.0f, 2.0f, 1.0f, -1.0f};
  double z = 0;
  for (float l : logits) z += std::exp(l);
  MoeRoutingPlan plan;
  RouteTokens(logits.data(), 1, Qwen(4, 2, false), &plan);
  // Experts 1 and 2, stored ascending.
  ASSERT_EQ(plan.expert, (std::vector<int32_t>{1, 2}));
  EXPECT_NEAR(plan.weight[0], std::exp(2.0) / z, 1e-6);
  EXPECT_NEAR(plan.weight[1], std::exp(1.0) / z, 1e-6);
  RouteTokens(logits.data(), 1, Qwen(4, 2, true), &plan);
  EXPECT_NEAR(plan.weight[0], std::exp(2.0) / (std::exp(2.0) + std::exp(1.0)), 1e-6);
  EXPECT_NEAR(plan.weight[0] + plan.weight[1], 1.0, 1e-6);
}

TEST(MoeRoutingTest, TopKSoftmaxOverTheSelectedLogits) {
  const std::vector<float> logits = {3.0f, -2.0f, 5.0f, 4.0f, 0.0f};
  MoeRoutingPlan plan;
  RouteTokens(logits.data(), 1, GptOss(5, 3), &plan);
  ASSERT_EQ(plan.expert, (std::vector<int32_t>{0, 2, 3}));
  const double z = std::exp(3.0) + std::exp(5.0) + std::exp(4.0);
  EXPECT_NEAR(plan.weight[0], std::exp(3.0) / z, 1e-6);
  EXPECT_NEAR(plan.weight[1], std::exp(5.0) / z, 1e-6);
  EXPECT_NEAR(plan.weight[2], std::exp(4.0) / z, 1e-6);
}

TEST(MoeRoutingTest, TiesGoToTheLowerExpert) {
  const std::vector<float> logits = {1.0f, 1.0f, 1.0f, 1.0f};
  MoeRoutingPlan plan;
  RouteTokens(logits.data(), 1, GptOss(4, 2), &plan);
  EXPECT_EQ(plan.expert, (std::vector<int32_t>{0, 1}));
  RouteTokens(logits.data(), 1, Qwen(4, 3, true), &plan);
  EXPECT_EQ(plan.expert, (std::vector<int32_t>{0, 1, 2}));
}

// The grouping is a permutation consistent with the per-token choices, and
// a token's routing does not depend on the other tokens.
TEST(MoeRoutingTest, GroupsByExpertInTokenOrderAndIsPerToken) {
  const int E = 6, K = 2, T = 37;
  std::mt19937 rng(3);
  std::normal_distribution<float> n;
  std::vector<float> logits(T * E);
  for (float& l : logits) l = n(rng);
  for (const MoeConfig& moe : {Qwen(E, K, true), GptOss(E, K)}) {
    MoeRoutingPlan plan;
    RouteTokens(logits.data(), T, moe, &plan);
    ASSERT_EQ(plan.expert_begin.size(), static_cast<size_t>(E + 1));
    EXPECT_EQ(plan.expert_begin[E], T * K);
    std::vector<int> seen(T * K, 0);
    for (int e = 0; e < E; ++e) {
      for (int32_t pos = plan.expert_begin[e]; pos < plan.expert_begin[e + 1]; ++pos) {
        const int32_t c = plan.group[pos];
        EXPECT_EQ(plan.expert[c], e);
        EXPECT_EQ(plan.position[c], pos);
        if (pos > plan.expert_begin[e]) {
          EXPECT_LT(plan.group[pos - 1] / K, c / K);
        }
        ++seen[c];
      }
    }
    for (int v : seen) EXPECT_EQ(v, 1);
    for (int e : plan.active_experts) EXPECT_GT(plan.expert_begin[e + 1], plan.expert_begin[e]);
    for (int t = 0; t < T; ++t) {
      MoeRoutingPlan one;
      RouteTokens(logits.data() + t * E, 1, moe, &one);
      for (int j = 0; j < K; ++j) {
        EXPECT_EQ(one.expert[j], plan.expert[t * K + j]);
        EXPECT_EQ(one.weight[j], plan.weight[t * K + j]);
      }
      EXPECT_LT(plan.expert[t * K], plan.expert[t * K + 1]);
    }
  }
}

}  // namespace
}  // namespace engine
}  // namespace colo
