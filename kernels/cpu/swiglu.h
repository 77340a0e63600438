// SwiGLU activations.
//
// SwiGlu: out[t][i] = silu(gate_up[t][i]) * gate_up[t][inter + i]
// where gate_up is [tokens][2 * inter] (gate half first, then up half) and
// silu(g) = g / (1 + exp(-g)). out: [tokens][inter]. Thread-safe.
#ifndef COLO_KERNELS_CPU_SWIGLU_H_
#define COLO_KERNELS_CPU_SWIGLU_H_

#include <cstdint>

namespace colo {
namespace kernels {

void SwiGlu(const float* gate_up, int64_t tokens, int64_t inter, float* out);

// The gpt-oss experts' clamped SwiGLU (transformers' GptOssExperts._apply_gate):
// gate_up is [tokens][2 * inter] with gate and up *interleaved* (gate_i at
// column 2i, up_i at 2i + 1); with g = min(gate_i, limit) and
// u = clamp(up_i, -limit, limit), out[t][i] = (u + 1) * g * sigmoid(alpha * g).
// out: [tokens][inter]. Thread-safe.
void ClampedSwiGluInterleaved(const float* gate_up, int64_t tokens, int64_t inter,
                              float alpha, float limit, float* out);

}  // namespace kernels
}  // namespace colo

#endif  // COLO_KERNELS_CPU_SWIGLU_H_
