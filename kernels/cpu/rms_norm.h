// RMSNorm as in Llama/Qwen: y = x / sqrt(mean(x^2) + eps) * weight.
// x, y: [rows][dim] (may alias: y == x is allowed); weight: [dim].
// The mean of squares is accumulated in double. Thread-safe.
#ifndef COLO_KERNELS_CPU_RMS_NORM_H_
#define COLO_KERNELS_CPU_RMS_NORM_H_

#include <cstdint>

namespace colo {
namespace kernels {

void RmsNorm(const float* x, int64_t rows, int64_t dim, const float* weight,
             float eps, float* y);

}  // namespace kernels
}  // namespace colo

#endif  // COLO_KERNELS_CPU_RMS_NORM_H_
