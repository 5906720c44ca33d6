// AVX2 + FMA + F16C kernels. They reproduce the scalar kernels' bits: integer block sums are
// exact however they are computed; the float steps are the same operations in the same order,
// with the 8 lanes of the scalar code living in one __m256 (block b or element i -> lane b % 8
// or i % 8). Main loops take 8 blocks (or 8 floats) at a time. f16 values convert with F16C,
// which f16_test.cc proves bit-identical to the scalar conversions.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "tensor/avx2_util.h"
#include "tensor/float_kernels.h"
#include "tensor/kernels_impl.h"
#include "tensor/kquant_kernels.h"


namespace kvstash::detail {

namespace {

// The first 4 bytes of 8 consecutive blocks (stride bytes apart) as int32 lanes: the f16 scale
// d in the low half, and for q4_1 / q8_1 the second f16 field (m or s) in the high half.
KV_AVX2 inline __m128i heads4(const uint8_t* p, size_t s0, size_t s1, size_t s2, size_t s3) {
  __m128i v = _mm_cvtsi32_si128(load_i32(p + s0));
  v = _mm_insert_epi32(v, load_i32(p + s1), 1);
  v = _mm_insert_epi32(v, load_i32(p + s2), 2);
  return _mm_insert_epi32(v, load_i32(p + s3), 3);
}
KV_AVX2 inline __m256i heads8(const void* blocks, size_t stride) {
  const uint8_t* p = static_cast<const uint8_t*>(blocks);
  return _mm256_set_m128i(heads4(p, 4 * stride, 5 * stride, 6 * stride, 7 * stride),
                          heads4(p, 0, stride, 2 * stride, 3 * stride));
}
// For a last group of count < 8 blocks: lanes past the end repeat the last block (never read
// past the row; the caller discards those lanes).
KV_AVX2 inline __m256i heads_partial(const void* blocks, size_t stride, int count) {
  const uint8_t* p = static_cast<const uint8_t*>(blocks);
  const size_t last = size_t(count - 1) * stride;
  const size_t s1 = std::min(stride, last), s2 = std::min(2 * stride, last),
               s3 = std::min(3 * stride, last), s4 = std::min(4 * stride, last),
               s5 = std::min(5 * stride, last), s6 = std::min(6 * stride, last);
  return _mm256_set_m128i(heads4(p, s4, s5, s6, last), heads4(p, 0, s1, s2, s3));
}

// Lanes 0..count-1 of next, the others of acc.
KV_AVX2 inline __m256 first_lanes(__m256 next, __m256 acc, int count) {
  const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  return _mm256_blendv_ps(acc, next, _mm256_castsi256_ps(keep));
}

// a and b hold 8 f16 bit patterns each in the low 16 bits of their int32 lanes (high bits zero).
KV_AVX2 inline void f16_pairs_to_f32(__m256i a, __m256i b, __m256& fa, __m256& fb) {
  // packus per 128-bit half gives [a0-3 b0-3 | a4-7 b4-7]; the permute makes [a0-7 | b0-7].
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
  fa = _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
  fb = _mm256_cvtph_ps(_mm256_extracti128_si256(packed, 1));
}
KV_AVX2 inline __m256i low16(__m256i v) { return _mm256_and_si256(v, _mm256_set1_epi32(0xFFFF)); }

// The float step of 8 blocks: exactly fma_q8 / fma_q4_1 of kernels_impl.h, lane by lane.
KV_AVX2 inline __m256 step_q8(__m256 acc, __m256i xh, __m256i yh, __m256 isum) {
  __m256 dw, dx;
  f16_pairs_to_f32(low16(xh), low16(yh), dw, dx);
  return _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), isum, acc);
}
KV_AVX2 inline __m256 step_q4_1(__m256 acc, __m256i xh, __m256i yh, __m256 isum) {
  __m256 dw, mw, dx, sx;
  f16_pairs_to_f32(low16(xh), _mm256_srli_epi32(xh, 16), dw, mw);
  f16_pairs_to_f32(low16(yh), _mm256_srli_epi32(yh, 16), dx, sx);
  acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), isum, acc);
  return _mm256_fmadd_ps(mw, sx, acc);
}

