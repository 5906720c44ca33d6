// AVX-512 (VNNI) dot products of one k-quant row with q8_K activations. Per super-block the
// integer sums are exact: vpdpbusd adds 4 products of unsigned quants and signed activation bytes
// per int32 lane (at most 4 * 63 * 128 in magnitude, so it packs to int16 exactly), and vpdpwssd
// multiplies the packed sums by their sub-block scales and accumulates, all in int32. Groups of
// 8 blocks reduce their sums together (block_sums8) and take the float step as one 8-lane
// vector: blocks 8k..8k+7 are lanes 0-7, and the vector ops are fma_k's / fma_q6_K's lane-wise,
// so the result has the scalar kernels' bits.
#include <immintrin.h>

#include <algorithm>

#include "tensor/kquant_kernels.h"


namespace kvstash::detail {

namespace {

KV_AVX512 inline __m512i bcast256(const void* p) { return dup256(load256(p)); }

// Chunk c of a q4_K / q5_K super-block: 64 unsigned quants, sub-block 2c (low nibbles of
// qs[32c..32c+31]) then sub-block 2c + 1 (high nibbles), matching the activations' order.
KV_AVX512 inline __m512i nibbles64(const uint8_t* qs) {
  const __m512i shift = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
  return _mm512_and_si512(_mm512_srlv_epi64(bcast256(qs), shift), _mm512_set1_epi8(0x0F));
}

// sum_j sc_j * (sub-block j's products) from the per-chunk products p[c] (lanes 0-7: sub-block
// 2c, 8-15: 2c + 1; each fits int16). Chunks 2q, 2q + 1 are packed to int16 together, so that
// 128-bit lane k holds sub-blocks 4q, 4q + 2 (k < 2) or 4q + 1, 4q + 3 (k >= 2), 4 words each.
KV_AVX512 KV_INLINE __m512i scale_chunks(const __m512i p[4], __m512i s) {
  __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 2
  for (int q = 0; q < 2; ++q) {
    const int a = 4 * q, b = 4 * q + 1;
    const __m512i pick = _mm512_setr_epi32(w16(a), w16(a), w16(a + 2), w16(a + 2), w16(a), w16(a), w16(a + 2),
                                           w16(a + 2), w16(b), w16(b), w16(b + 2), w16(b + 2), w16(b), w16(b),
                                           w16(b + 2), w16(b + 2));
    acc = _mm512_dpwssd_epi32(acc, _mm512_packs_epi32(p[2 * q], p[2 * q + 1]), _mm512_shuffle_epi8(s, pick));
  }
  return acc;
}

// Per super-block integer sums of one row, as vectors whose lanes add up to the sums.
// q4_K / q5_K: isum (16 lanes) from k4_scales's bytes in every 128-bit lane of s; the min terms
// (min_terms) are separate.
KV_AVX512 KV_INLINE __m512i isum_k(const BlockQ4_K& x, const BlockQ8_K& y, __m512i s) {
  __m512i p[4];
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c)
    p[c] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), nibbles64(x.qs + 32 * c), load512(y.qs + 64 * c));
  return scale_chunks(p, s);
}

KV_AVX512 KV_INLINE __m512i isum_k(const BlockQ5_K& x, const BlockQ8_K& y, __m512i s) {
  const __m512i qh = bcast256(x.qh);  // bit j of qh[l]: 5th bit of sub-block j, element l
  __m512i p[4];
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m512i bits = _mm512_inserti64x4(_mm512_set1_epi8(char(1 << (2 * c))),
                                            _mm256_set1_epi8(char(2 << (2 * c))), 1);
    const __mmask64 high = _mm512_test_epi8_mask(qh, bits);
    const __m512i q = nibbles64(x.qs + 32 * c);
    const __m512i u = _mm512_mask_add_epi8(q, high, q, _mm512_set1_epi8(0x10));
    p[c] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, load512(y.qs + 64 * c));
  }
  return scale_chunks(p, s);
}

