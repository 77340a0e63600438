// Token selection from next-token logits: greedy, temperature, top-k, top-p,
// with a per-request seed; and log-probabilities.
//
// Logprobs are always of the *raw* logits (log_softmax before temperature or
// filtering), matching what RL trainers recompute.
//
// Randomness is counter based: the uniform draw for a request is a hash of
// (seed, step), so a request samples the same token alone or in any batch,
// on any thread. Thread-safe (pure functions).
#ifndef COLO_KERNELS_CPU_SAMPLING_H_
#define COLO_KERNELS_CPU_SAMPLING_H_

#include <cstdint>
#include <vector>

namespace colo {
namespace kernels {

struct SamplingParams {
  // <= 0: greedy (argmax, lowest index on ties).
  float temperature = 0.0f;
  // <= 0 or >= vocab: no top-k filtering.
  int top_k = 0;
  // >= 1: no top-p filtering. Keeps the smallest set of most likely tokens
  // whose probability mass reaches top_p (at least one token).
  float top_p = 1.0f;
  uint64_t seed = 0;
};

struct SampledToken {
  int32_t token = -1;
  float logprob = 0.0f;  // log_softmax(raw logits)[token]
};

// log(sum(exp(logits))) computed stably in double.
double LogSumExp(const float* logits, int64_t n);

// out[i] = logits[i] - LogSumExp(logits).
void LogSoftmax(const float* logits, int64_t n, float* out);

// Index of the largest logit (lowest index among equals).
int32_t ArgMax(const float* logits, int64_t n);

// A uniform double in [0, 1) from (seed, step).
double CounterUniform(uint64_t seed, uint64_t step);

// Samples one token. `step` distinguishes successive draws of one request
// (use the number of tokens generated so far).
SampledToken SampleToken(const float* logits, int64_t vocab,
                         const SamplingParams& params, uint64_t step);

}  // namespace kernels
}  // namespace colo

#endif  // COLO_KERNELS_CPU_SAMPLING_H_