// 16 packed bytes -> 32 bytes 0..15: low nibbles (elements 0..15), then high nibbles.
KV_AVX2 inline __m256i nibbles32(const uint8_t* qs) {
  // Both halves hold the 16 bytes; the upper half is shifted right by 4 (per 32-bit word, so a
  // neighbour's bits enter each byte's top nibble, which the mask clears).
  const __m256i q = _mm256_broadcastsi128_si256(load128(qs));
  const __m256i shifted = _mm256_srlv_epi32(q, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
  return _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F));
}

// Per-block integer dot products as 8 int32 partial sums (all exact: maddubs pairs stay
// within 2 * 15 * 128 for nibbles, 2 * 8 * 128 for the q4_0 offset).
KV_AVX2 inline __m256i isum_q4_0(const BlockQ4_0& x, const BlockQ8_0& y) {
  const __m256i a = load256(y.qs);  // (n - 8) * a = n * a - 8 * a, each exact in int16
  const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(nibbles32(x.qs), a),
                                     _mm256_maddubs_epi16(_mm256_set1_epi8(8), a));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}
KV_AVX2 inline __m256i isum_q4_1(const BlockQ4_1& x, const BlockQ8_1& y) {
  const __m256i p = _mm256_maddubs_epi16(nibbles32(x.qs), load256(y.qs));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}
KV_AVX2 inline __m256i isum_q8_0(const BlockQ8_0& x, const BlockQ8_0& y) {
  // Widen to int16 so every int8 pair (including -128 * -128) is exact.
  const __m256i p0 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(load128(x.qs)),
                                       _mm256_cvtepi8_epi16(load128(y.qs)));
  const __m256i p1 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(load128(x.qs + 16)),
                                       _mm256_cvtepi8_epi16(load128(y.qs + 16)));
  return _mm256_add_epi32(p0, p1);
}

// q5_0 / q5_1: the 32 fifth bits of qh (bit l belongs to element l) as 0x10 or 0 per byte.
// Each byte picks the qh byte holding its bit (byte l / 8), keeps bit l % 8, and the compare turns
// a set bit into 0xFF.
KV_AVX2 inline __m256i q5_high_bits(const uint8_t qh[4]) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(load_i32(qh)),
      _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(0x10));
}
// The unsigned 5-bit quants (0..31) of a q5_0 / q5_1 block, element order.
KV_AVX2 inline __m256i q5_quants(const uint8_t qh[4], const uint8_t qs[16]) {
  return _mm256_or_si256(nibbles32(qs), q5_high_bits(qh));
}
// (q - 16) * a = q * a - 16 * a; maddubs pairs stay within 2 * 31 * 128 and 2 * 16 * 128, and
// their difference within int16.
KV_AVX2 inline __m256i isum_q5_0(const BlockQ5_0& x, const BlockQ8_0& y) {
  const __m256i a = load256(y.qs);
  const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q5_quants(x.qh, x.qs), a),
                                     _mm256_maddubs_epi16(_mm256_set1_epi8(16), a));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}
KV_AVX2 inline __m256i isum_q5_1(const BlockQ5_1& x, const BlockQ8_1& y) {
  const __m256i p = _mm256_maddubs_epi16(q5_quants(x.qh, x.qs), load256(y.qs));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

// 32-element block types: 8 blocks per step, block b + k in lane k. A last group of count < 8
// blocks runs the same step (zero sums and repeated scales past the end) and then keeps the
// old value of lanes count..7.
template <typename WB, typename AB, __m256i (*Isum)(const WB&, const AB&),
          __m256 (*Step)(__m256, __m256i, __m256i, __m256)>
KV_AVX2 float dot_blocks(const void* w, const void* a, int64_t nb) {
  const WB* x = static_cast<const WB*>(w);
  const AB* y = static_cast<const AB*>(a);
  __m256 acc = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 8 <= nb; b += 8) {
    __m256i s[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) s[k] = Isum(x[b + k], y[b + k]);
    const __m256 isum = _mm256_cvtepi32_ps(hsum8_i32(s));
    acc = Step(acc, heads8(x + b, sizeof(WB)), heads8(y + b, sizeof(AB)), isum);
  }
  if (b < nb) {
    const int count = int(nb - b);
    __m256i s[8];
    for (int k = 0; k < 8; ++k) s[k] = k < count ? Isum(x[b + k], y[b + k]) : _mm256_setzero_si256();
    const __m256 isum = _mm256_cvtepi32_ps(hsum8_i32(s));
    const __m256 next = Step(acc, heads_partial(x + b, sizeof(WB), count),
                             heads_partial(y + b, sizeof(AB), count), isum);
    acc = first_lanes(next, acc, count);
  }
  alignas(32) float lane[8];
  _mm256_store_ps(lane, acc);
  return reduce_lanes(lane);
}

