// AVX2 helpers shared by the attention kernels (attention_avx2.cc, attention_group_avx2.cc).
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "tensor/avx2_util.h"

namespace kvstash::detail {

KV_AVX2 inline __m256 load_f16x8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Returns lane k = reduce_lanes(ak), that is ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)) of ak. The
// arguments are values, not an array, so that callers keep their accumulators in registers.
KV_AVX2 inline __attribute__((always_inline)) __m256 reduce8(__m256 a0, __m256 a1, __m256 a2, __m256 a3,
                                                            __m256 a4, __m256 a5, __m256 a6, __m256 a7) {
  // Transpose so that t[i] holds lane i of the 8 accumulators.
  const __m256 u0 = _mm256_unpacklo_ps(a0, a1), u1 = _mm256_unpackhi_ps(a0, a1);
  const __m256 u2 = _mm256_unpacklo_ps(a2, a3), u3 = _mm256_unpackhi_ps(a2, a3);
  const __m256 u4 = _mm256_unpacklo_ps(a4, a5), u5 = _mm256_unpackhi_ps(a4, a5);
  const __m256 u6 = _mm256_unpacklo_ps(a6, a7), u7 = _mm256_unpackhi_ps(a6, a7);
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

// reduce8 of a[0..7].
KV_AVX2 inline __m256 reduce8x8(const __m256 a[8]) {
  return reduce8(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
}

}  // namespace kvstash::detail
