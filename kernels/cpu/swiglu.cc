#include "kernels/cpu/swiglu.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_features.h"

namespace colo {
namespace kernels {
namespace {

// AVX-512 intrinsics built on _mm512_undefined_* (min/max, roundscale,
// scalef) trip these in GCC 12 where they are inlined.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// exp(x) for 16 lanes: x = n ln2 + r with |r| <= ln2 / 2, a degree-6
// polynomial for exp(r) (the Cephes expf coefficients, ~2 ulp), then
// scaling by 2^n. x is clamped to [-88, 88] (silu needs no more).
COLO_AVX512 inline __m512 Exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-88.0f)), _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(y, n);
}

COLO_AVX512 void SwiGluAvx512(const float* gate_up, int64_t tokens, int64_t inter,
                              float* out) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* g = gate_up + t * 2 * inter;
    const float* u = g + inter;
    float* o = out + t * inter;
    for (int64_t i = 0; i < inter; i += 16) {
      const __mmask16 mask = inter - i >= 16
                                 ? static_cast<__mmask16>(0xFFFF)
                                 : static_cast<__mmask16>((1u << (inter - i)) - 1);
      const __m512 gv = _mm512_maskz_loadu_ps(mask, g + i);
      const __m512 uv = _mm512_maskz_loadu_ps(mask, u + i);
      const __m512 e = Exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv));
      const __m512 silu = _mm512_div_ps(gv, _mm512_add_ps(one, e));
      _mm512_mask_storeu_ps(o + i, mask, _mm512_mul_ps(silu, uv));
    }
  }
}

COLO_AVX512 void ClampedAvx512(const float* gate_up, int64_t tokens, int64_t inter,
                               float alpha, float limit, float* out) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 lim = _mm512_set1_ps(limit), neg_lim = _mm512_set1_ps(-limit);
  const __m512 alpha_v = _mm512_set1_ps(alpha);
  // Even lanes of (a, b) -> gate, odd lanes -> up.
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* gu = gate_up + t * 2 * inter;
    float* o = out + t * inter;
    for (int64_t i = 0; i < inter; i += 16) {
      const int64_t left = inter - i;
      const __mmask16 mask = left >= 16 ? static_cast<__mmask16>(0xFFFF)
                                        : static_cast<__mmask16>((1u << left) - 1);
      const int64_t left2 = 2 * left;
      const __mmask16 mask_a = left2 >= 16 ? static_cast<__mmask16>(0xFFFF)
                                           : static_cast<__mmask16>((1u << left2) - 1);
      const __mmask16 mask_b = left2 >= 32   ? static_cast<__mmask16>(0xFFFF)
                               : left2 <= 16 ? static_cast<__mmask16>(0)
                                             : static_cast<__mmask16>((1u << (left2 - 16)) - 1);
      const __m512 a = _mm512_maskz_loadu_ps(mask_a, gu + 2 * i);
      const __m512 b = _mm512_maskz_loadu_ps(mask_b, gu + 2 * i + 16);
      __m512 g = _mm512_permutex2var_ps(a, even, b);
      __m512 u = _mm512_permutex2var_ps(a, odd, b);
      g = _mm512_min_ps(g, lim);
      u = _mm512_max_ps(_mm512_min_ps(u, lim), neg_lim);
      const __m512 e = Exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(g, alpha_v)));
      const __m512 glu = _mm512_div_ps(g, _mm512_add_ps(one, e));
      _mm512_mask_storeu_ps(o + i, mask, _mm512_mul_ps(_mm512_add_ps(u, one), glu));
    }
  }
}

}  // namespace

void ClampedSwiGluInterleaved(const float* gate_up, int64_t tokens, int64_t inter,
                              float alpha, float limit, float* out) {
  if (HasAvx512()) return ClampedAvx512(gate_up, tokens, inter, alpha, limit, out);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* gu = gate_up + t * 2 * inter;
    float* o = out + t * inter;
    for (int64_t i = 0; i < inter; ++i) {
      const float g = std::min(gu[2 * i], limit);
      const float u = std::max(std::min(gu[2 * i + 1], limit), -limit);
      const float glu = g / (1.0f + std::exp(-(g * alpha)));
      o[i] = (u + 1.0f) * glu;
    }
  }
}

void SwiGlu(const float* gate_up, int64_t tokens, int64_t inter, float* out) {
  if (HasAvx512()) return SwiGluAvx512(gate_up, tokens, inter, out);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* g = gate_up + t * 2 * inter;
    const float* u = g + inter;
    float* o = out + t * inter;
    for (int64_t i = 0; i < inter; ++i) {
      const float silu = g[i] / (1.0f + std::exp(-g[i]));
      o[i] = silu * u[i];
    }
  }
}

}  // namespace kernels
}  // namespace colo
