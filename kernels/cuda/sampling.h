// Token selection and log-probabilities on the device (CUDA counterpart of
// kernels/cpu/sampling.h). Logprobs are of the raw logits (log_softmax
// before temperature or filtering), as on the CPU.
//
// GreedySample: per row of logits [rows][vocab]: token = argmax (lowest index
//   among equals), logprob = logits[token] - logsumexp(logits) with the
//   logsumexp in double, exactly as kernels::SampleToken with temperature 0.
//   Runs entirely on the device (capturable in a CUDA graph).
// LogSoftmax: out[r][i] = logits[r][i] - logsumexp(logits[r]) (double lse).
// SampleTokens: any SamplingParams (greedy, temperature, top-k, top-p, seed).
//   When every row is greedy it runs GreedySample on the device; otherwise it
//   copies the logits to the host and runs kernels::SampleToken per row, so
//   the counter-based RNG and the filtering are the CPU's by construction.
//   It synchronizes `stream` and is not capturable.
// Device pointers unless named host_*. Errors: INVALID_ARGUMENT for bad
// shapes; CUDA errors naming the kernel or call.
#ifndef COLO_KERNELS_CUDA_SAMPLING_H_
#define COLO_KERNELS_CUDA_SAMPLING_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "kernels/cpu/sampling.h"

namespace colo::kernels::cuda {

absl::Status GreedySample(const float* logits, int64_t rows, int64_t vocab,
                          int32_t* tokens, float* logprobs,
                          cudaStream_t stream);

absl::Status LogSoftmax(const float* logits, int64_t rows, int64_t vocab,
                        float* out, cudaStream_t stream);

// params and steps: one per row (host). host_out: rows entries.
absl::Status SampleTokens(const float* logits, int64_t rows, int64_t vocab,
                          absl::Span<const SamplingParams> params,
                          absl::Span<const uint64_t> steps,
                          SampledToken* host_out, cudaStream_t stream);

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_SAMPLING_H_
