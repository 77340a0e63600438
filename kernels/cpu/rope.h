// Rotary position embedding (RoPE) in the Hugging Face "rotate_half" layout:
// for a head vector x of size head_dim = 2h and frequency f_i (i < h),
//   y[i]     = x[i]     * cos(p f_i) - x[i + h] * sin(p f_i)
//   y[i + h] = x[i + h] * cos(p f_i) + x[i]     * sin(p f_i).
//
// RopeInverseFrequencies computes f_i = theta^(-2i/head_dim), optionally
// rescaled (linear: f/factor; llama3: the Llama 3.1 piecewise rule; yarn:
// YaRN's blend of interpolated f/factor and extrapolated f over a linear
// ramp between the beta_fast / beta_slow correction dimensions, as
// transformers' _compute_yarn_parameters). YaRN also scales cos and sin by an
// attention factor (RopeAttentionScaling; 1 for the other types), which
// RopeCosSin applies. The cos/sin of p*f_i are computed in double and
// rounded to float. Thread-safe (pure functions).
#ifndef COLO_KERNELS_CPU_ROPE_H_
#define COLO_KERNELS_CPU_ROPE_H_

#include <cstdint>
#include <vector>

namespace colo {
namespace kernels {

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3, kYarn };
  Type type = Type::kNone;
  double factor = 1.0;
  // llama3 only.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  // llama3 and yarn.
  double original_max_position_embeddings = 8192;
  // yarn only. attention_factor <= 0: derived from factor (and mscale /
  // mscale_all_dim when both are > 0) as 0.1 * m * ln(factor) + 1.
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  bool truncate = true;
  double attention_factor = 0.0;
  double mscale = 0.0;
  double mscale_all_dim = 0.0;
};

// head_dim must be even. Returns head_dim / 2 frequencies.
std::vector<double> RopeInverseFrequencies(int head_dim, double theta,
                                           const RopeScaling& scaling);

// The factor cos and sin are multiplied by (YaRN's attention factor; 1.0 for
// every other type).
double RopeAttentionScaling(const RopeScaling& scaling);

// Fills cos/sin tables [num_positions][head_dim / 2] for `positions`, each
// multiplied by `attention_scaling` (in float, as transformers does).
void RopeCosSin(const std::vector<double>& inv_freq, const int64_t* positions,
                int64_t num_positions, float* cos_out, float* sin_out,
                double attention_scaling = 1.0);

// Rotates x in place: x is [num_tokens][num_heads][head_dim]; token t uses
// row t of the cos/sin tables ([num_tokens][head_dim / 2]).
void ApplyRope(float* x, int64_t num_tokens, int num_heads, int head_dim,
               const float* cos_table, const float* sin_table);

}  // namespace kernels
}  // namespace colo

#endif  // COLO_KERNELS_CPU_ROPE_H_
