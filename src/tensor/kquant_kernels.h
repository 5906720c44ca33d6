// Kernels for the k-quant weights (q4_K, q5_K, q6_K with q8_K activations) beyond the AVX2 dot
// products of vec_dot_avx2.cc: the AVX2 tiled products, the AVX-512 dot and tiled products, and
// the SIMD q8_K activation quantizer. Every one keeps the scalar kernels' bits (kernels_impl.h):
// exact int32 sums inside a super-block, fma_k / fma_q6_K into lane b % 8, reduce_lanes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "tensor/avx512_util.h"
#include "tensor/kernels_impl.h"

namespace kvstash::detail {

#define KV_KQUANT_MATMUL(name)                                                                    \
  void name(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* act, \
            size_t act_stride, int64_t n, float* out, int64_t out_stride)

// AVX2 tiled products (matmul_kquant_avx2.cc).
KV_KQUANT_MATMUL(matmul_q4_K_avx2);
KV_KQUANT_MATMUL(matmul_q5_K_avx2);
KV_KQUANT_MATMUL(matmul_q6_K_avx2);

// AVX-512 (VNNI) dot products (vec_dot_kquant_avx512.cc); nb = number of super-blocks.
float dot_q4_K_avx512(const void* w, const void* a, int64_t nb);
float dot_q5_K_avx512(const void* w, const void* a, int64_t nb);
float dot_q6_K_avx512(const void* w, const void* a, int64_t nb);

// AVX-512 (VNNI) tiled products (matmul_kquant_avx512.cc).
KV_KQUANT_MATMUL(matmul_q4_K_avx512);
KV_KQUANT_MATMUL(matmul_q5_K_avx512);
KV_KQUANT_MATMUL(matmul_q6_K_avx512);

#undef KV_KQUANT_MATMUL

// Helpers of the AVX2 and AVX-512 dot products.

// pshufb control word: two int16 lanes that both take byte s, zero-extended.
constexpr int32_t w16(int s) { return int32_t(0x80008000u | uint32_t(s) | uint32_t(s) << 16); }

// The 8 scales and 8 mins of a q4_K / q5_K super-block as bytes 0-7 and 8-15
// (unpack_k4_scales on 32-bit words).
KV_AVX2 inline __m128i k4_scales(const uint8_t* s) {
  uint32_t w[3];
  std::memcpy(w, s, 12);
  const uint32_t sc_lo = w[0] & 0x3F3F3F3F, mn_lo = w[1] & 0x3F3F3F3F;
  const uint32_t sc_hi = (w[2] & 0x0F0F0F0F) | ((w[0] >> 2) & 0x30303030);
  const uint32_t mn_hi = ((w[2] >> 4) & 0x0F0F0F0F) | ((w[1] >> 2) & 0x30303030);
  return _mm_setr_epi32(int(sc_lo), int(sc_hi), int(mn_lo), int(mn_hi));
}

// sum_j min_j * (bsum_2j + bsum_2j+1) as 8 int32 lanes, from k4_scales's bytes in both halves
// of s: lane j of the multiplier holds min_j twice as int16.
KV_AVX2 inline __m256i min_terms(__m256i s, const BlockQ8_K& y) {
  const __m256i pick = _mm256_setr_epi32(w16(8), w16(9), w16(10), w16(11), w16(12), w16(13), w16(14), w16(15));
  return _mm256_madd_epi16(load256(y.bsums), _mm256_shuffle_epi8(s, pick));
}

}  // namespace kvstash::detail
