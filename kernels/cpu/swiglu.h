// SwiGLU activation: out[t][i] = silu(gate_up[t][i]) * gate_up[t][inter + i]
// where gate_up is [tokens][2 * inter] (gate half first, then up half) and
// silu(g) = g / (1 + exp(-g)). out: [tokens][inter]. Thread-safe.
#ifndef COLO_KERNELS_CPU_SWIGLU_H_
#define COLO_KERNELS_CPU_SWIGLU_H_

#include <cstdint>

namespace colo {
namespace kernels {

void SwiGlu(const float* gate_up, int64_t tokens, int64_t inter, float* out);

}  // namespace kernels
}  // namespace colo

#endif  // COLO_KERNELS_CPU_SWIGLU_H_