constexpr auto dot_q4_0 = dot_blocks<BlockQ4_0, BlockQ8_0, isum_q4_0, step_q8>;
constexpr auto dot_q4_1 = dot_blocks<BlockQ4_1, BlockQ8_1, isum_q4_1, step_q4_1>;
constexpr auto dot_q8_0 = dot_blocks<BlockQ8_0, BlockQ8_0, isum_q8_0, step_q8>;
// q5_0's step reads only d (the low half of its first 4 bytes; the high half is qh).
constexpr auto dot_q5_0 = dot_blocks<BlockQ5_0, BlockQ8_0, isum_q5_0, step_q8>;
constexpr auto dot_q5_1 = dot_blocks<BlockQ5_1, BlockQ8_1, isum_q5_1, step_q4_1>;

// k-quants: as in dot_blocks, the integer sums of 8 blocks reduce together (hsum8_i32) and their
// float steps (fma_k / fma_q6_K's ops, lane-wise) run as one vector.

// p (int16 products) times scale j of s (k4_scales's bytes in both halves), as int32.
KV_AVX2 KV_INLINE __m256i scaled(__m256i p, __m256i s, int j) {
  return _mm256_madd_epi16(p, _mm256_shuffle_epi8(s, _mm256_set1_epi32(w16(j))));
}

// sum_j sc_j * (quants of sub-block j . activations) as 8 lanes, 64 elements (two sub-blocks)
// per step.
KV_AVX2 KV_INLINE __m256i isum_k(const BlockQ4_K& x, const BlockQ8_K& y, __m256i s) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m256i q = load256(x.qs + 32 * c);
    const __m256i p0 = _mm256_maddubs_epi16(_mm256_and_si256(q, m4), load256(y.qs + 64 * c));
    const __m256i p1 = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                                            load256(y.qs + 64 * c + 32));
    acc = _mm256_add_epi32(acc, _mm256_add_epi32(scaled(p0, s, 2 * c), scaled(p1, s, 2 * c + 1)));
  }
  return acc;
}

KV_AVX2 KV_INLINE __m256i isum_k(const BlockQ5_K& x, const BlockQ8_K& y, __m256i s) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), b4 = _mm256_set1_epi8(0x10);
  const __m256i qh = load256(x.qh);
  __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m256i q = load256(x.qs + 32 * c);
    const __m256i bit0 = _mm256_set1_epi8(char(1 << (2 * c)));
    const __m256i bit1 = _mm256_set1_epi8(char(2 << (2 * c)));
    const __m256i h0 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit0), bit0), b4);
    const __m256i h1 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit1), bit1), b4);
    const __m256i u0 = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
    const __m256i u1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1);
    const __m256i p0 = _mm256_maddubs_epi16(u0, load256(y.qs + 64 * c));
    const __m256i p1 = _mm256_maddubs_epi16(u1, load256(y.qs + 64 * c + 32));
    acc = _mm256_add_epi32(acc, _mm256_add_epi32(scaled(p0, s, 2 * c), scaled(p1, s, 2 * c + 1)));
  }
  return acc;
}

// Bits Shift..Shift+1 of each qh byte, moved to bits 4..5 (the top of a 6-bit quant).
template <int Shift>
KV_AVX2 inline __m256i q6_high(__m256i qh) {
  const __m256i two = _mm256_and_si256(_mm256_srli_epi16(qh, Shift), _mm256_set1_epi8(0x03));
  return _mm256_slli_epi16(two, 4);
}

