#include "kernels/cpu/swiglu.h"

#include <immintrin.h>

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

}  // namespace

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
