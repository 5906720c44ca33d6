// AVX2 grouped-query attention: the query heads of one KV head against the same f16 cache rows,
// each row loaded and converted once for all of them. Every (head, row) score and every output
// element takes exactly the operations of the single-head kernels (attention_avx2.cc, and
// dot_f32_f16 / axpy_f16 in vec_dot_avx2.cc): a score is the 8-lane fma chain over the row in
// element order, reduced by reduce8x8 and multiplied by scale; an output element is one fma per
// row, rows in order. Only the loads and conversions are shared.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "tensor/attention_avx2_util.h"
#include "tensor/kernels_impl.h"

namespace kvstash::detail {

namespace {

// Accumulator m, or zeros past the last one.
template <int m, int M>
KV_AVX2 KV_INLINE __m256 at(const __m256 (&acc)[M]) {
  if constexpr (m < M) return acc[m];
  else return _mm256_setzero_ps();
}

// Scores of H heads x R consecutive rows: H * R <= 12 independent fma chains (enough to hide the
// fma latency), reduced 8 at a time.
template <int H, int R>
KV_AVX2 KV_INLINE void scores_tile(const float* q, int64_t q_stride, const uint16_t* rows, int64_t dim,
                                   __m256 scale, float* scores, int64_t s_stride) {
  constexpr int M = H * R;
  static_assert(M <= 12);
  __m256 acc[M];
#pragma GCC unroll 12
  for (int m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
  for (int64_t i = 0; i < dim; i += 8) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 v = load_f16x8(rows + r * dim + i);
#pragma GCC unroll 8
      for (int h = 0; h < H; ++h)
        acc[h * R + r] = _mm256_fmadd_ps(_mm256_loadu_ps(q + h * q_stride + i), v, acc[h * R + r]);
    }
  }
  alignas(32) float s[16];
  _mm256_store_ps(s, _mm256_mul_ps(reduce8(at<0>(acc), at<1>(acc), at<2>(acc), at<3>(acc), at<4>(acc),
                                           at<5>(acc), at<6>(acc), at<7>(acc)),
                                   scale));
  if constexpr (M > 8) {
    const __m256 z = _mm256_setzero_ps();
    _mm256_store_ps(s + 8, _mm256_mul_ps(reduce8(at<8>(acc), at<9>(acc), at<10>(acc), at<11>(acc), z, z, z, z),
                                         scale));
  }
#pragma GCC unroll 8
  for (int h = 0; h < H; ++h)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) scores[h * s_stride + r] = s[h * R + r];
}

// Rows per tile for H heads: at least 8 chains where the heads allow, R dividing 32 (the default
// cache block) so that whole blocks need no single-row tail.
template <int H>
constexpr int tile_rows = H == 1 ? 8 : H <= 3 ? 4 : H <= 6 ? 2 : 1;

// H heads over all n rows: tiles of tile_rows<H>, then single rows.
template <int H>
KV_AVX2 void scores_heads(const float* q, int64_t q_stride, const uint16_t* rows, int64_t n, int64_t dim,
                          __m256 scale, float* scores, int64_t s_stride) {
  constexpr int R = tile_rows<H>;
  int64_t j = 0;
  for (; j + R <= n; j += R)
    scores_tile<H, R>(q, q_stride, rows + j * dim, dim, scale, scores + j, s_stride);
  for (; j < n; ++j) scores_tile<H, 1>(q, q_stride, rows + j * dim, dim, scale, scores + j, s_stride);
}

