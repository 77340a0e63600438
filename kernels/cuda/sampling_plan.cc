#include "kernels/cuda/sampling_plan.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace colo::kernels::cuda {

// Tripwire: PlanSampling (and the device sampler) know exactly the fields
// {temperature, top_k, top_p, seed}. A new SamplingParams field changes the
// size; decide how the GPU treats it (implement it in SampleRows, or route
// requests that use it to kSampleHost below), then update the size here.
static_assert(sizeof(SamplingParams) == 24,
              "SamplingParams changed: update PlanSampling / the GPU sampler for the new "
              "field (route it to kSampleHost until the device implements it)");

DeviceSamplingParams PlanSampling(const SamplingParams& params, uint64_t step, int64_t vocab) {
  DeviceSamplingParams d;
  d.temperature = params.temperature;
  d.top_p = params.top_p;
  d.top_k = (params.top_k > 0 && params.top_k < vocab) ? params.top_k : 0;
  d.seed = params.seed;
  d.step = step;
  if (params.temperature <= 0.0f) {
    d.mode = kSampleGreedy;
  } else if (d.top_k == 0 && params.top_p >= 1.0f) {
    d.mode = kSampleTemperature;
  } else if (d.top_k > kMaxDeviceCandidates) {
    d.mode = kSampleHost;
  } else {
    d.mode = kSampleCandidates;
  }
  return d;
}

SimulatedSample SimulateDeviceSample(const float* logits, int64_t vocab,
                                     const DeviceSamplingParams& p) {
  SimulatedSample out;
  if (p.mode == kSampleHost) {
    out.needs_host = true;
    return out;
  }
  int32_t best = 0;
  for (int64_t i = 1; i < vocab; ++i) {
    if (logits[i] > logits[best]) best = static_cast<int32_t>(i);
  }
  double lse_max = -INFINITY;
  for (int64_t i = 0; i < vocab; ++i) lse_max = std::max<double>(lse_max, logits[i]);
  double lse = lse_max;
  if (std::isfinite(lse_max)) {
    double s = 0.0;
    for (int64_t i = 0; i < vocab; ++i) s += std::exp(static_cast<double>(logits[i]) - lse_max);
    lse = lse_max + std::log(s);
  }
  auto finish = [&](int32_t token) {
    out.token = token;
    out.logprob = static_cast<float>(logits[token] - lse);
    return out;
  };
  if (p.mode == kSampleGreedy) return finish(best);
  const double inv_t = 1.0 / p.temperature;
  const double mx = logits[best] * inv_t;
  const double u = CounterUniformHd(p.seed, p.step);
  if (p.mode == kSampleTemperature) {
    double sum = 0.0;
    for (int64_t i = 0; i < vocab; ++i) sum += std::exp(logits[i] * inv_t - mx);
    const double target = u * sum;
    double cum = 0.0;
    for (int64_t i = 0; i < vocab; ++i) {
      cum += std::exp(logits[i] * inv_t - mx);
      if (target < cum) return finish(static_cast<int32_t>(i));
    }
    return finish(static_cast<int32_t>(vocab - 1));
  }
  // kSampleCandidates: radix-select the K-th best key, gather, sort.
  const int32_t k_total = p.top_k > 0 ? p.top_k
                                      : static_cast<int32_t>(std::min<int64_t>(
                                            kMaxDeviceCandidates, vocab));
  uint32_t prefix = 0;
  int32_t k = k_total;
  for (int pass = 0; pass < 4; ++pass) {
    int32_t hist[256] = {};
    const uint32_t mask = RadixPrefixMask(pass);
    for (int64_t i = 0; i < vocab; ++i) {
      const uint32_t key = OrderedKey(logits[i]);
      if ((key & mask) == prefix) ++hist[RadixDigit(key, pass)];
    }
    int32_t above = 0;
    const uint32_t digit = SelectDigit(hist, k, &above);
    k -= above;
    prefix |= digit << (24 - 8 * pass);
  }
  const uint32_t threshold = prefix;
  const int32_t need_equal = k;
  std::vector<std::pair<float, int32_t>> cand;
  int32_t equal_taken = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    const uint32_t key = OrderedKey(logits[i]);
    if (key > threshold) {
      cand.push_back({logits[i], static_cast<int32_t>(i)});
    } else if (key == threshold && equal_taken < need_equal) {
      cand.push_back({logits[i], static_cast<int32_t>(i)});
      ++equal_taken;
    }
  }
  std::sort(cand.begin(), cand.end(), [](const auto& a, const auto& b) {
    return CandidateBefore(a.first, a.second, b.first, b.second);
  });
  const int32_t n = static_cast<int32_t>(cand.size());
  std::vector<double> q(n);
  double norm = 0.0;
  for (int32_t i = 0; i < n; ++i) {
    q[i] = std::exp(cand[i].first * inv_t - mx);
    if (p.top_k > 0) norm += q[i];
  }
  if (p.top_k == 0) {
    for (int64_t i = 0; i < vocab; ++i) norm += std::exp(logits[i] * inv_t - mx);
  }
  for (double& x : q) x /= norm;
  int32_t cut = n;
  if (p.top_p < 1.0f) {
    double cum = 0.0;
    cut = -1;
    for (int32_t i = 0; i < n; ++i) {
      cum += q[i];
      if (cum >= p.top_p) {
        cut = i + 1;
        break;
      }
    }
    if (cut < 0) {
      if (p.top_k == 0) {
        out.needs_host = true;  // the nucleus reaches past the candidates
        return out;
      }
      cut = n;
    }
    double s = 0.0;
    for (int32_t i = 0; i < cut; ++i) s += q[i];
    for (int32_t i = 0; i < cut; ++i) q[i] /= s;
  }
  double cum = 0.0;
  for (int32_t i = 0; i < cut; ++i) {
    cum += q[i];
    if (u < cum) return finish(cand[i].second);
  }
  return finish(cand[cut - 1].second);
}

}  // namespace colo::kernels::cuda
