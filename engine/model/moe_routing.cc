#include "engine/model/moe_routing.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace colo {
namespace engine {
namespace {

// Indices of the k largest values, largest first; ties to the lower index.
void TopK(const float* v, int n, int k, std::vector<int>* idx) {
  idx->resize(n);
  for (int i = 0; i < n; ++i) (*idx)[i] = i;
  std::partial_sort(idx->begin(), idx->begin() + k, idx->end(), [v](int a, int b) {
    return v[a] > v[b] || (v[a] == v[b] && a < b);
  });
  idx->resize(k);
}

}  // namespace

void RouteTokens(const float* logits, int64_t num_tokens, const MoeConfig& moe,
                 MoeRoutingPlan* plan) {
  const int E = moe.num_experts, K = moe.experts_per_token;
  plan->num_tokens = num_tokens;
  plan->top_k = K;
  plan->num_experts = E;
  plan->expert.assign(num_tokens * K, 0);
  plan->weight.assign(num_tokens * K, 0.0f);
  std::vector<float> probs(E);
  std::vector<int> top;
  std::vector<std::pair<int32_t, float>> chosen(K);
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* l = logits + t * E;
    if (moe.router == MoeRouter::kSoftmaxTopK) {
      float mx = l[0];
      for (int e = 1; e < E; ++e) mx = std::max(mx, l[e]);
      float sum = 0.0f;
      for (int e = 0; e < E; ++e) sum += (probs[e] = std::exp(l[e] - mx));
      for (int e = 0; e < E; ++e) probs[e] /= sum;
      TopK(probs.data(), E, K, &top);
      float top_sum = 0.0f;
      for (int j = 0; j < K; ++j) top_sum += probs[top[j]];
      for (int j = 0; j < K; ++j) {
        const float w = probs[top[j]];
        chosen[j] = {top[j], moe.norm_topk_prob ? w / top_sum : w};
      }
    } else {
      TopK(l, E, K, &top);
      const float mx = l[top[0]];
      float sum = 0.0f;
      for (int j = 0; j < K; ++j) sum += (probs[j] = std::exp(l[top[j]] - mx));
      for (int j = 0; j < K; ++j) chosen[j] = {top[j], probs[j] / sum};
    }
    std::sort(chosen.begin(), chosen.end());
    for (int j = 0; j < K; ++j) {
      plan->expert[t * K + j] = chosen[j].first;
      plan->weight[t * K + j] = chosen[j].second;
    }
  }
  // Group by expert (counting sort: stable, so tokens stay in order).
  plan->expert_begin.assign(E + 1, 0);
  for (int32_t e : plan->expert) ++plan->expert_begin[e + 1];
  for (int e = 0; e < E; ++e) plan->expert_begin[e + 1] += plan->expert_begin[e];
  plan->group.assign(num_tokens * K, 0);
  plan->position.assign(num_tokens * K, 0);
  std::vector<int32_t> fill(plan->expert_begin.begin(), plan->expert_begin.end() - 1);
  for (int64_t c = 0; c < num_tokens * K; ++c) {
    const int32_t pos = fill[plan->expert[c]]++;
    plan->group[pos] = static_cast<int32_t>(c);
    plan->position[c] = pos;
  }
  plan->active_experts.clear();
  for (int e = 0; e < E; ++e) {
    if (plan->expert_begin[e + 1] > plan->expert_begin[e]) plan->active_experts.push_back(e);
  }
}

}  // namespace engine
}  // namespace colo
