// AVX-512 VNNI dot products of the 32-element block types, 16 blocks per step.
//
// Register layout: block 4c + m of a group sits in 128-bit chunk c of register m (m, c = 0..3); a
// weight block's low nibbles (elements 0..15) meet activation bytes 0..15 in one register and its
// high nibbles (elements 16..31) meet bytes 16..31 in another, and both vpdpbusd go into the same
// accumulator, so each block's exact int32 sum is spread over the 4 lanes of its chunk. A short
// unpack tree then gives the 16 block sums in block order, and the float steps follow fma_q8 /
// fma_q4_1: blocks 0-7 into lanes 0-7, then blocks 8-15 into the same lanes.
#include <immintrin.h>

#include <cstddef>

#include "tensor/avx512_util.h"
#include "tensor/kernels_impl.h"
#include "tensor/q32_avx512.h"

namespace kvstash::detail {

namespace {

constexpr int kGroup = 16;  // blocks per step

// Bytes [off, off + 16) of blocks m, 4 + m, 8 + m, 12 + m (stride bytes apart) in chunks 0..3; in a
// partial group (Full false) the chunks of blocks at or past count stay zero.
template <bool Full>
KV_AVX512 inline __m512i chunks(const uint8_t* p, size_t stride, int m, int count) {
  if constexpr (Full)
    return load4x128(p + m * stride, p + (4 + m) * stride, p + (8 + m) * stride, p + (12 + m) * stride);
  __m512i v = _mm512_setzero_si512();
  for (int c = 0; 4 * c + m < count; ++c)
    v = _mm512_mask_broadcast_i32x4(v, __mmask16(0xF << (4 * c)), load128(p + (4 * c + m) * stride));
  return v;
}

// The first 4 bytes (the f16 d, and m or s for the _1 types) of 16 blocks, one per int32 lane.
KV_AVX512 inline __m128i dwords4(const uint8_t* p, size_t stride) {
  __m128i v = _mm_cvtsi32_si128(load_i32(p));
  v = _mm_insert_epi32(v, load_i32(p + stride), 1);
  v = _mm_insert_epi32(v, load_i32(p + 2 * stride), 2);
  return _mm_insert_epi32(v, load_i32(p + 3 * stride), 3);
}
template <bool Full>
KV_AVX512 inline __m512i heads16(const void* blocks, size_t stride, int count) {
  const uint8_t* p = static_cast<const uint8_t*>(blocks);
  if constexpr (Full) {
    const __m256i lo = _mm256_set_m128i(dwords4(p + 4 * stride, stride), dwords4(p, stride));
    const __m256i hi = _mm256_set_m128i(dwords4(p + 12 * stride, stride), dwords4(p + 8 * stride, stride));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
  }
  __m512i v = _mm512_setzero_si512();
  for (int b = 0; b < count; ++b) v = _mm512_mask_set1_epi32(v, __mmask16(1u << b), load_i32(p + b * stride));
  return v;
}

// One activation group: bytes 0..15 (lo) and 16..31 (hi) of block 4c + m in chunk c of lo[m] /
// hi[m]; init[m]: -kOffset * (sum of those bytes), spread like the products it corrects; scales.
struct ActGroup {
  __m512i lo[4], hi[4], init[4];
  __m512 dx, sx;
};

template <class F, bool Full>
KV_AVX512 inline void load_act(const typename F::AB* y, int count, ActGroup& g) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(y);
  const size_t stride = sizeof(typename F::AB), qs = offsetof(typename F::AB, qs);
  for (int m = 0; m < 4; ++m) {
    g.lo[m] = chunks<Full>(p + qs, stride, m, count);
    g.hi[m] = chunks<Full>(p + qs + 16, stride, m, count);
    g.init[m] = _mm512_setzero_si512();
    if constexpr (F::kOffset != 0) {
      const __m512i off = _mm512_set1_epi8(char(F::kOffset));  // unsigned 8, 16 or 128
      const __m512i s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), off, g.lo[m]),
                                            off, g.hi[m]);
      g.init[m] = _mm512_sub_epi32(g.init[m], s);
    }
  }
  const __m512i h = heads16<Full>(y, stride, count);
  g.dx = f16_lanes_to_f32(h);
  if constexpr (F::kMin) g.sx = f16_lanes_to_f32(_mm512_srli_epi32(h, 16));
}

