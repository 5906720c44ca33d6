// Small AVX-512 helpers shared by the kernels of the avx512 level. As with AVX2, nothing is compiled
// with -mavx512*: each function carries KV_AVX512 and the kernel tables dispatch at run time. The
// level needs AVX-512 F, BW, VL, DQ and VNNI (Kernels::best_level), plus the AVX2 set.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "tensor/avx2_util.h"

// GCC 12's AVX-512 headers build casts and narrowing moves from _mm512_undefined_*(), which
// -Wuninitialized reports at every use (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define KV_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

namespace kvstash::detail {

KV_AVX512 inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }
// Two 32-byte pieces as one register, lo in the low half.
KV_AVX512 inline __m512i load2x256(const void* lo, const void* hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(load256(lo)), load256(hi), 1);
}
// Four 16-byte pieces as one register, p0 in the lowest 128 bits.
KV_AVX512 inline __m512i load4x128(const void* p0, const void* p1, const void* p2, const void* p3) {
  const __m256i lo = _mm256_inserti128_si256(_mm256_castsi128_si256(load128(p0)), load128(p1), 1);
  const __m256i hi = _mm256_inserti128_si256(_mm256_castsi128_si256(load128(p2)), load128(p3), 1);
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
// The same 32 bytes in both halves.
KV_AVX512 inline __m512i dup256(__m256i v) { return _mm512_broadcast_i64x4(v); }

// Sum of the 16 int32 lanes (exact, wrapping as int32 adds do).
KV_AVX512 inline int32_t hsum16_i32(__m512i v) {
  const __m256i s = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
  return _mm_cvtsi128_si32(s4);
}

// 16 f16 bit patterns, one in the low 16 bits of each int32 lane (high bits ignored), as f32.
KV_AVX512 inline __m512 f16_lanes_to_f32(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }

// Transposes 4x4 blocks of int32 within each 128-bit chunk: afterwards lane m of chunk c of z[j]
// is what lane j of chunk c of z[m] was.
KV_AVX512 inline void transpose4x4_in_chunks(__m512i z[4]) {
  const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
  z[0] = _mm512_unpacklo_epi64(t0, t2);
  z[1] = _mm512_unpackhi_epi64(t0, t2);
  z[2] = _mm512_unpacklo_epi64(t1, t3);
  z[3] = _mm512_unpackhi_epi64(t1, t3);
}

}  // namespace kvstash::detail
