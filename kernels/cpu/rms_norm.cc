#include "kernels/cpu/rms_norm.h"

#include <cmath>

namespace colo {
namespace kernels {

void RmsNorm(const float* x, int64_t rows, int64_t dim, const float* weight,
             float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float inv = static_cast<float>(
        1.0 / std::sqrt(ss / static_cast<double>(dim) + static_cast<double>(eps)));
    for (int64_t i = 0; i < dim; ++i) yr[i] = weight[i] * (xr[i] * inv);
  }
}

}  // namespace kernels
}  // namespace colo
