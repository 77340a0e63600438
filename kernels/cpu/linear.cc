#include "kernels/cpu/linear.h"

#include <cblas.h>
#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/simd_reduce.h"

namespace colo {
namespace kernels {
namespace {

COLO_AVX2 inline float HorizontalSum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);                 // 4 lanes
  __m128 sh = _mm_movehl_ps(s, s);               // lanes 2,3
  s = _mm_add_ps(s, sh);                         // 0+2, 1+3
  sh = _mm_shuffle_ps(s, s, 0x55);               // lane 1
  s = _mm_add_ss(s, sh);
  return _mm_cvtss_f32(s);
}

COLO_AVX2 inline __m256i TailMask(int64_t rem) {
  alignas(32) static const int32_t kMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                0,  0,  0,  0,  0,  0,  0,  0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMask + 8 - rem));
}

// Computes an R x C tile: y[r][c] = dot(x_r, w_c). Every element uses one
// accumulator: acc = fma(x[k:k+8], w[k:k+8], acc) for k = 0, 8, ..., then a
// masked tail, then HorizontalSum. Identical for every R, C.
template <int R, int C>
COLO_AVX2 void TileAvx2(const float* x, int64_t ldx, const float* w,
                        int64_t ldw, int64_t k, float* out /*[R][C]*/) {
  __m256 acc[R][C];
  #pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 16
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  int64_t kk = 0;
  for (; kk + 8 <= k; kk += 8) {
    __m256 wv[C];
    #pragma GCC unroll 16
    for (int c = 0; c < C; ++c) wv[c] = _mm256_loadu_ps(w + c * ldw + kk);
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      __m256 xv = _mm256_loadu_ps(x + r * ldx + kk);
      #pragma GCC unroll 16
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
  if (kk < k) {
    __m256i mask = TailMask(k - kk);
    __m256 wv[C];
    #pragma GCC unroll 16
    for (int c = 0; c < C; ++c) wv[c] = _mm256_maskload_ps(w + c * ldw + kk, mask);
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      __m256 xv = _mm256_maskload_ps(x + r * ldx + kk, mask);
      #pragma GCC unroll 16
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
  #pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 16
    for (int c = 0; c < C; ++c) out[r * C + c] = HorizontalSum(acc[r][c]);
}

// Same contract as TileAvx2 with 16 lanes: per element one accumulator,
// masked tail, fixed reduction (reduce 16 -> 8 lanes, then HorizontalSum).
template <int R, int C>
COLO_AVX512 void TileAvx512(const float* x, int64_t ldx, const float* w,
                            int64_t ldw, int64_t k, float* out) {
  __m512 acc[R][C];
  #pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 16
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  int64_t kk = 0;
  for (; kk + 16 <= k; kk += 16) {
    __m512 wv[C];
    #pragma GCC unroll 16
    for (int c = 0; c < C; ++c) wv[c] = _mm512_loadu_ps(w + c * ldw + kk);
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      __m512 xv = _mm512_loadu_ps(x + r * ldx + kk);
      #pragma GCC unroll 16
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
  if (kk < k) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (k - kk)) - 1);
    __m512 wv[C];
    #pragma GCC unroll 16
    for (int c = 0; c < C; ++c) wv[c] = _mm512_maskz_loadu_ps(mask, w + c * ldw + kk);
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      __m512 xv = _mm512_maskz_loadu_ps(mask, x + r * ldx + kk);
      #pragma GCC unroll 16
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
  // Per element the fixed tree of simd_reduce.h. (Reducing 16 accumulators
  // at once with ReduceSixteen gives the same sums but measured no faster.)
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c) out[r * C + c] = ReduceOne(acc[r][c]);
}

float DotScalar(const float* a, const float* b, int64_t k) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t kk = 0;
  for (; kk + 8 <= k; kk += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[kk + l] * b[kk + l];
  for (int l = 0; kk + l < k; ++l) acc[l] += a[kk + l] * b[kk + l];
  float s0 = (acc[0] + acc[4]) + (acc[2] + acc[6]);
  float s1 = (acc[1] + acc[5]) + (acc[3] + acc[7]);
  return s0 + s1;
}

