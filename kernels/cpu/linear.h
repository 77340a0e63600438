// Linear (fully connected) layer: y[m][n] = sum_k x[m][k] * w[n][k] + b[n].
//
// x: [m][k] row-major, w: [n][k] row-major (the Hugging Face / PyTorch
// nn.Linear layout), bias: [n] or nullptr, y: [m][n]. Buffers must not alias.
//
// Linear() is *batch invariant*: every output element is one dot product
// computed with the same instruction sequence (16-lane FMA accumulation over
// k in order, then a fixed horizontal reduction), whatever m is, how the
// rows are tiled (4 x 6 register tiles), and which thread runs it. A row of y
// therefore depends only on its row of x, so a request decodes to the same
// tokens alone or in a batch. It uses AVX-512F when the CPU has it (and
// $COLO_DISABLE_AVX512 is unset), else AVX2+FMA with 8 lanes (4 x 4 tiles),
// else a scalar loop; the three agree within rounding, not bit for bit, so a
// machine must use one path for all rows (it does: the choice is per process).
//
// LinearBlas() computes the same thing with OpenBLAS cblas_sgemm: faster for
// large m, but its blocking (and so its rounding) depends on m; it is not
// batch invariant and is offered for callers that do not need that.
//
// Both are thread-safe (no shared state besides the pool).
#ifndef COLO_KERNELS_CPU_LINEAR_H_
#define COLO_KERNELS_CPU_LINEAR_H_

#include <cstdint>

#include "kernels/cpu/thread_pool.h"

namespace colo {
namespace kernels {

void Linear(const float* x, int64_t m, int64_t k, const float* w, int64_t n,
            const float* bias, float* y, ThreadPool* pool);

void LinearBlas(const float* x, int64_t m, int64_t k, const float* w,
                int64_t n, const float* bias, float* y);

// Dot product with the same arithmetic as one element of Linear().
float DotProduct(const float* a, const float* b, int64_t k);

// True when the AVX2+FMA path is in use.
bool LinearUsesAvx2();

}  // namespace kernels
}  // namespace colo

#endif  // COLO_KERNELS_CPU_LINEAR_H_