// q6_K: sum_g sc_g * (unsigned quants of group g . activations), 16 lanes, from the 16 scales
// as int16 (sc16); the offset 32 * sum_g sc_g * bsum_g comes from offset_terms (8 lanes).
KV_AVX512 KV_INLINE __m512i isum_q6_K(const BlockQ6_K& x, const BlockQ8_K& y, __m256i sc16) {
  const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  constexpr auto w = [](int g) { return g | g << 16; };
  __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    // Elements 128h + 0..63: low nibbles of ql[64h..64h+63], bits 0-1 (first 32) or 2-3 of
    // qh[32h + l] on top; elements 128h + 64..127: high nibbles, bits 4-5 or 6-7. The 64-bit
    // shifts move qh's bits into bits 4-5 of the same byte (neighbour bits are masked off).
    const __m512i ql = load512(x.ql + 64 * h);
    const __m512i qh = bcast256(x.qh + 32 * h);
    const __m512i h01 = _mm512_and_si512(_mm512_sllv_epi64(qh, _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4)), m30);
    const __m512i h23 = _mm512_and_si512(_mm512_srlv_epi64(qh, _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0)), m30);
    const __m512i u0 = _mm512_ternarylogic_epi32(ql, h01, m4, 0xEC);  // (ql & m4) | h01
    const __m512i u1 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql, 4), h23, m4, 0xEC);
    const __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u0, load512(y.qs + 128 * h));
    const __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u1, load512(y.qs + 128 * h + 64));
    // 128-bit lane i of the packed sums: groups g = 8h + i, then g + 4 (4 words each)
    const int g = 8 * h;
    const __m512i pick = _mm512_setr_epi32(w(g), w(g), w(g + 4), w(g + 4), w(g + 1), w(g + 1), w(g + 5), w(g + 5),
                                           w(g + 2), w(g + 2), w(g + 6), w(g + 6), w(g + 3), w(g + 3), w(g + 7), w(g + 7));
    const __m512i sc = _mm512_permutexvar_epi16(pick, _mm512_castsi256_si512(sc16));
    acc = _mm512_dpwssd_epi32(acc, _mm512_packs_epi32(p0, p1), sc);
  }
  return acc;
}
KV_AVX512 KV_INLINE __m256i q6_scales(const BlockQ6_K& x) { return _mm256_cvtepi8_epi16(load128(x.scales)); }
KV_AVX512 KV_INLINE __m256i offset_terms(__m256i sc16, const BlockQ8_K& y) {  // sum: sum_g sc_g bsum_g
  return _mm256_madd_epi16(sc16, load256(y.bsums));
}

// The exact sums of 8 blocks' 16-lane vectors i[b] and 8-lane vectors m[b] at once: lanes 0-7
// the sums of i[0..7], lanes 8-15 those of m[0..7].
KV_AVX512 KV_INLINE __m512i block_sums8(const __m512i i[8], const __m256i m[8]) {
  __m512i x[4], z[4];
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k)  // x[k]: 8 partial sums of i[2k], then of i[2k + 1]
    x[k] = _mm512_add_epi32(_mm512_shuffle_i64x2(i[2 * k], i[2 * k + 1], 0x44),
                            _mm512_shuffle_i64x2(i[2 * k], i[2 * k + 1], 0xEE));
#pragma GCC unroll 2
  for (int k = 0; k < 2; ++k) {  // z[k], z[2 + k]: 4 partial sums of blocks 4k..4k+3
    const __m512i m0 = _mm512_inserti64x4(_mm512_castsi256_si512(m[4 * k]), m[4 * k + 1], 1);
    const __m512i m1 = _mm512_inserti64x4(_mm512_castsi256_si512(m[4 * k + 2]), m[4 * k + 3], 1);
    z[k] = _mm512_add_epi32(_mm512_shuffle_i32x4(x[2 * k], x[2 * k + 1], 0x88),
                            _mm512_shuffle_i32x4(x[2 * k], x[2 * k + 1], 0xDD));
    z[2 + k] = _mm512_add_epi32(_mm512_shuffle_i32x4(m0, m1, 0x88), _mm512_shuffle_i32x4(m0, m1, 0xDD));
  }
  transpose4x4_in_chunks(z);  // lane 4c + j of the sum: block c (j = 0, 2) or 4 + c (j = 1, 3)
  const __m512i s = _mm512_add_epi32(_mm512_add_epi32(z[0], z[1]), _mm512_add_epi32(z[2], z[3]));
  return _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), s);
}

