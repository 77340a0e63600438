#include "kernels/cpu/swiglu.h"

#include <cmath>

namespace colo {
namespace kernels {

void SwiGlu(const float* gate_up, int64_t tokens, int64_t inter, float* out) {
  for (int64_t t = 0; t < tokens; ++t) {
    const float* g = gate_up + t * 2 * inter;
    const float* u = g + inter;
    float* o = out + t * inter;
    for (int64_t i = 0; i < inter; ++i) {
      const float silu = g[i] / (1.0f + std::exp(-g[i]));
      o[i] = silu * u[i];
    }
  }
}

}  // namespace kernels
}  // namespace colo