// Output elements [i0, i0 + 8 * S) of H heads over all n rows, held in registers across rows.
template <int H, int S>
KV_AVX2 KV_INLINE void values_slice(const float* p, int64_t p_stride, const uint16_t* rows, int64_t n,
                                 int64_t dim, int64_t i0, float* out, int64_t out_stride) {
  __m256 o[H][S];
#pragma GCC unroll 8
  for (int h = 0; h < H; ++h)
#pragma GCC unroll 8
    for (int s = 0; s < S; ++s) o[h][s] = _mm256_loadu_ps(out + h * out_stride + i0 + 8 * s);
  for (int64_t j = 0; j < n; ++j) {
    __m256 a[H];
#pragma GCC unroll 8
    for (int h = 0; h < H; ++h) a[h] = _mm256_broadcast_ss(p + h * p_stride + j);
    const uint16_t* row = rows + j * dim + i0;
#pragma GCC unroll 8
    for (int s = 0; s < S; ++s) {
      const __m256 v = load_f16x8(row + 8 * s);
#pragma GCC unroll 8
      for (int h = 0; h < H; ++h) o[h][s] = _mm256_fmadd_ps(a[h], v, o[h][s]);
    }
  }
#pragma GCC unroll 8
  for (int h = 0; h < H; ++h)
#pragma GCC unroll 8
    for (int s = 0; s < S; ++s) _mm256_storeu_ps(out + h * out_stride + i0 + 8 * s, o[h][s]);
}

// H heads: slices of S vectors (H * S + H + 1 registers at most 16), then single vectors.
template <int H>
KV_AVX2 void values_heads(const float* p, int64_t p_stride, const uint16_t* rows, int64_t n, int64_t dim,
                          float* out, int64_t out_stride) {
  constexpr int S = H == 1 ? 8 : H == 4 ? 2 : 4;
  int64_t i0 = 0;
  for (; i0 + 8 * S <= dim; i0 += 8 * S) values_slice<H, S>(p, p_stride, rows, n, dim, i0, out, out_stride);
  for (; i0 < dim; i0 += 8) values_slice<H, 1>(p, p_stride, rows, n, dim, i0, out, out_stride);
}

}  // namespace

KV_AVX2 bool attention_scores_f16_group_avx2(const float* q, int64_t q_stride, int heads, const uint16_t* rows,
                                             int64_t n, int64_t dim, float scale, float* scores,
                                             int64_t s_stride) {
  if (dim % 8 != 0) return false;
  const __m256 vs = _mm256_set1_ps(scale);
  for (int h0 = 0; h0 < heads; h0 += 8) {
    const float* qh = q + h0 * q_stride;
    float* sh = scores + h0 * s_stride;
    switch (std::min(8, heads - h0)) {
      case 1: scores_heads<1>(qh, q_stride, rows, n, dim, vs, sh, s_stride); break;
      case 2: scores_heads<2>(qh, q_stride, rows, n, dim, vs, sh, s_stride); break;
      case 3: scores_heads<3>(qh, q_stride, rows, n, dim, vs, sh, s_stride); break;
      case 4: scores_heads<4>(qh, q_stride, rows, n, dim, vs, sh, s_stride); break;
      case 5: scores_heads<5>(qh, q_stride, rows, n, dim, vs, sh, s_stride); break;
      case 6: scores_heads<6>(qh, q_stride, rows, n, dim, vs, sh, s_stride); break;
      case 7: scores_heads<7>(qh, q_stride, rows, n, dim, vs, sh, s_stride); break;
      default: scores_heads<8>(qh, q_stride, rows, n, dim, vs, sh, s_stride); break;
    }
  }
  // GCC leaves the upper halves dirty on this path, and the caller's SSE code (softmax) would
  // run several times slower.
  _mm256_zeroupper();
  return true;
}

KV_AVX2 bool attention_values_f16_group_avx2(const float* p, int64_t p_stride, int heads, const uint16_t* rows,
                                             int64_t n, int64_t dim, float* out, int64_t out_stride) {
  if (dim % 8 != 0) return false;
  for (int h0 = 0; h0 < heads; h0 += 4) {
    const float* ph = p + h0 * p_stride;
    float* oh = out + h0 * out_stride;
    switch (std::min(4, heads - h0)) {
      case 1: values_heads<1>(ph, p_stride, rows, n, dim, oh, out_stride); break;
      case 2: values_heads<2>(ph, p_stride, rows, n, dim, oh, out_stride); break;
      case 3: values_heads<3>(ph, p_stride, rows, n, dim, oh, out_stride); break;
      default: values_heads<4>(ph, p_stride, rows, n, dim, oh, out_stride); break;
    }
  }
  _mm256_zeroupper();
  return true;
}

}  // namespace kvstash::detail
