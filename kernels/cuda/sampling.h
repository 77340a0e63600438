// Token selection and log-probabilities on the device (CUDA counterpart of
// kernels/cpu/sampling.h). Logits are float32 [rows][vocab]; logprobs are of
// the raw logits (log_softmax before temperature or filtering), as on the
// CPU, with the logsumexp in double.
//
// GreedySample: token = argmax (lowest index among equals), logprob.
// LogSoftmax:   out[r][i] = logits[r][i] - logsumexp(logits[r]).
// SampleRows:   every row by its DeviceSamplingParams (sampling_plan.h: greedy,
//               temperature, top-k/top-p over radix-selected candidates, the
//               CPU's counter-based RNG). Writes tokens[r], logprobs[r] and
//               needs_host[r]: 1 when the row could not be finished on the
//               device (kSampleHost, or a nucleus reaching past the
//               candidates); the caller then samples that row on the host
//               with kernels::SampleToken from a copy of its logits
//               (CudaTransformerModel does). Rows are independent: a row's
//               result depends only on its logits and parameters, never on
//               the batch. Everything stays on the device (capturable in a
//               CUDA graph); one block of kSampleThreads per row.
// Device pointers; work is queued on `stream`. Errors: INVALID_ARGUMENT for
// bad shapes; the launch error otherwise.
#ifndef COLO_KERNELS_CUDA_SAMPLING_H_
#define COLO_KERNELS_CUDA_SAMPLING_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/sampling_plan.h"

namespace colo::kernels::cuda {

inline constexpr int kSampleThreads = 256;

absl::Status GreedySample(const float* logits, int64_t rows, int64_t vocab, int32_t* tokens,
                          float* logprobs, cudaStream_t stream);

absl::Status LogSoftmax(const float* logits, int64_t rows, int64_t vocab, float* out,
                        cudaStream_t stream);

absl::Status SampleRows(const float* logits, int64_t rows, int64_t vocab,
                        const DeviceSamplingParams* params, int32_t* tokens, float* logprobs,
                        int32_t* needs_host, cudaStream_t stream);

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_SAMPLING_H_
