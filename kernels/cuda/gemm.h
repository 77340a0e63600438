// GEMM glue over cuBLASLt: the CUDA counterpart of kernels/cpu/linear.h.
//
//   y[m][n] = sum_k x[m][k] * w[n][k] (+ bias[n])
//
// x: [m][k] row-major, w: [n][k] row-major (the nn.Linear layout), both of
// the compute dtype `in`; y: [m][n] of `out` (== in, or float32 for the
// logits); bias: [n] of `out`, or nullptr. Device pointers that must not
// alias. The math is fp32 accumulation (CUBLAS_COMPUTE_32F): tensor cores for
// float16/bfloat16 inputs, plain fp32 for float32 inputs (no TF32), so a
// float32 model matches the CPU kernel within float rounding.
//
// Plans: the matmul descriptors and the heuristic's algorithm are cached per
// (m, n, k, dtypes, pointer alignments, workspace) on first use (a host-only
// query, allowed during CUDA-graph capture) and reused; the cache is
// dropped whole when it reaches kMaxPlans. The workspace given to
// SetWorkspace (e.g. a buffer of the cuda_graph tag) is passed to every
// matmul, so nothing allocates during capture; without one the heuristic
// picks algorithms that need none.
//
// Move-only. Not thread-safe: one Gemm per thread (or external locking).
// Errors: INVALID_ARGUMENT for bad shapes or dtypes; cuBLAS failures are
// INTERNAL (RESOURCE_EXHAUSTED for CUBLAS_STATUS_ALLOC_FAILED, UNAVAILABLE
// for CUBLAS_STATUS_NOT_INITIALIZED) naming the call, the status and the
// shape; NOT_FOUND when the heuristic offers no algorithm.
#ifndef COLO_KERNELS_CUDA_GEMM_H_
#define COLO_KERNELS_CUDA_GEMM_H_

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/dtype.h"

namespace colo::kernels::cuda {

class Gemm {
 public:
  static constexpr size_t kMaxPlans = 8192;

  // Creates a cuBLASLt handle on the current device. UNAVAILABLE without a GPU.
  static absl::StatusOr<Gemm> Create();

  Gemm();
  ~Gemm();
  Gemm(Gemm&& other) noexcept;
  Gemm& operator=(Gemm&& other) noexcept;
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  bool valid() const;

  // Uses `workspace` (device memory, `bytes` long, not owned; must outlive
  // the Gemm's use) for every matmul; clears the plan cache.
  absl::Status SetWorkspace(void* workspace, size_t bytes);

  absl::Status Linear(const void* x, int64_t m, int64_t k, const void* w, int64_t n,
                      const void* bias, void* y, DType in, DType out, cudaStream_t stream);

  // Plans cached now (for tests).
  size_t num_plans() const;

 private:
  struct State;
  explicit Gemm(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// cuBLAS status -> absl::Status naming `what`.
absl::Status CublasStatus(cublasStatus_t status, const char* what);

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_GEMM_H_
