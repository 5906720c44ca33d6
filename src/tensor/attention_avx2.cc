// AVX2 attention kernels over f16 cache rows, bit-identical to dot_f32_f16 / axpy_f16 called row
// by row (vec_dot_avx2.cc): the same fma chain per lane, the same lane reduction
// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)), the same fma per output element in row order.
#include <immintrin.h>

#include <cstdint>

#include "tensor/avx2_util.h"
#include "tensor/kernels_impl.h"


namespace kvstash::detail {

namespace {

KV_AVX2 inline __m256 load_f16x8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// a[k] holds the 8 lanes of row k's accumulator; returns lane k = reduce_lanes(a[k]).
KV_AVX2 inline __m256 reduce8x8(const __m256 a[8]) {
  // Transpose so that t[i] holds lane i of the 8 rows.
  const __m256 u0 = _mm256_unpacklo_ps(a[0], a[1]), u1 = _mm256_unpackhi_ps(a[0], a[1]);
  const __m256 u2 = _mm256_unpacklo_ps(a[2], a[3]), u3 = _mm256_unpackhi_ps(a[2], a[3]);
  const __m256 u4 = _mm256_unpacklo_ps(a[4], a[5]), u5 = _mm256_unpackhi_ps(a[4], a[5]);
  const __m256 u6 = _mm256_unpacklo_ps(a[6], a[7]), u7 = _mm256_unpackhi_ps(a[6], a[7]);
  const __m256 v0 = _mm256_shuffle_ps(u0, u2, 0x44), v1 = _mm256_shuffle_ps(u0, u2, 0xEE);
  const __m256 v2 = _mm256_shuffle_ps(u1, u3, 0x44), v3 = _mm256_shuffle_ps(u1, u3, 0xEE);
  const __m256 v4 = _mm256_shuffle_ps(u4, u6, 0x44), v5 = _mm256_shuffle_ps(u4, u6, 0xEE);
  const __m256 v6 = _mm256_shuffle_ps(u5, u7, 0x44), v7 = _mm256_shuffle_ps(u5, u7, 0xEE);
  const __m256 t0 = _mm256_permute2f128_ps(v0, v4, 0x20), t4 = _mm256_permute2f128_ps(v0, v4, 0x31);
  const __m256 t1 = _mm256_permute2f128_ps(v1, v5, 0x20), t5 = _mm256_permute2f128_ps(v1, v5, 0x31);
  const __m256 t2 = _mm256_permute2f128_ps(v2, v6, 0x20), t6 = _mm256_permute2f128_ps(v2, v6, 0x31);
  const __m256 t3 = _mm256_permute2f128_ps(v3, v7, 0x20), t7 = _mm256_permute2f128_ps(v3, v7, 0x31);
  return _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(t0, t4), _mm256_add_ps(t2, t6)),
                       _mm256_add_ps(_mm256_add_ps(t1, t5), _mm256_add_ps(t3, t7)));
}

KV_AVX2 inline float reduce1(__m256 v) {
  alignas(32) float l[8];
  _mm256_store_ps(l, v);
  return reduce_lanes(l);
}

}  // namespace

KV_AVX2 bool attention_scores_f16_avx2(const float* q, const uint16_t* rows, int64_t n, int64_t dim,
                                       float scale, float* scores) {
  if (dim % 8 != 0 || dim > 256) return false;
  const int64_t nv = dim / 8;
  __m256 qv[32];
  for (int64_t i = 0; i < nv; ++i) qv[i] = _mm256_loadu_ps(q + 8 * i);
  const __m256 vs = _mm256_set1_ps(scale);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 acc[8];
    for (int k = 0; k < 8; ++k) acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nv; ++i)
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k)
        acc[k] = _mm256_fmadd_ps(qv[i], load_f16x8(rows + (j + k) * dim + 8 * i), acc[k]);
    _mm256_storeu_ps(scores + j, _mm256_mul_ps(reduce8x8(acc), vs));
  }
  for (; j < n; ++j) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nv; ++i) acc = _mm256_fmadd_ps(qv[i], load_f16x8(rows + j * dim + 8 * i), acc);
    scores[j] = reduce1(acc) * scale;
  }
  return true;
}

KV_AVX2 bool attention_values_f16_avx2(const float* p, const uint16_t* rows, int64_t n, int64_t dim,
                                       float* out) {
  if (dim % 8 != 0 || dim > 128) return false;
  const int64_t nv = dim / 8;
  __m256 o[16];
  for (int64_t i = 0; i < nv; ++i) o[i] = _mm256_loadu_ps(out + 8 * i);
  for (int64_t j = 0; j < n; ++j) {
    const __m256 a = _mm256_set1_ps(p[j]);
    for (int64_t i = 0; i < nv; ++i) o[i] = _mm256_fmadd_ps(a, load_f16x8(rows + j * dim + 8 * i), o[i]);
  }
  for (int64_t i = 0; i < nv; ++i) _mm256_storeu_ps(out + 8 * i, o[i]);
  return true;
}

}  // namespace kvstash::detail
