#include "engine/model/moe_cpu.h"

#include <cstring>

#include "kernels/cpu/linear.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/swiglu.h"

namespace colo {
namespace engine {

MoeScratchSizes MoeScratchFor(const ModelConfig& c, int64_t num_tokens) {
  const int64_t choices = num_tokens * c.moe.experts_per_token, I = c.moe.intermediate_size;
  MoeScratchSizes s;
  s.logits = num_tokens * c.moe.num_experts;
  s.gathered = choices * c.hidden_size;
  s.gate_up = choices * 2 * I;
  s.act = choices * I;
  s.expert_out = choices * c.hidden_size;
  return s;
}

void MoeMlpCpu(const ModelConfig& c, const LayerWeights& L, const float* x, int64_t T,
               MoeScratch* s, kernels::ThreadPool* pool, float* out) {
  const MoeConfig& moe = c.moe;
  const int64_t H = c.hidden_size, I = moe.intermediate_size, E = moe.num_experts,
                K = moe.experts_per_token;
  const bool fused = moe.layout == ExpertLayout::kFusedTransposed;
  kernels::Linear(x, T, H, L.router, E, L.router_bias, s->logits, pool);
  MoeRoutingPlan& plan = s->plan;
  RouteTokens(s->logits, T, moe, &plan);

  // Rows of each expert's group, gathered contiguously.
  pool->ParallelFor(T * K, 16, [&](int64_t b, int64_t e) {
    for (int64_t pos = b; pos < e; ++pos) {
      const int64_t token = plan.group[pos] / K;
      std::memcpy(s->gathered + pos * H, x + token * H, H * sizeof(float));
    }
  });
  // One expert: its rows [begin, end) of the grouped buffers. `inner` is the
  // pool its GEMMs split columns over (null: this thread only).
  auto run_expert = [&](int32_t e, kernels::ThreadPool* inner) {
    const int64_t begin = plan.expert_begin[e], rows = plan.expert_begin[e + 1] - begin;
    const float* xe = s->gathered + begin * H;
    float* gu = s->gate_up + begin * 2 * I;
    float* act = s->act + begin * I;
    float* ye = s->expert_out + begin * H;
    if (fused) {
      kernels::MatMul(xe, rows, H, L.expert_gate_up[e], 2 * I,
                      L.expert_gate_up_bias + int64_t{e} * 2 * I, gu, inner);
      kernels::ClampedSwiGluInterleaved(gu, rows, I, static_cast<float>(moe.swiglu_alpha),
                                        static_cast<float>(moe.swiglu_limit), act);
      kernels::MatMul(act, rows, I, L.expert_down[e], H, L.expert_down_bias + int64_t{e} * H,
                      ye, inner);
    } else {
      kernels::Linear(xe, rows, H, L.expert_gate_up[e], 2 * I, nullptr, gu, inner);
      kernels::SwiGlu(gu, rows, I, act);
      kernels::Linear(act, rows, I, L.expert_down[e], H, nullptr, ye, inner);
    }
  };
  const int64_t active = static_cast<int64_t>(plan.active_experts.size());
  if (active >= pool->num_threads()) {
    pool->ParallelFor(active, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) run_expert(plan.active_experts[i], nullptr);
    });
  } else {
    for (int32_t e : plan.active_experts) run_expert(e, pool);
  }
  // Combine: each token's experts in ascending order (plan.expert is sorted).
  pool->ParallelFor(T, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      float* o = out + t * H;
      for (int64_t h = 0; h < H; ++h) o[h] = 0.0f;
      for (int64_t j = 0; j < K; ++j) {
        const float w = plan.weight[t * K + j];
        const float* y = s->expert_out + int64_t{plan.position[t * K + j]} * H;
        for (int64_t h = 0; h < H; ++h) o[h] += y[h] * w;
      }
    }
  });
}

}  // namespace engine
}  // namespace colo
