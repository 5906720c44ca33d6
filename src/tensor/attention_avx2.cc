// AVX2 attention kernels over f16 cache rows, bit-identical to dot_f32_f16 / axpy_f16 called row
// by row (vec_dot_avx2.cc): the same fma chain per lane, the same lane reduction
// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)), the same fma per output element in row order.
#include <immintrin.h>

#include <cstdint>

#include "tensor/attention_avx2_util.h"
#include "tensor/kernels_impl.h"


namespace kvstash::detail {

namespace {

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
