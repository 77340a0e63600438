#include "kernels/cpu/matmul.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_features.h"

namespace colo {
namespace kernels {
namespace {

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

constexpr int kRows = 4;           // rows of x per register tile
constexpr int kAvx512Vecs = 6;     // 16-lane vectors per tile row (96 columns)
constexpr int kAvx2Vecs = 3;       // 8-lane vectors per tile row (24 columns)
constexpr int64_t kXBlockBytes = 256 << 10;  // rows of x kept in L2

// R rows x (C vectors of 16 columns) of y starting at column c0, with the
// last vector masked to `last_mask`. acc = fma(x, w, acc) over k in order.
template <int R, int C>
COLO_AVX512 void TileAvx512(const float* x, int64_t k, const float* w, int64_t n,
                            const float* bias, float* y, __mmask16 last_mask) {
  __m512 acc[R][C];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t i = 0; i < k; ++i) {
    const float* wi = w + i * n;
    __m512 wv[C];
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c) {
      wv[c] = c + 1 < C ? _mm512_loadu_ps(wi + 16 * c)
                        : _mm512_maskz_loadu_ps(last_mask, wi + 16 * c);
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_set1_ps(x[r * k + i]);
#pragma GCC unroll 16
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 16
  for (int c = 0; c < C; ++c) {
    const __mmask16 mask = c + 1 < C ? static_cast<__mmask16>(0xFFFF) : last_mask;
    const __m512 b = bias != nullptr ? _mm512_maskz_loadu_ps(mask, bias + 16 * c)
                                     : _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      __m512 v = acc[r][c];
      if (bias != nullptr) v = _mm512_add_ps(v, b);
      _mm512_mask_storeu_ps(y + r * n + 16 * c, mask, v);
    }
  }
}

// Rows [0, rows) of y for columns [c0, c0 + 16 * C) (the last vector masked).
template <int C>
COLO_AVX512 void ColumnsAvx512(const float* x, int64_t rows, int64_t k, const float* w,
                               int64_t n, const float* bias, float* y,
                               __mmask16 last_mask) {
  int64_t r = 0;
  for (; r + kRows <= rows; r += kRows)
    TileAvx512<kRows, C>(x + r * k, k, w, n, bias, y + r * n, last_mask);
  static_assert(kRows == 4, "remainder cases assume 4-row tiles");
  switch (rows - r) {
    case 3: TileAvx512<3, C>(x + r * k, k, w, n, bias, y + r * n, last_mask); break;
    case 2: TileAvx512<2, C>(x + r * k, k, w, n, bias, y + r * n, last_mask); break;
    case 1: TileAvx512<1, C>(x + r * k, k, w, n, bias, y + r * n, last_mask); break;
    default: break;
  }
}

COLO_AVX512 void RangeAvx512(const float* x, int64_t m, int64_t k, const float* w,
                             int64_t n, const float* bias, float* y, int64_t n0,
                             int64_t n1) {
  const int64_t max_rows = std::max<int64_t>(
      kRows, kXBlockBytes / (std::max<int64_t>(1, k) * int64_t{sizeof(float)}));
  for (int64_t rb = 0; rb < m; rb += max_rows) {
    const int64_t rows = std::min(m, rb + max_rows) - rb;
    const float* xb = x + rb * k;
    float* yb = y + rb * n;
    int64_t c = n0;
    for (; c + 16 * kAvx512Vecs <= n1; c += 16 * kAvx512Vecs) {
      ColumnsAvx512<kAvx512Vecs>(xb, rows, k, w + c, n, bias ? bias + c : nullptr, yb + c,
                                 0xFFFF);
    }
    // Remaining columns: vectors of 16, the last one masked.
    while (c < n1) {
      const int64_t left = n1 - c;
      const __mmask16 mask = left >= 16 ? static_cast<__mmask16>(0xFFFF)
                                        : static_cast<__mmask16>((1u << left) - 1);
      ColumnsAvx512<1>(xb, rows, k, w + c, n, bias ? bias + c : nullptr, yb + c, mask);
      c += 16;
    }
  }
}

template <int R, int C>
COLO_AVX2 void TileAvx2(const float* x, int64_t k, const float* w, int64_t n,
                        const float* bias, float* y) {
  __m256 acc[R][C];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  for (int64_t i = 0; i < k; ++i) {
    const float* wi = w + i * n;
    __m256 wv[C];
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c) wv[c] = _mm256_loadu_ps(wi + 8 * c);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_set1_ps(x[r * k + i]);
#pragma GCC unroll 16
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c) {
      __m256 v = acc[r][c];
      if (bias != nullptr) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + 8 * c));
      _mm256_storeu_ps(y + r * n + 8 * c, v);
    }
}

// The scalar chain: the same fma sequence as one vector lane.
void ScalarColumns(const float* x, int64_t rows, int64_t k, const float* w, int64_t n,
                   const float* bias, float* y, int64_t c0, int64_t c1) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = c0; c < c1; ++c) {
      float acc = 0.0f;
      for (int64_t i = 0; i < k; ++i) acc = std::fma(x[r * k + i], w[i * n + c], acc);
      y[r * n + c] = bias != nullptr ? acc + bias[c] : acc;
    }
  }
}

COLO_AVX2 void RangeAvx2(const float* x, int64_t m, int64_t k, const float* w, int64_t n,
                         const float* bias, float* y, int64_t n0, int64_t n1) {
  constexpr int64_t kCols = 8 * kAvx2Vecs;
  int64_t c = n0;
  for (; c + kCols <= n1; c += kCols) {
    int64_t r = 0;
    for (; r + kRows <= m; r += kRows)
      TileAvx2<kRows, kAvx2Vecs>(x + r * k, k, w + c, n, bias ? bias + c : nullptr,
                                 y + r * n + c);
    for (; r < m; ++r)
      TileAvx2<1, kAvx2Vecs>(x + r * k, k, w + c, n, bias ? bias + c : nullptr,
                             y + r * n + c);
  }
  for (; c + 8 <= n1; c += 8) {
    for (int64_t r = 0; r < m; ++r)
      TileAvx2<1, 1>(x + r * k, k, w + c, n, bias ? bias + c : nullptr, y + r * n + c);
  }
  ScalarColumns(x, m, k, w, n, bias, y, c, n1);
}

}  // namespace

void MatMul(const float* x, int64_t m, int64_t k, const float* w, int64_t n,
            const float* bias, float* y, ThreadPool* pool) {
  if (m <= 0 || n <= 0) return;
  const bool avx512 = HasAvx512(), avx2 = HasAvx2();
  // Work is split by column groups (96 / 24 / 8 columns), never by rows.
  const int64_t unit = avx512 ? 16 * kAvx512Vecs : avx2 ? 8 * kAvx2Vecs : 8;
  auto body = [&](int64_t g0, int64_t g1) {
    const int64_t n0 = g0 * unit, n1 = std::min(n, g1 * unit);
    if (avx512) {
      RangeAvx512(x, m, k, w, n, bias, y, n0, n1);
    } else if (avx2) {
      RangeAvx2(x, m, k, w, n, bias, y, n0, n1);
    } else {
      ScalarColumns(x, m, k, w, n, bias, y, n0, n1);
    }
  };
  const int64_t groups = (n + unit - 1) / unit;
  const int64_t min_chunk = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, m * k * unit));
  if (pool == nullptr) {
    body(0, groups);
  } else {
    pool->ParallelFor(groups, min_chunk, body);
  }
}

}  // namespace kernels
}  // namespace colo
