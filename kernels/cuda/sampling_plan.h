// How the GPU sampler (sampling.cu, SampleRows) treats each request, and the
// pieces of its algorithm as COLO_HD functions so CI checks them on the CPU.
//
// Semantics are those of kernels::SampleToken (kernels/cpu/sampling.h): the
// logprob is of the raw logits; randomness is CounterUniform(seed, step), the
// same counter-based draw, so a request samples the same way alone or in any
// batch, on the CPU or the GPU (tokens may differ only where the logits'
// rounding or the order of a sum moves a draw across a boundary).
//
// Per row the device runs one of:
//   kGreedy       argmax, lowest index among equals;
//   kTemperature  softmax(logits / T) over the whole vocabulary, one draw
//                 (no top-k, no top-p: the usual RL rollout setting);
//   kCandidates   top-k and/or top-p: the K = top_k (or, without top-k,
//                 kMaxDeviceCandidates) best tokens by (logit desc, index
//                 asc) are selected (radix select) and sorted, then the
//                 CPU's filtering runs on them. Without top-k, top-p needs
//                 the candidates' mass over the whole vocabulary to reach
//                 top_p; when it does not (a very flat distribution) the row
//                 is flagged and sampled on the host instead;
//   kHost         flagged at once and sampled on the host with
//                 kernels::SampleToken from a copy of that row's logits:
//                 top_k > kMaxDeviceCandidates (and < vocab).
// SamplingParams fields beyond {temperature, top_k, top_p, seed} (issue 14
// adds min_p, penalties, logit_bias, ...) are not handled on the device yet:
// PlanSampling refuses to compile until it is updated for them (a
// static_assert on the struct's size), so a new field can never be ignored
// silently on the GPU. Until the device handles one, route requests that use
// it to kHost.
#ifndef COLO_KERNELS_CUDA_SAMPLING_PLAN_H_
#define COLO_KERNELS_CUDA_SAMPLING_PLAN_H_

#include <cstdint>
#include <cstring>

#include "kernels/cpu/sampling.h"
#include "kernels/cuda/hd.h"

namespace colo::kernels::cuda {

inline constexpr int32_t kMaxDeviceCandidates = 1024;

enum SampleMode : int32_t {
  kSampleGreedy = 0,
  kSampleTemperature = 1,
  kSampleCandidates = 2,
  kSampleHost = 3,
};

// One row's parameters on the device (32 bytes).
struct DeviceSamplingParams {
  float temperature = 0.0f;
  float top_p = 1.0f;
  int32_t top_k = 0;  // already clamped: 0 = off
  int32_t mode = kSampleGreedy;
  uint64_t seed = 0;
  uint64_t step = 0;
};

// The device parameters of a request with `params` at draw `step`.
DeviceSamplingParams PlanSampling(const SamplingParams& params, uint64_t step, int64_t vocab);

// kernels::CounterUniform (kernels/cpu/sampling.cc), callable on the device.
// sampling_plan_test.cc checks the two agree bit for bit.
COLO_HD inline uint64_t SplitMix64Hd(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
COLO_HD inline double CounterUniformHd(uint64_t seed, uint64_t step) {
  const uint64_t bits = SplitMix64Hd(SplitMix64Hd(seed) ^ (step * 0xD1B54A32D192ED03ull));
  return static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0);
}

// Order-preserving map of a float to uint32: a < b exactly when
// OrderedKey(a) < OrderedKey(b), and -0 and +0 get the same key (they
// compare equal, so the CPU breaks their tie by index). NaN is unordered.
COLO_HD inline uint32_t OrderedKey(float f) {
  if (f == 0.0f) f = 0.0f;  // -0 -> +0
  uint32_t b;
  memcpy(&b, &f, sizeof(b));
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Candidate order: higher logit first, lower index among equals (the CPU's
// sort order).
COLO_HD inline bool CandidateBefore(float a_logit, int32_t a_index, float b_logit,
                                    int32_t b_index) {
  return a_logit > b_logit || (a_logit == b_logit && a_index < b_index);
}

// 8-bit digit `pass` (0 = most significant) of a key.
COLO_HD inline uint32_t RadixDigit(uint32_t key, int pass) {
  return (key >> (24 - 8 * pass)) & 0xFFu;
}

// Mask of the digits fixed before pass `pass` (0 for pass 0).
COLO_HD inline uint32_t RadixPrefixMask(int pass) {
  return pass == 0 ? 0u : ~((1u << (32 - 8 * pass)) - 1u);
}

// Given the digit histogram of the keys that match the prefix so far and the
// rank k (1-based: the k-th largest among them), the digit of the k-th
// largest key; *above receives how many of them have a larger digit.
COLO_HD inline uint32_t SelectDigit(const int32_t* histogram, int32_t k, int32_t* above) {
  int32_t acc = 0;
  for (int d = 255; d >= 0; --d) {
    if (acc + histogram[d] >= k) {
      *above = acc;
      return static_cast<uint32_t>(d);
    }
    acc += histogram[d];
  }
  *above = acc;
  return 0;
}

// The host simulation of the device algorithm (the same steps, sequential),
// used by the CPU tests to check it against kernels::SampleToken and by the
// GPU tests as a second reference. Returns the token, the logprob and
// whether the row must go to the host (then token/logprob are unspecified).
struct SimulatedSample {
  int32_t token = -1;
  float logprob = 0.0f;
  bool needs_host = false;
};
SimulatedSample SimulateDeviceSample(const float* logits, int64_t vocab,
                                     const DeviceSamplingParams& params);

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_SAMPLING_PLAN_H_