// The dword at the start of the first 8 consecutive structs of Stride bytes that `keep` selects
// (zero for the others, which are not read).
template <int Stride>
KV_AVX512 inline __m256i gather8(const void* p, __mmask8 keep) {
  const __m256i idx = _mm256_setr_epi32(0, Stride, 2 * Stride, 3 * Stride, 4 * Stride, 5 * Stride, 6 * Stride, 7 * Stride);
  return _mm256_mmask_i32gather_epi32(_mm256_setzero_si256(), keep, idx, p, 1);
}
KV_AVX512 inline __m256 f16_low(__m256i v) { return _mm256_cvtph_ps(_mm256_cvtepi32_epi16(v)); }
KV_AVX512 inline __m256 neg(__m256 v) { return _mm256_xor_ps(v, _mm256_set1_ps(-0.0f)); }

// Blocks 8k..8k+7 are lanes 0-7: the float steps of a group of 8 blocks (fma_k's / fma_q6_K's
// ops, lane-wise) run as one 8-lane vector; in a last group of count < 8 blocks the lanes past
// count keep their value.
template <class Block>
KV_AVX512 float dot_k(const void* w, const void* a, int64_t nb) {
  const Block* x = static_cast<const Block*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; b += 8) {
    const int count = int(std::min<int64_t>(8, nb - b));
    const __mmask8 keep = __mmask8((1u << count) - 1);
    __m512i is[8];
    __m256i ms[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      is[j] = _mm512_setzero_si512(), ms[j] = _mm256_setzero_si256();
      if (j >= count) continue;
      const __m512i s = _mm512_broadcast_i32x4(k4_scales(x[b + j].scales));
      is[j] = isum_k(x[b + j], y[b + j], s);
      ms[j] = min_terms(_mm512_castsi512_si256(s), y[b + j]);
    }
    const __m512i s = block_sums8(is, ms);
    const __m256i dd = gather8<sizeof(Block)>(&x[b].d, keep);  // d | dmin << 16
    const __m256 dx = _mm256_castsi256_ps(gather8<sizeof(BlockQ8_K)>(&y[b].d, keep));
    acc = _mm256_mask3_fmadd_ps(_mm256_mul_ps(f16_low(dd), dx), _mm256_cvtepi32_ps(_mm512_castsi512_si256(s)),
                                acc, keep);
    acc = _mm256_mask3_fmadd_ps(neg(_mm256_mul_ps(f16_low(_mm256_srli_epi32(dd, 16)), dx)),
                                _mm256_cvtepi32_ps(_mm512_extracti64x4_epi64(s, 1)), acc, keep);
  }
  float lane[8];
  _mm256_storeu_ps(lane, acc);
  return reduce_lanes(lane);
}

KV_AVX512 float dot_q6_K(const void* w, const void* a, int64_t nb) {
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; b += 8) {
    const int count = int(std::min<int64_t>(8, nb - b));
    const __mmask8 keep = __mmask8((1u << count) - 1);
    __m512i is[8];
    __m256i os[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      is[j] = _mm512_setzero_si512(), os[j] = _mm256_setzero_si256();
      if (j >= count) continue;
      const __m256i sc16 = q6_scales(x[b + j]);
      is[j] = isum_q6_K(x[b + j], y[b + j], sc16);
      os[j] = offset_terms(sc16, y[b + j]);
    }
    const __m512i s = block_sums8(is, os);
    const __m256i isum = _mm256_sub_epi32(_mm512_castsi512_si256(s), _mm256_slli_epi32(_mm512_extracti64x4_epi64(s, 1), 5));
    // d is the block's last two bytes: the high half of the dword ending there
    const __m256i dd = gather8<sizeof(BlockQ6_K)>(reinterpret_cast<const uint8_t*>(&x[b].d) - 2, keep);
    const __m256 dx = _mm256_castsi256_ps(gather8<sizeof(BlockQ8_K)>(&y[b].d, keep));
    acc = _mm256_mask3_fmadd_ps(_mm256_mul_ps(f16_low(_mm256_srli_epi32(dd, 16)), dx), _mm256_cvtepi32_ps(isum),
                                acc, keep);
  }
  float lane[8];
  _mm256_storeu_ps(lane, acc);
  return reduce_lanes(lane);
}

}  // namespace

float dot_q4_K_avx512(const void* w, const void* a, int64_t nb) { return dot_k<BlockQ4_K>(w, a, nb); }
float dot_q5_K_avx512(const void* w, const void* a, int64_t nb) { return dot_k<BlockQ5_K>(w, a, nb); }
float dot_q6_K_avx512(const void* w, const void* a, int64_t nb) { return dot_q6_K(w, a, nb); }

}  // namespace kvstash::detail
