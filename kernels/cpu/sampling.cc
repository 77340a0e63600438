#include "kernels/cpu/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace colo {
namespace kernels {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

double LogSumExp(const float* logits, int64_t n) {
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  if (!std::isfinite(mx)) return mx;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  return mx + std::log(sum);
}

void LogSoftmax(const float* logits, int64_t n, float* out) {
  const double lse = LogSumExp(logits, n);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(logits[i] - lse);
}

int32_t ArgMax(const float* logits, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

double CounterUniform(uint64_t seed, uint64_t step) {
  const uint64_t bits = SplitMix64(SplitMix64(seed) ^ (step * 0xD1B54A32D192ED03ull));
  return static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0);
}

SampledToken SampleToken(const float* logits, int64_t vocab,
                         const SamplingParams& params, uint64_t step) {
  SampledToken result;
  if (params.temperature <= 0.0f) {
    result.token = ArgMax(logits, vocab);
  } else if ((params.top_k <= 0 || params.top_k >= vocab) && params.top_p >= 1.0f) {
    // Plain temperature sampling needs no order: one O(vocab) pass (the
    // common RL rollout setting; sorting the vocabulary dominated otherwise).
    const double inv_t = 1.0 / params.temperature;
    const double mx = logits[ArgMax(logits, vocab)] * inv_t;
    double sum = 0.0;
    for (int64_t i = 0; i < vocab; ++i) sum += std::exp(logits[i] * inv_t - mx);
    const double target = CounterUniform(params.seed, step) * sum;
    double cum = 0.0;
    result.token = static_cast<int32_t>(vocab - 1);
    for (int64_t i = 0; i < vocab; ++i) {
      cum += std::exp(logits[i] * inv_t - mx);
      if (target < cum) {
        result.token = static_cast<int32_t>(i);
        break;
      }
    }
  } else {
    // Candidates sorted by logit descending (index ascending on ties).
    std::vector<int32_t> order(vocab);
    std::iota(order.begin(), order.end(), 0);
    auto cmp = [logits](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    };
    int64_t keep = vocab;
    if (params.top_k > 0 && params.top_k < vocab) {
      keep = params.top_k;
      std::partial_sort(order.begin(), order.begin() + keep, order.end(), cmp);
      order.resize(keep);
    } else {
      std::sort(order.begin(), order.end(), cmp);
    }
    const double inv_t = 1.0 / params.temperature;
    const double mx = logits[order[0]] * inv_t;
    std::vector<double> probs(keep);
    double sum = 0.0;
    for (int64_t i = 0; i < keep; ++i) {
      probs[i] = std::exp(logits[order[i]] * inv_t - mx);
      sum += probs[i];
    }
    for (double& p : probs) p /= sum;
    if (params.top_p < 1.0f) {
      double cum = 0.0;
      int64_t cut = keep;
      for (int64_t i = 0; i < keep; ++i) {
        cum += probs[i];
        if (cum >= params.top_p) {
          cut = i + 1;
          break;
        }
      }
      keep = cut;
      double s = 0.0;
      for (int64_t i = 0; i < keep; ++i) s += probs[i];
      for (int64_t i = 0; i < keep; ++i) probs[i] /= s;
    }
    const double u = CounterUniform(params.seed, step);
    double cum = 0.0;
    result.token = order[keep - 1];
    for (int64_t i = 0; i < keep; ++i) {
      cum += probs[i];
      if (u < cum) {
        result.token = order[i];
        break;
      }
    }
  }
  result.logprob =
      static_cast<float>(logits[result.token] - LogSumExp(logits, vocab));
  return result;
}

}  // namespace kernels
}  // namespace colo