constexpr int kTileRows = 4;
constexpr int kTileCols = 4;
// AVX-512 tiles: 4 rows x 6 columns = 24 accumulators + 6 w + 1 x = 31 of
// the 32 zmm registers. (8 x 3 was 40% slower: 8 rows of x overflow L1.)
constexpr int kAvx512Rows = 4;
constexpr int kAvx512Cols = 6;
constexpr int64_t kAvx512XBlockBytes = 256 << 10;  // x rows kept in L2
constexpr int64_t kRowBlock = 64;  // rows of x kept hot while sweeping w

template <int R>
COLO_AVX2 void RowsAvx2(const float* x, int64_t k, const float* w, int64_t n0,
                        int64_t n1, float* y, int64_t ldy) {
  float tile[R * kTileCols];
  int64_t c = n0;
  for (; c + kTileCols <= n1; c += kTileCols) {
    TileAvx2<R, kTileCols>(x, k, w + c * k, k, k, tile);
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < kTileCols; ++j) y[r * ldy + c + j] = tile[r * kTileCols + j];
  }
  for (; c < n1; ++c) {
    TileAvx2<R, 1>(x, k, w + c * k, k, k, tile);
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) y[r * ldy + c] = tile[r];
  }
}

// One R x C tile of y at (row 0, column 0) of the given pointers.
template <int R, int C>
COLO_AVX512 void StoreTileAvx512(const float* x, int64_t k, const float* w, float* y,
                                 int64_t ldy) {
  float tile[R * C];
  TileAvx512<R, C>(x, k, w, k, k, tile);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int j = 0; j < C; ++j) y[r * ldy + j] = tile[r * C + j];
}

// Columns [0, C) of y for `rows` rows: the C rows of w (C * k floats) stay in
// L1 while the rows of x stream past, so w is read from memory once per row
// block, evenly over the block's compute.
template <int C>
COLO_AVX512 void ColumnsAvx512(const float* x, int64_t rows, int64_t k, const float* w,
                               float* y, int64_t ldy) {
  int64_t r = 0;
  for (; r + kAvx512Rows <= rows; r += kAvx512Rows)
    StoreTileAvx512<kAvx512Rows, C>(x + r * k, k, w, y + r * ldy, ldy);
  static_assert(kAvx512Rows == 4, "remainder cases below assume 4-row tiles");
  switch (rows - r) {
    case 3: StoreTileAvx512<3, C>(x + r * k, k, w, y + r * ldy, ldy); break;
    case 2: StoreTileAvx512<2, C>(x + r * k, k, w, y + r * ldy, ldy); break;
    case 1: StoreTileAvx512<1, C>(x + r * k, k, w, y + r * ldy, ldy); break;
    default: break;
  }
}

COLO_AVX512 void LinearRangeAvx512(const float* x, int64_t m, int64_t k,
                                   const float* w, int64_t n0, int64_t n1,
                                   float* y, int64_t n) {
  // Rows per block: their x (row_block * k floats) fits in ~256 KiB of L2;
  // blocks of equal size (multiples of the tile rows).
  const int64_t max_rows = std::max<int64_t>(
      kAvx512Rows, kAvx512XBlockBytes / (std::max<int64_t>(1, k) * int64_t{sizeof(float)}));
  const int64_t blocks = (m + max_rows - 1) / max_rows;
  const int64_t row_block =
      ((m + blocks - 1) / blocks + kAvx512Rows - 1) / kAvx512Rows * kAvx512Rows;
  for (int64_t rb = 0; rb < m; rb += row_block) {
    const int64_t rows = std::min(m, rb + row_block) - rb;
    int64_t c = n0;
    for (; c + kAvx512Cols <= n1; c += kAvx512Cols)
      ColumnsAvx512<kAvx512Cols>(x + rb * k, rows, k, w + c * k, y + rb * n + c, n);
    for (; c < n1; ++c) ColumnsAvx512<1>(x + rb * k, rows, k, w + c * k, y + rb * n + c, n);
  }
}

