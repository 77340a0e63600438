// The sparse MoE MLP on the CPU: route (moe_routing.h), group the tokens by
// expert, run each active expert's two GEMMs over its tokens only, and
// combine. One GEMM per active expert (kernels::Linear for nn.Linear experts,
// kernels::MatMul for gpt-oss's x @ W experts), experts spread over the
// thread pool (a ParallelFor over the active experts, each expert's GEMMs on
// one thread); with fewer active experts than threads the GEMMs themselves
// are split by columns instead. Both kernels are batch invariant, the
// routing of a token depends only on its row, and the combine sums a token's
// experts in ascending expert order, so every token's output is bit-identical
// whatever else is in the batch and however many threads run it.
//
// Thread-compatible: one call at a time per scratch buffer set.
#ifndef COLO_ENGINE_MODEL_MOE_CPU_H_
#define COLO_ENGINE_MODEL_MOE_CPU_H_

#include <cstdint>

#include "engine/model/model_config.h"
#include "engine/model/model_weights.h"
#include "engine/model/moe_routing.h"
#include "kernels/cpu/thread_pool.h"

namespace colo {
namespace engine {

// Float counts of the scratch MoeMlpCpu needs for `num_tokens` tokens.
struct MoeScratchSizes {
  int64_t logits = 0;    // [T][E]
  int64_t gathered = 0;  // [T * k][hidden]
  int64_t gate_up = 0;   // [T * k][2 I]
  int64_t act = 0;       // [T * k][I]
  int64_t expert_out = 0;  // [T * k][hidden]
};
MoeScratchSizes MoeScratchFor(const ModelConfig& config, int64_t num_tokens);

struct MoeScratch {
  float* logits = nullptr;
  float* gathered = nullptr;
  float* gate_up = nullptr;
  float* act = nullptr;
  float* expert_out = nullptr;
  MoeRoutingPlan plan;  // reused across calls
};

// out[t] = the MoE MLP of x[t] for t < num_tokens (x, out: [T][hidden], may
// not alias). `layer` must be a MoE layer of `config`.
void MoeMlpCpu(const ModelConfig& config, const LayerWeights& layer, const float* x,
               int64_t num_tokens, MoeScratch* scratch, kernels::ThreadPool* pool, float* out);

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_MOE_CPU_H_