// sum_g sc_g * (unsigned 6-bit quants of group g . activations) as 8 lanes; 16-element groups.
KV_AVX2 KV_INLINE __m256i isum_q6_K(const BlockQ6_K& x, const BlockQ8_K& y) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    const __m256i ql0 = load256(x.ql + 64 * h), ql1 = load256(x.ql + 64 * h + 32);
    const __m256i qh = load256(x.qh + 32 * h);
    // groups 8h..8h+7 as int16 in both 128-bit halves
    const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_loadl_epi64(
        reinterpret_cast<const __m128i*>(x.scales + 8 * h))));
    const __m256i u[4] = {
        _mm256_or_si256(_mm256_and_si256(ql0, m4), q6_high<0>(qh)),
        _mm256_or_si256(_mm256_and_si256(ql1, m4), q6_high<2>(qh)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), q6_high<4>(qh)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), q6_high<6>(qh)),
    };
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      // groups 8h + 2k (bytes 0..15) and 8h + 2k + 1 (bytes 16..31): words 2k, 2k + 1 of sc
      const int32_t lo = 4 * k | (4 * k + 1) << 8, hi = (4 * k + 2) | (4 * k + 3) << 8;
      const __m256i pick = _mm256_setr_epi32(lo | lo << 16, lo | lo << 16, lo | lo << 16, lo | lo << 16,
                                             hi | hi << 16, hi | hi << 16, hi | hi << 16, hi | hi << 16);
      const __m256i p = _mm256_maddubs_epi16(u[k], load256(y.qs + 128 * h + 32 * k));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_shuffle_epi8(sc, pick)));
    }
  }
  return acc;
}
KV_AVX2 KV_INLINE __m256i offset_terms(const BlockQ6_K& x, const BlockQ8_K& y) {  // sum: sum_g sc_g bsum_g
  return _mm256_madd_epi16(_mm256_cvtepi8_epi16(load128(x.scales)), load256(y.bsums));
}

template <class Block>
KV_AVX2 float dot_k(const void* w, const void* a, int64_t nb) {
  const Block* x = static_cast<const Block*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; b += 8) {
    const int count = int(std::min<int64_t>(8, nb - b));
    __m256i is[8], ms[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      is[j] = ms[j] = _mm256_setzero_si256();
      if (j >= count) continue;
      const __m256i s = _mm256_broadcastsi128_si256(k4_scales(x[b + j].scales));
      is[j] = isum_k(x[b + j], y[b + j], s);
      ms[j] = min_terms(s, y[b + j]);
    }
    const __m256i dd = heads_partial(x + b, sizeof(Block), count);  // d | dmin << 16
    const __m256 dx = _mm256_castsi256_ps(heads_partial(y + b, sizeof(BlockQ8_K), count));
    __m256 d, dmin;
    f16_pairs_to_f32(low16(dd), _mm256_srli_epi32(dd, 16), d, dmin);
    __m256 next = _mm256_fmadd_ps(_mm256_mul_ps(d, dx), _mm256_cvtepi32_ps(hsum8_i32(is)), acc);
    next = _mm256_fmadd_ps(_mm256_xor_ps(_mm256_mul_ps(dmin, dx), _mm256_set1_ps(-0.0f)),
                           _mm256_cvtepi32_ps(hsum8_i32(ms)), next);
    acc = first_lanes(next, acc, count);
  }
  alignas(32) float lane[8];
  _mm256_store_ps(lane, acc);
  return reduce_lanes(lane);
}
constexpr auto dot_q4_K = dot_k<BlockQ4_K>;
constexpr auto dot_q5_K = dot_k<BlockQ5_K>;

KV_AVX2 float dot_q6_K(const void* w, const void* a, int64_t nb) {
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; b += 8) {
    const int count = int(std::min<int64_t>(8, nb - b));
    __m256i is[8], os[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      is[j] = os[j] = _mm256_setzero_si256();
      if (j >= count) continue;
      is[j] = isum_q6_K(x[b + j], y[b + j]);
      os[j] = offset_terms(x[b + j], y[b + j]);
    }
    const __m256i isum = _mm256_sub_epi32(hsum8_i32(is), _mm256_slli_epi32(hsum8_i32(os), 5));
    // d is the block's last two bytes: the high half of the dword ending there
    const __m256i dd = _mm256_srli_epi32(
        heads_partial(reinterpret_cast<const uint8_t*>(&x[b].d) - 2, sizeof(BlockQ6_K), count), 16);
    const __m256 d = _mm256_cvtph_ps(_mm_packus_epi32(_mm256_castsi256_si128(dd), _mm256_extracti128_si256(dd, 1)));
    const __m256 dx = _mm256_castsi256_ps(heads_partial(y + b, sizeof(BlockQ8_K), count));
    acc = first_lanes(_mm256_fmadd_ps(_mm256_mul_ps(d, dx), _mm256_cvtepi32_ps(isum), acc), acc, count);
  }
  alignas(32) float lane[8];
  _mm256_store_ps(lane, acc);
  return reduce_lanes(lane);
}

