// AVX-512 (VNNI) dot products of one k-quant row with q8_K activations. Per super-block the
// integer sums are exact: vpdpbusd adds 4 products of unsigned quants and signed activation bytes
// per int32 lane (at most 4 * 63 * 128 in magnitude, so the lane also fits int16), and vpdpwssd
// multiplies each lane by its sub-block scale (int16 in the low half of the scale lane, zero in
// the high half) and accumulates, all in int32. The float step is the scalar one (fma_k /
// fma_q6_K into lane b % 8), so the result has the scalar kernels' bits.
#include <immintrin.h>

#include <cstring>

#include "tensor/kquant_kernels.h"


namespace kvstash::detail {

namespace {

KV_AVX512 inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }
KV_AVX512 inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
KV_AVX512 inline __m512i bcast256(const void* p) { return _mm512_broadcast_i64x4(load256(p)); }

// The exact sums of an int32 vector (16 lanes) and of a second one (8 lanes), together.
KV_AVX512 inline void hsum2(__m512i a, __m256i b, int32_t& sa, int32_t& sb) {
  const __m256i a8 = _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64(a, 1));
  __m256i t = _mm256_hadd_epi32(a8, b);  // a0+a1 a2+a3 b0+b1 b2+b3 | a4+a5 a6+a7 b4+b5 b6+b7
  t = _mm256_hadd_epi32(t, t);          // a0..3 b0..3 a0..3 b0..3 | a4..7 b4..7 ...
  const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
  sa = _mm_cvtsi128_si32(s);
  sb = _mm_extract_epi32(s, 1);
}

// The 8 scales and 8 mins of a q4_K / q5_K super-block as int32 lanes 0-7 and 8-15
// (unpack_k4_scales on 32-bit words).
KV_AVX512 inline __m512i k4_scales(const uint8_t* s) {
  uint32_t w[3];
  std::memcpy(w, s, 12);
  const uint32_t sc_lo = w[0] & 0x3F3F3F3F, mn_lo = w[1] & 0x3F3F3F3F;
  const uint32_t sc_hi = (w[2] & 0x0F0F0F0F) | ((w[0] >> 2) & 0x30303030);
  const uint32_t mn_hi = ((w[2] >> 4) & 0x0F0F0F0F) | ((w[1] >> 2) & 0x30303030);
  return _mm512_cvtepu8_epi32(_mm_setr_epi32(int(sc_lo), int(sc_hi), int(mn_lo), int(mn_hi)));
}

// Lanes 0-7: scale 2c, lanes 8-15: scale 2c + 1 (for the sums of sub-blocks 2c and 2c + 1).
KV_AVX512 inline __m512i pair_scales(__m512i scm, int c) {
  const __m512i idx = _mm512_set_epi32(2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1,
                                       2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c, 2 * c, 2 * c, 2 * c,
                                       2 * c, 2 * c, 2 * c, 2 * c);
  return _mm512_permutexvar_epi32(idx, scm);
}

// sum_j min_j * (bsum_2j + bsum_2j+1) as 8 int32 lanes: each int32 of bsums is a pair of int16,
// each lane of the multiplier holds min_j twice.
KV_AVX512 inline __m256i min_terms(__m512i scm, const BlockQ8_K& y) {
  const __m256i mn = _mm512_extracti64x4_epi64(scm, 1);
  return _mm256_madd_epi16(load256(y.bsums), _mm256_or_si256(mn, _mm256_slli_epi32(mn, 16)));
}

// Chunk c of a q4_K / q5_K super-block: 64 unsigned quants, sub-block 2c (low nibbles of
// qs[32c..32c+31]) then sub-block 2c + 1 (high nibbles), matching the activations' order.
KV_AVX512 inline __m512i nibbles64(const uint8_t* qs) {
  const __m512i shift = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
  return _mm512_and_si512(_mm512_srlv_epi64(bcast256(qs), shift), _mm512_set1_epi8(0x0F));
}

// Per super-block integer sums of one row, as vectors whose lanes add up to the sums.
// q4_K / q5_K: isum (16 lanes) from the scales in scm (k4_scales's layout); the min terms
// (min_terms) are separate.
KV_AVX512 inline __m512i isum_q4_K(const BlockQ4_K& x, const BlockQ8_K& y, __m512i scm) {
  __m512i acc = _mm512_setzero_si512();
  for (int c = 0; c < 4; ++c) {
    const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), nibbles64(x.qs + 32 * c), load512(y.qs + 64 * c));
    acc = _mm512_dpwssd_epi32(acc, p, pair_scales(scm, c));
  }
  return acc;
}

KV_AVX512 inline __m512i isum_q5_K(const BlockQ5_K& x, const BlockQ8_K& y, __m512i scm) {
  const __m512i qh = bcast256(x.qh);  // bit j of qh[l]: 5th bit of sub-block j, element l
  __m512i acc = _mm512_setzero_si512();
  for (int c = 0; c < 4; ++c) {
    const __m512i bits = _mm512_inserti64x4(_mm512_set1_epi8(char(1 << (2 * c))),
                                            _mm256_set1_epi8(char(2 << (2 * c))), 1);
    const __mmask64 high = _mm512_test_epi8_mask(qh, bits);
    const __m512i q = nibbles64(x.qs + 32 * c);
    const __m512i u = _mm512_mask_add_epi8(q, high, q, _mm512_set1_epi8(0x10));
    const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, load512(y.qs + 64 * c));
    acc = _mm512_dpwssd_epi32(acc, p, pair_scales(scm, c));
  }
  return acc;
}