// q5: chunk c of qh holds (4 times) the qh word of block 4c + m. Byte l of a chunk gets 0x10 where
// bit l (lo: elements 0..15) or bit 16 + l (hi: elements 16..31) of that word is set.
KV_AVX512 inline void add_q5_bits(__m512i qh, __m512i& lo, __m512i& hi) {
  const __m512i bit = _mm512_set1_epi64(int64_t(0x8040201008040201));  // byte l: bit l % 8
  // Byte l of a chunk takes qh byte l / 8 (lo) or 2 + l / 8 (hi).
  const __m512i lo_bytes = _mm512_shuffle_epi8(qh, _mm512_set4_epi64(0x0101010101010101, 0, 0x0101010101010101, 0));
  const __m512i hi_bytes = _mm512_shuffle_epi8(
      qh, _mm512_set4_epi64(0x0303030303030303, 0x0202020202020202, 0x0303030303030303, 0x0202020202020202));
  const __m512i b4 = _mm512_set1_epi8(0x10);
  lo = _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(lo_bytes, bit), lo, b4);
  hi = _mm512_mask_add_epi8(hi, _mm512_test_epi8_mask(hi_bytes, bit), hi, b4);
}

// Weight bytes of register m (blocks m, 4 + m, 8 + m, 12 + m) as unsigned quants.
template <class F, bool Full>
KV_AVX512 inline void load_weights(const typename F::WB* x, int m, int count, __m512i& lo, __m512i& hi) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(x);
  const size_t stride = sizeof(typename F::WB), qs = offsetof(typename F::WB, qs);
  if constexpr (F::kQuants == Quants::Q8) {
    const __m512i flip = _mm512_set1_epi8(char(0x80));  // q + 128
    lo = _mm512_xor_si512(chunks<Full>(p + qs, stride, m, count), flip);
    hi = _mm512_xor_si512(chunks<Full>(p + qs + 16, stride, m, count), flip);
  } else {
    const __m512i q = chunks<Full>(p + qs, stride, m, count);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    lo = _mm512_and_si512(q, m4);
    hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
    if constexpr (F::kQuants == Quants::Q5) {
      // qh words of blocks m, 4 + m, .. in lanes 0..3, then each spread over its chunk.
      const uint8_t* h = p + offsetof(typename F::WB, qh) + m * stride;
      __m128i words = _mm_cvtsi32_si128(load_i32(h));
      if (Full || 4 + m < count) words = _mm_insert_epi32(words, load_i32(h + 4 * stride), 1);
      if (Full || 8 + m < count) words = _mm_insert_epi32(words, load_i32(h + 8 * stride), 2);
      if (Full || 12 + m < count) words = _mm_insert_epi32(words, load_i32(h + 12 * stride), 3);
      const __m512i qh = _mm512_permutexvar_epi32(
          _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3), _mm512_castsi128_si512(words));
      add_q5_bits(qh, lo, hi);
    }
  }
}

// The block sums of a group, lane b = block b (exact int32; zero past count).
template <class F, bool Full>
KV_AVX512 inline __m512i block_sums(const typename F::WB* x, int count, const ActGroup& g) {
  __m512i s[4];
  for (int m = 0; m < 4; ++m) {
    if (!Full && m >= count) {
      s[m] = _mm512_setzero_si512();
      continue;
    }
    __m512i lo, hi;
    load_weights<F, Full>(x, m, count, lo, hi);
    s[m] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(g.init[m], lo, g.lo[m]), hi, g.hi[m]);
  }
  // Chunk lanes of s01: [s0 l0+l2, s1 l0+l2, s0 l1+l3, s1 l1+l3]; then [s0, s1, s2, s3] per chunk.
  const __m512i s01 = _mm512_add_epi32(_mm512_unpacklo_epi32(s[0], s[1]), _mm512_unpackhi_epi32(s[0], s[1]));
  const __m512i s23 = _mm512_add_epi32(_mm512_unpacklo_epi32(s[2], s[3]), _mm512_unpackhi_epi32(s[2], s[3]));
  return _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23), _mm512_unpackhi_epi64(s01, s23));
}

// fma_q8 / fma_q4_1 for blocks 0-7 then 8-15 of a group; lanes of blocks past count keep their
// values (the scalar loop never touches them).
template <class F, bool Full>
KV_AVX512 inline __m256 group_step(__m256 acc, const typename F::WB* x, int count, const ActGroup& g) {
  const __m512i h = heads16<Full>(x, sizeof(typename F::WB), count);
  const __m512 scale = _mm512_mul_ps(f16_lanes_to_f32(h), g.dx);
  const __m512 fsum = _mm512_cvtepi32_ps(block_sums<F, Full>(x, count, g));
  const __mmask16 k = Full ? __mmask16(0xFFFF) : __mmask16((1u << count) - 1);
  const __mmask8 lo = __mmask8(k), hi = __mmask8(k >> 8);
  __m512 mw = _mm512_setzero_ps();
  if constexpr (F::kMin) mw = f16_lanes_to_f32(_mm512_srli_epi32(h, 16));
  acc = _mm256_mask3_fmadd_ps(_mm512_castps512_ps256(scale), _mm512_castps512_ps256(fsum), acc, lo);
  if constexpr (F::kMin)
    acc = _mm256_mask3_fmadd_ps(_mm512_castps512_ps256(mw), _mm512_castps512_ps256(g.sx), acc, lo);
  if (!Full && count <= 8) return acc;
  acc = _mm256_mask3_fmadd_ps(_mm512_extractf32x8_ps(scale, 1), _mm512_extractf32x8_ps(fsum, 1), acc, hi);
  if constexpr (F::kMin)
    acc = _mm256_mask3_fmadd_ps(_mm512_extractf32x8_ps(mw, 1), _mm512_extractf32x8_ps(g.sx, 1), acc, hi);
  return acc;
}