// Float rows: lane i % 8 is vector lane i % 8; the tail continues the same lanes.
KV_AVX2 inline __m256 load_f16x8(const uint16_t* p) { return _mm256_cvtph_ps(load128(p)); }
KV_AVX2 inline __m256 load_bf16x8(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(p)), 16));
}

KV_AVX2 float dot_f32(const float* a, const float* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  alignas(32) float lane[8];
  _mm256_store_ps(lane, acc);
  for (; i < n; ++i) lane[i % 8] = std::fma(a[i], b[i], lane[i % 8]);
  return reduce_lanes(lane);
}

KV_AVX2 float dot_f32_f16(const float* a, const uint16_t* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load_f16x8(b + i), acc);
  alignas(32) float lane[8];
  _mm256_store_ps(lane, acc);
  for (; i < n; ++i) lane[i % 8] = std::fma(a[i], _cvtsh_ss(b[i]), lane[i % 8]);
  return reduce_lanes(lane);
}

KV_AVX2 float dot_f32_bf16(const float* a, const uint16_t* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load_bf16x8(b + i), acc);
  alignas(32) float lane[8];
  _mm256_store_ps(lane, acc);
  for (; i < n; ++i) lane[i % 8] = std::fma(a[i], bf16_to_f32(b[i]), lane[i % 8]);
  return reduce_lanes(lane);
}

KV_AVX2 void axpy_f16(float alpha, const uint16_t* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, load_f16x8(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] = std::fma(alpha, _cvtsh_ss(x[i]), y[i]);
}

KV_AVX2 void f16_to_f32_row(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_f16x8(src + i));
  for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i]);
}

KV_AVX2 void f32_to_f16_row(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) dst[i] = uint16_t(_cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT));
}

}  // namespace

const KernelTable kAvx2Kernels = {
    .dot_q4_0 = dot_q4_0,
    .dot_q4_1 = dot_q4_1,
    .dot_q5_0 = dot_q5_0,
    .dot_q5_1 = dot_q5_1,
    .dot_q8_0 = dot_q8_0,
    .dot_q4_K = dot_q4_K,
    .dot_q5_K = dot_q5_K,
    .dot_q6_K = dot_q6_K,
    .dot_f32 = dot_f32,
    .dot_f32_f16 = dot_f32_f16,
    .dot_f32_bf16 = dot_f32_bf16,
    .axpy_f16 = axpy_f16,
    .f16_to_f32_row = f16_to_f32_row,
    .f32_to_f16_row = f32_to_f16_row,
    .quantize_q8_0 = quantize_q8_0_avx2,
    .quantize_q8_1 = quantize_q8_1_avx2,
    .quantize_q8_K = quantize_q8_K_avx2,
    .mm_q4_0 = matmul_q4_0_avx2,
    .mm_q4_1 = matmul_q4_1_avx2,
    .mm_q5_0 = matmul_q5_0_avx2,
    .mm_q5_1 = matmul_q5_1_avx2,
    .mm_q8_0 = matmul_q8_0_avx2,
    .mm_q4_K = matmul_q4_K_avx2,
    .mm_q5_K = matmul_q5_K_avx2,
    .mm_q6_K = matmul_q6_K_avx2,
    .mm_f32 = matmul_f32_avx2,
    .mm_f16 = matmul_f16_avx2,
    .mm_bf16 = matmul_bf16_avx2,
    .attention_scores_f16 = attention_scores_f16_avx2,
    .attention_values_f16 = attention_values_f16_avx2,
    .attention_scores_f16_group = attention_scores_f16_group_avx2,
    .attention_values_f16_group = attention_values_f16_group_avx2,
    .softmax = softmax_avx2,
};

}  // namespace kvstash::detail
