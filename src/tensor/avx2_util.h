// Small AVX2 helpers shared by the kernels compiled for that target (no -mavx2 on the command line:
// each function carries the target attribute, and callers dispatch at run time).
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#define KV_AVX2 __attribute__((target("avx2,fma,f16c")))
// For helpers that must inline into the kernels' loops (GCC declines some larger ones at -O2).
#define KV_INLINE inline __attribute__((always_inline))

namespace kvstash::detail {

KV_AVX2 inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
KV_AVX2 inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
KV_AVX2 inline int32_t load_i32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
// Lane i of the result is the sum of the 8 int32 lanes of v[i] (exact).
KV_AVX2 inline __m256i hsum8_i32(const __m256i v[8]) {
  const __m256i t0 = _mm256_hadd_epi32(v[0], v[1]), t1 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i t2 = _mm256_hadd_epi32(v[4], v[5]), t3 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i u0 = _mm256_hadd_epi32(t0, t1);  // halves: v0..v3 partial sums
  const __m256i u1 = _mm256_hadd_epi32(t2, t3);  // halves: v4..v7 partial sums
  return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
}

}  // namespace kvstash::detail