KV_AVX512 inline float reduce8(__m256 v) {
  alignas(32) float lane[8];
  _mm256_store_ps(lane, v);
  return reduce_lanes(lane);
}

// R weight rows (w, w_stride apart) against one activation row; each activation group is loaded
// once for the R rows. A last group of count < 16 blocks loads only its blocks.
template <class F, int R, bool Ahead = false>
KV_AVX512 void dot_rows(int64_t nb, const uint8_t* w, size_t w_stride, const void* act, float* out) {
  using WB = typename F::WB;
  const typename F::AB* y = static_cast<const typename F::AB*>(act);
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + kGroup <= nb; b += kGroup) {
    if constexpr (Ahead)
      for (int r = 0; r < R; ++r) prefetch_ahead(w + size_t(r) * w_stride + size_t(b) * sizeof(WB), kGroup * sizeof(WB));
    ActGroup g;
    load_act<F, true>(y + b, kGroup, g);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
      acc[r] = group_step<F, true>(acc[r], reinterpret_cast<const WB*>(w + size_t(r) * w_stride) + b, kGroup, g);
  }
  if (b < nb) {
    const int count = int(nb - b);
    ActGroup g;
    load_act<F, false>(y + b, count, g);
    for (int r = 0; r < R; ++r)
      acc[r] = group_step<F, false>(acc[r], reinterpret_cast<const WB*>(w + size_t(r) * w_stride) + b, count, g);
  }
  for (int r = 0; r < R; ++r) out[r] = reduce8(acc[r]);
}

template <class F>
KV_AVX512 float dot(const void* w, const void* a, int64_t nb) {
  float out;
  dot_rows<F, 1>(nb, static_cast<const uint8_t*>(w), 0, a, &out);
  return out;
}

template <class F>
KV_AVX512 void dot_rows_tiled(int64_t nb, const void* w, size_t w_stride, int64_t rows, const void* act,
                              float* out) {
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  const size_t row_bytes = size_t(nb) * sizeof(typename F::WB);
  int64_t r = 0;
  const bool wide = wide_rows(row_bytes);
  const int64_t ahead = prefetch_distance(row_bytes, 4);
  for (; r + 4 <= rows; r += 4) {
    if (r + ahead + 4 <= rows)
      for (const uint8_t* p = wb + size_t(r + ahead) * w_stride; p < wb + size_t(r + ahead + 3) * w_stride + row_bytes;
           p += 64)
        _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
    if (wide)
      dot_rows<F, 4, true>(nb, wb + size_t(r) * w_stride, w_stride, act, out + r);
    else
      dot_rows<F, 4>(nb, wb + size_t(r) * w_stride, w_stride, act, out + r);
  }
  for (; r < rows; ++r) dot_rows<F, 1>(nb, wb + size_t(r) * w_stride, w_stride, act, out + r);
}

}  // namespace

float dot_q4_0_avx512(const void* w, const void* a, int64_t nb) { return dot<FormatQ4_0>(w, a, nb); }
float dot_q4_1_avx512(const void* w, const void* a, int64_t nb) { return dot<FormatQ4_1>(w, a, nb); }
float dot_q5_0_avx512(const void* w, const void* a, int64_t nb) { return dot<FormatQ5_0>(w, a, nb); }
float dot_q5_1_avx512(const void* w, const void* a, int64_t nb) { return dot<FormatQ5_1>(w, a, nb); }
float dot_q8_0_avx512(const void* w, const void* a, int64_t nb) { return dot<FormatQ8_0>(w, a, nb); }

#define KV_DOT_ROWS_AVX512(name, Format)                                                               \
  void name(int64_t nb, const void* w, size_t w_stride, int64_t rows, const void* act, float* out) { \
    dot_rows_tiled<Format>(nb, w, w_stride, rows, act, out);                                          \
  }
KV_DOT_ROWS_AVX512(dot_rows_q4_0_avx512, FormatQ4_0)
KV_DOT_ROWS_AVX512(dot_rows_q4_1_avx512, FormatQ4_1)
KV_DOT_ROWS_AVX512(dot_rows_q5_0_avx512, FormatQ5_0)
KV_DOT_ROWS_AVX512(dot_rows_q5_1_avx512, FormatQ5_1)
KV_DOT_ROWS_AVX512(dot_rows_q8_0_avx512, FormatQ8_0)

}  // namespace kvstash::detail