COLO_AVX512 float DotAvx512(const float* a, const float* b, int64_t k) {
  float out;
  TileAvx512<1, 1>(a, k, b, k, k, &out);
  return out;
}

COLO_AVX2 void LinearRangeAvx2(const float* x, int64_t m, int64_t k,
                               const float* w, int64_t n0, int64_t n1,
                               float* y, int64_t n) {
  for (int64_t rb = 0; rb < m; rb += kRowBlock) {
    int64_t re = std::min(m, rb + kRowBlock);
    // Sweep w in column blocks so a block of w stays in cache across rows.
    constexpr int64_t kColBlock = 64;
    for (int64_t cb = n0; cb < n1; cb += kColBlock) {
      int64_t ce = std::min(n1, cb + kColBlock);
      int64_t r = rb;
      for (; r + kTileRows <= re; r += kTileRows)
        RowsAvx2<kTileRows>(x + r * k, k, w, cb, ce, y + r * n, n);
      for (; r < re; ++r) RowsAvx2<1>(x + r * k, k, w, cb, ce, y + r * n, n);
    }
  }
}

void LinearRangeScalar(const float* x, int64_t m, int64_t k, const float* w,
                       int64_t n0, int64_t n1, float* y, int64_t n) {
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = n0; c < n1; ++c) y[r * n + c] = DotScalar(x + r * k, w + c * k, k);
}

COLO_AVX2 float DotAvx2(const float* a, const float* b, int64_t k) {
  float out;
  TileAvx2<1, 1>(a, k, b, k, k, &out);
  return out;
}

}  // namespace

bool LinearUsesAvx2() { return HasAvx2(); }

float DotProduct(const float* a, const float* b, int64_t k) {
  if (HasAvx512()) return DotAvx512(a, b, k);
  return HasAvx2() ? DotAvx2(a, b, k) : DotScalar(a, b, k);
}

void Linear(const float* x, int64_t m, int64_t k, const float* w, int64_t n,
            const float* bias, float* y, ThreadPool* pool) {
  if (m <= 0 || n <= 0) return;
  const bool avx512 = HasAvx512();
  const bool avx2 = HasAvx2();
  const int64_t unit = avx512 ? kAvx512Cols : kTileCols;  // columns per group
  auto body = [&](int64_t c0, int64_t c1) {
    // Work on columns [c0 * unit, c1 * unit).
    int64_t n0 = c0 * unit, n1 = std::min(n, c1 * unit);
    if (avx512) {
      LinearRangeAvx512(x, m, k, w, n0, n1, y, n);
    } else if (avx2) {
      LinearRangeAvx2(x, m, k, w, n0, n1, y, n);
    } else {
      LinearRangeScalar(x, m, k, w, n0, n1, y, n);
    }
    if (bias != nullptr) {
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = n0; c < n1; ++c) y[r * n + c] += bias[c];
    }
  };
  int64_t col_groups = (n + unit - 1) / unit;
  // Aim for chunks of >= ~64K multiply-adds.
  int64_t min_chunk = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, m * k * unit));
  if (pool == nullptr) {
    body(0, col_groups);
  } else {
    pool->ParallelFor(col_groups, min_chunk, body);
  }
}

void LinearBlas(const float* x, int64_t m, int64_t k, const float* w,
                int64_t n, const float* bias, float* y) {
  if (m <= 0 || n <= 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), 1.0f, x,
              static_cast<int>(k), w, static_cast<int>(k), 0.0f, y,
              static_cast<int>(n));
  if (bias != nullptr) {
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < n; ++c) y[r * n + c] += bias[c];
  }
}

}  // namespace kernels
}  // namespace colo