// q6_K's 16 int8 scales as int16 (for the bsum offset) and as int16 in zero-extended int32 lanes.
struct Q6Scales {
  __m256i sc16;
  __m512i sc32;
};
KV_AVX512 inline Q6Scales q6_scales(const BlockQ6_K& x) {
  const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales)));
  return {sc16, _mm512_cvtepu16_epi32(sc16)};
}

// q6_K: sum_g sc_g * (unsigned quants of group g . activations), 16 lanes; the offset
// 32 * sum_g sc_g * bsum_g comes from offset_terms (8 lanes).
KV_AVX512 inline __m512i isum_q6_K(const BlockQ6_K& x, const BlockQ8_K& y, const Q6Scales& sc) {
  const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x03);
  __m512i acc = _mm512_setzero_si512();
  for (int h = 0; h < 2; ++h) {
    // Elements 128h + 0..63: low nibbles of ql[64h..64h+63], bits 0-1 (first 32) or 2-3 of
    // qh[32h + l] on top; elements 128h + 64..127: high nibbles, bits 4-5 or 6-7.
    const __m512i ql = load512(x.ql + 64 * h);
    const __m512i qh = bcast256(x.qh + 32 * h);
    const __m512i h01 = _mm512_srlv_epi64(qh, _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0));
    const __m512i h23 = _mm512_srlv_epi64(qh, _mm512_set_epi64(6, 6, 6, 6, 4, 4, 4, 4));
    const __m512i u[2] = {
        _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_slli_epi16(_mm512_and_si512(h01, m2), 4)),
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                        _mm512_slli_epi16(_mm512_and_si512(h23, m2), 4)),
    };
    for (int k = 0; k < 2; ++k) {
      const int g = 8 * h + 4 * k;  // groups g..g+3, 4 lanes each
      const __m512i idx = _mm512_set_epi32(g + 3, g + 3, g + 3, g + 3, g + 2, g + 2, g + 2, g + 2,
                                           g + 1, g + 1, g + 1, g + 1, g, g, g, g);
      const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[k], load512(y.qs + 128 * h + 64 * k));
      acc = _mm512_dpwssd_epi32(acc, p, _mm512_permutexvar_epi32(idx, sc.sc32));
    }
  }
  return acc;
}
KV_AVX512 inline __m256i offset_terms(const Q6Scales& sc, const BlockQ8_K& y) {  // sum: sum_g sc_g bsum_g
  return _mm256_madd_epi16(sc.sc16, load256(y.bsums));
}

KV_AVX512 float dot_q4_K(const void* w, const void* a, int64_t nb) {
  const BlockQ4_K* x = static_cast<const BlockQ4_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  float lane[8] = {};
  for (int64_t b = 0; b < nb; ++b) {
    const __m512i scm = k4_scales(x[b].scales);
    int32_t isum, msum;
    hsum2(isum_q4_K(x[b], y[b], scm), min_terms(scm, y[b]), isum, msum);
    fma_k(lane[b % 8], _cvtsh_ss(x[b].d), _cvtsh_ss(x[b].dmin), y[b].d, isum, msum);
  }
  return reduce_lanes(lane);
}

KV_AVX512 float dot_q5_K(const void* w, const void* a, int64_t nb) {
  const BlockQ5_K* x = static_cast<const BlockQ5_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  float lane[8] = {};
  for (int64_t b = 0; b < nb; ++b) {
    const __m512i scm = k4_scales(x[b].scales);
    int32_t isum, msum;
    hsum2(isum_q5_K(x[b], y[b], scm), min_terms(scm, y[b]), isum, msum);
    fma_k(lane[b % 8], _cvtsh_ss(x[b].d), _cvtsh_ss(x[b].dmin), y[b].d, isum, msum);
  }
  return reduce_lanes(lane);
}

KV_AVX512 float dot_q6_K(const void* w, const void* a, int64_t nb) {
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  float lane[8] = {};
  for (int64_t b = 0; b < nb; ++b) {
    const Q6Scales sc = q6_scales(x[b]);
    int32_t isum, osum;
    hsum2(isum_q6_K(x[b], y[b], sc), offset_terms(sc, y[b]), isum, osum);
    fma_q6_K(lane[b % 8], _cvtsh_ss(x[b].d), y[b].d, isum - 32 * osum);
  }
  return reduce_lanes(lane);
}

}  // namespace

float dot_q4_K_avx512(const void* w, const void* a, int64_t nb) { return dot_q4_K(w, a, nb); }
float dot_q5_K_avx512(const void* w, const void* a, int64_t nb) { return dot_q5_K(w, a, nb); }
float dot_q6_K_avx512(const void* w, const void* a, int64_t nb) { return dot_q6_K(w, a, nb); }

}  // namespace kvstash::detail
