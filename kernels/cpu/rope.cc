#include "kernels/cpu/rope.h"

#include <algorithm>
#include <cmath>

namespace colo {
namespace kernels {

std::vector<double> RopeInverseFrequencies(int head_dim, double theta,
                                           const RopeScaling& scaling) {
  const int half = head_dim / 2;
  std::vector<double> inv(half);
  for (int i = 0; i < half; ++i) {
    inv[i] = 1.0 / std::pow(theta, static_cast<double>(2 * i) / head_dim);
  }
  if (scaling.type == RopeScaling::Type::kLinear) {
    for (double& f : inv) f /= scaling.factor;
  } else if (scaling.type == RopeScaling::Type::kYarn) {
    // transformers' _compute_yarn_parameters: dims below `low` keep the
    // original frequency (extrapolation), above `high` are divided by the
    // factor (interpolation), linear in between.
    const double dim = head_dim, base = theta,
                 original = scaling.original_max_position_embeddings;
    auto correction_dim = [&](double rotations) {
      return dim * std::log(original / (rotations * 2 * M_PI)) / (2 * std::log(base));
    };
    double low = correction_dim(scaling.beta_fast);
    double high = correction_dim(scaling.beta_slow);
    if (scaling.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, dim - 1);
    if (low == high) high += 0.001;
    for (int i = 0; i < half; ++i) {
      const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
      const double extrapolation = 1.0 - ramp;
      const double f = inv[i];
      inv[i] = f / scaling.factor * (1.0 - extrapolation) + f * extrapolation;
    }
  } else if (scaling.type == RopeScaling::Type::kLlama3) {
    const double old_len = scaling.original_max_position_embeddings;
    const double low_wavelen = old_len / scaling.low_freq_factor;
    const double high_wavelen = old_len / scaling.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_wavelen) {
        f = f / scaling.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (old_len / wavelen - scaling.low_freq_factor) /
                              (scaling.high_freq_factor - scaling.low_freq_factor);
        f = (1.0 - smooth) * f / scaling.factor + smooth * f;
      }
    }
  }
  return inv;
}

double RopeAttentionScaling(const RopeScaling& scaling) {
  if (scaling.type != RopeScaling::Type::kYarn) return 1.0;
  if (scaling.attention_factor > 0) return scaling.attention_factor;
  auto mscale = [](double scale, double m) {
    return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0;
  };
  if (scaling.mscale > 0 && scaling.mscale_all_dim > 0) {
    return mscale(scaling.factor, scaling.mscale) / mscale(scaling.factor, scaling.mscale_all_dim);
  }
  return mscale(scaling.factor, 1.0);
}

void RopeCosSin(const std::vector<double>& inv_freq, const int64_t* positions,
                int64_t num_positions, float* cos_out, float* sin_out,
                double attention_scaling) {
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  const float scale = static_cast<float>(attention_scaling);
  for (int64_t t = 0; t < num_positions; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      // Match the reference: the angle is formed in float32 (inv_freq is a
      // float32 tensor there and so is position * inv_freq).
      const float angle = static_cast<float>(positions[t]) *
                          static_cast<float>(inv_freq[i]);
      cos_out[t * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sin_out[t * half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
      if (scale != 1.0f) {
        cos_out[t * half + i] *= scale;
        sin_out[t * half + i] *= scale;
      }
    }
  }
}

void ApplyRope(float* x, int64_t num_tokens, int num_heads, int head_dim,
               const float* cos_table, const float* sin_table) {
  const int half = head_dim / 2;
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* c = cos_table + t * half;
    const float* s = sin_table + t * half;
    for (int h = 0; h < num_heads; ++h) {
      float* v = x + (t * num_heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * c[i] - b * s[i];
        v[i + half] = b * c[i] + a * s[i];
      }
    }
  }
}

}  // namespace kernels
}  // namespace colo
