// MatMul: y[m][n] = sum_k x[m][k] * w[k][n] + b[n], for weights stored
// [in][out] (torch's `x @ W`, e.g. the gpt-oss expert tensors), where Linear
// (linear.h) takes [out][in].
//
// x: [m][k] row-major, w: [k][n] row-major, bias: [n] or nullptr, y: [m][n].
// Buffers must not alias.
//
// Batch invariant and exact across instruction sets: every output element is
// one fused multiply-add chain acc = fma(x[r][i], w[i][c], acc) over
// i = 0..k-1 in order, from acc = 0, then acc + b[c]. The AVX-512 (16 lanes,
// 4 x 96 register tiles), AVX2 (8 lanes) and scalar (std::fma) paths run that
// same chain per element, so a row of y depends only on its row of x, never
// on m, the tiling, the thread split or the machine's vector width.
//
// Thread-safe (no shared state besides the pool).
#ifndef COLO_KERNELS_CPU_MATMUL_H_
#define COLO_KERNELS_CPU_MATMUL_H_

#include <cstdint>

#include "kernels/cpu/thread_pool.h"

namespace colo {
namespace kernels {

// `pool` may be null (single-threaded).
void MatMul(const float* x, int64_t m, int64_t k, const float* w, int64_t n,
            const float* bias, float* y, ThreadPool* pool);

}  // namespace kernels
}  // namespace colo

#endif  // COLO_KERNELS_CPU_MATMUL_H_
