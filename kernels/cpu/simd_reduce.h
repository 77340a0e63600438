// Horizontal sums of AVX-512 vectors with one fixed addition tree, shared by
// the kernels whose results must not depend on how work is grouped.
//
// The tree for a 16-lane vector a is: b[i] = a[i] + a[i + 8] (8 lanes),
// c[i] = b[i] + b[i + 4], d[i] = c[i] + c[i + 2], sum = d[0] + d[1]. Both
// helpers below produce exactly that float sum for every vector, so a sum is
// bit-identical whichever helper computed it and whichever vectors shared the
// call. Callers must compile for AVX-512F (COLO_SIMD_AVX512 on the caller) and
// check the CPU before calling.
#ifndef COLO_KERNELS_CPU_SIMD_REDUCE_H_
#define COLO_KERNELS_CPU_SIMD_REDUCE_H_

#include <immintrin.h>

namespace colo {
namespace kernels {

#define COLO_SIMD_AVX512 __attribute__((target("avx512f,avx2,fma")))

// Several AVX-512 intrinsics (shuffles, permutes, 512 -> 256 casts) start
// from _mm512_undefined_*, which GCC 12 reports as (maybe-)uninitialized at
// the place they are inlined: files that use these helpers disable those two
// warnings for their AVX-512 code.

// The sum of one vector's 16 lanes.
COLO_SIMD_AVX512 inline float ReduceOne(__m512 a) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, a);
  const __m256 b = _mm256_add_ps(_mm256_load_ps(lanes), _mm256_load_ps(lanes + 8));
  __m128 c = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
  c = _mm_add_ps(c, _mm_movehl_ps(c, c));         // d0 = c0 + c2, d1 = c1 + c3
  c = _mm_add_ss(c, _mm_shuffle_ps(c, c, 0x55));  // d0 + d1
  return _mm_cvtss_f32(c);
}

// Lane j of the result is the sum of v[j]'s 16 lanes, for j = 0..15.
COLO_SIMD_AVX512 inline __m512 ReduceSixteen(const __m512* v) {
  __m512 u[8], w[4], z[2];
#pragma GCC unroll 8
  for (int p = 0; p < 8; ++p) {
    const __m512 a = v[2 * p], b = v[2 * p + 1];
    u[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
  }
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) {
    const __m512 a = u[2 * p], b = u[2 * p + 1];
    w[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
  }
#pragma GCC unroll 2
  for (int p = 0; p < 2; ++p) {
    const __m512 a = w[2 * p], b = w[2 * p + 1];
    z[p] = _mm512_add_ps(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
  }
  const __m512 s =
      _mm512_add_ps(_mm512_shuffle_ps(z[0], z[1], _MM_SHUFFLE(2, 0, 2, 0)),
                    _mm512_shuffle_ps(z[0], z[1], _MM_SHUFFLE(3, 1, 3, 1)));
  // The tree leaves v[j]'s sum in lane (j % 4) * 4 + j / 4; undo that.
  const __m512i order =
      _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, s);
}

}  // namespace kernels
}  // namespace colo

#endif  // COLO_KERNELS_CPU_SIMD_REDUCE_H_
