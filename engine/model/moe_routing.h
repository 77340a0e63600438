// MoE routing: which experts each token uses and with which weight, and the
// same choices grouped by expert (the plan a grouped GEMM runs). Host code,
// device independent: the CPU forward (moe_cpu.h) runs it on router logits
// it computed; a GPU forward can run the same plan after copying the [T][E]
// logits (or top-k results) to the host, or port these few lines to a kernel.
//
// Routing, exactly as transformers:
//   kSoftmaxTopK (Qwen3MoeTopKRouter): p = softmax(logits) over all experts,
//     the top k of p, divided by their sum when norm_topk_prob;
//   kTopKSoftmax (GptOssTopKRouter): the top k logits, softmax over them.
// Top-k ties go to the lower expert index.
//
// Combine order (batch invariance): a token's choices are stored sorted by
// expert index, and the MLP output is sum_j weight_j * expert_j(x) summed in
// that order (transformers' index_add_ over experts in ascending order). The
// plan of a token depends only on its own logits, so a token's result does
// not depend on which other tokens share its batch.
//
// Thread-compatible (plain data and a pure function).
#ifndef COLO_ENGINE_MODEL_MOE_ROUTING_H_
#define COLO_ENGINE_MODEL_MOE_ROUTING_H_

#include <cstdint>
#include <vector>

#include "engine/model/model_config.h"

namespace colo {
namespace engine {

struct MoeRoutingPlan {
  int64_t num_tokens = 0;
  int top_k = 0;
  int num_experts = 0;
  // Per token t, entries [t * top_k, (t + 1) * top_k): its experts in
  // ascending order and their weights.
  std::vector<int32_t> expert;
  std::vector<float> weight;
  // By expert: group[expert_begin[e] .. expert_begin[e + 1]) are the choice
  // indices (t * top_k + j) routed to expert e, in increasing token order.
  std::vector<int32_t> expert_begin;  // [num_experts + 1]
  std::vector<int32_t> group;         // [num_tokens * top_k]
  // position[t * top_k + j]: where choice (t, j) sits in `group` (the row of
  // its expert's output in a grouped buffer).
  std::vector<int32_t> position;      // [num_tokens * top_k]
  // Experts with at least one token, ascending.
  std::vector<int32_t> active_experts;

  int64_t num_choices() const { return num_tokens * top_k; }
};

// Fills `plan` from the router logits [num_tokens][moe.num_experts].
// Preconditions: moe.num_experts > 0, 0 < moe.experts_per_token <= num_experts.
void RouteTokens(const float* logits, int64_t num_tokens, const MoeConfig& moe,
                 MoeRoutingPlan* plan);

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_MOE_ROUTING_H_
