// Tiled AVX2 matrix products for the 32-element block types (q4_0, q4_1, q5_0, q5_1, q8_0): R weight
// rows x T activation rows at a time. Each (row, token) element is exactly vec_dot's AVX2 computation
// (vec_dot_avx2.cc dot_blocks): the same exact int32 block sums, the same float steps on the same
// lanes, the same partial-group blend and the same lane reduction; only the loads and the
// unpacking of quants and scales are shared across the tile.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "tensor/avx2_util.h"
#include "tensor/kernels_impl.h"


// GCC cannot see that the partial-group path reads staged blocks only below count.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace kvstash::detail {

namespace {

// The first 4 bytes of up to 8 blocks as int32 lanes; past count, the last block repeats.
KV_AVX2 inline __m256i heads(const uint8_t* p, size_t stride, int count) {
  size_t o[8];
  for (int k = 0; k < 8; ++k) o[k] = size_t(std::min(k, count - 1)) * stride;
  __m128i lo = _mm_cvtsi32_si128(load_i32(p + o[0]));
  lo = _mm_insert_epi32(lo, load_i32(p + o[1]), 1);
  lo = _mm_insert_epi32(lo, load_i32(p + o[2]), 2);
  lo = _mm_insert_epi32(lo, load_i32(p + o[3]), 3);
  __m128i hi = _mm_cvtsi32_si128(load_i32(p + o[4]));
  hi = _mm_insert_epi32(hi, load_i32(p + o[5]), 1);
  hi = _mm_insert_epi32(hi, load_i32(p + o[6]), 2);
  hi = _mm_insert_epi32(hi, load_i32(p + o[7]), 3);
  return _mm256_set_m128i(hi, lo);
}
// Lanes: the f16 in the low half of each int32 -> lo, the high half -> hi (as f32).
KV_AVX2 inline void split_f16(__m256i h, __m256& lo, __m256& hi) {
  const __m256i a = _mm256_and_si256(h, _mm256_set1_epi32(0xFFFF)), b = _mm256_srli_epi32(h, 16);
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
  lo = _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
  hi = _mm256_cvtph_ps(_mm256_extracti128_si256(packed, 1));
}
KV_AVX2 inline __m256i nibbles32(const uint8_t* qs) {
  const __m256i q = _mm256_broadcastsi128_si256(load128(qs));
  const __m256i shifted = _mm256_srlv_epi32(q, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
  return _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F));
}

// q5_0 / q5_1: nibbles32 plus the fifth bits of qh (bit l -> 0x10 in byte l), as vec_dot_avx2.cc.
KV_AVX2 inline __m256i q5_quants(const uint8_t qh[4], const uint8_t qs[16]) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(load_i32(qh)),
      _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  const __m256i high = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit),
                                        _mm256_set1_epi8(0x10));
  return _mm256_or_si256(nibbles32(qs), high);
}

struct Wide { __m256i lo, hi; };
// Activation bytes with the int16 pair sums of Offset * a (maddubs), which the offset types
// (q4_0: nibble - 8, q5_0: q5 - 16) subtract; computed once per activation block, not per row.
struct WithOffset { __m256i a, off; };
template <int Offset>
KV_AVX2 inline WithOffset with_offset(const int8_t* qs) {
  const __m256i a = load256(qs);
  return {a, _mm256_maddubs_epi16(_mm256_set1_epi8(Offset), a)};
}

// Per type: the weight block unpacked once (wprep), the activation block unpacked once (aprep),
// their exact int32 partial sums (prod), and vec_dot's float step (step_q8 / step_q4_1).

// q4_0: (n - 8) * a = n * a - 8 * a, int16 pairs within 2 * 15 * 128 and 2 * 8 * 128 (exact).
struct TraitsQ4_0 {
  using WB = BlockQ4_0;
  using AB = BlockQ8_0;
  using WP = __m256i;
  using AP = WithOffset;
  static KV_AVX2 inline WP wprep(const WB& x) { return nibbles32(x.qs); }
  static KV_AVX2 inline AP aprep(const AB& y) { return with_offset<8>(y.qs); }
  static KV_AVX2 inline __m256i prod(WP w, AP a) {
    const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(w, a.a), a.off);
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
  }
  static KV_AVX2 inline __m256 step(__m256 acc, __m256 dw, __m256, __m256 dx, __m256, __m256 isum) {
    return _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), isum, acc);
  }
};
struct TraitsQ4_1 {
  using WB = BlockQ4_1;
  using AB = BlockQ8_1;
  using WP = __m256i;
  using AP = __m256i;
  static KV_AVX2 inline WP wprep(const WB& x) { return nibbles32(x.qs); }
  static KV_AVX2 inline AP aprep(const AB& y) { return load256(y.qs); }
  static KV_AVX2 inline __m256i prod(WP w, AP a) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1));
  }
  static KV_AVX2 inline __m256 step(__m256 acc, __m256 dw, __m256 mw, __m256 dx, __m256 sx,
                                    __m256 isum) {
    acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), isum, acc);
    return _mm256_fmadd_ps(mw, sx, acc);
  }
};
// q5_0: (q - 16) * a = q * a - 16 * a, int16 pairs within 2 * 31 * 128 and 2 * 16 * 128, their
// difference within int16 (exact). The step reads only d (qh fills the high half of the heads).
struct TraitsQ5_0 {
  using WB = BlockQ5_0;
  using AB = BlockQ8_0;
  using WP = __m256i;
  using AP = WithOffset;
  static KV_AVX2 inline WP wprep(const WB& x) { return q5_quants(x.qh, x.qs); }
  static KV_AVX2 inline AP aprep(const AB& y) { return with_offset<16>(y.qs); }
  static KV_AVX2 inline __m256i prod(WP w, AP a) {
    const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(w, a.a), a.off);
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
  }
  static KV_AVX2 inline __m256 step(__m256 acc, __m256 dw, __m256, __m256 dx, __m256, __m256 isum) {
    return _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), isum, acc);
  }
};
struct TraitsQ5_1 : TraitsQ4_1 {  // q5_1: q5 * a, int16 pairs within 2 * 31 * 128
  using WB = BlockQ5_1;
  static KV_AVX2 inline WP wprep(const WB& x) { return q5_quants(x.qh, x.qs); }
};
struct TraitsQ8_0 {
  using WB = BlockQ8_0;
  using AB = BlockQ8_0;
  using WP = Wide;
  using AP = Wide;
  static KV_AVX2 inline Wide widen(const int8_t* q) {
    return {_mm256_cvtepi8_epi16(load128(q)), _mm256_cvtepi8_epi16(load128(q + 16))};
  }
  static KV_AVX2 inline WP wprep(const WB& x) { return widen(x.qs); }
  static KV_AVX2 inline AP aprep(const AB& y) { return widen(y.qs); }
  static KV_AVX2 inline __m256i prod(WP w, AP a) {
    return _mm256_add_epi32(_mm256_madd_epi16(w.lo, a.lo), _mm256_madd_epi16(w.hi, a.hi));
  }
  static KV_AVX2 inline __m256 step(__m256 acc, __m256 dw, __m256, __m256 dx, __m256, __m256 isum) {
    return _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), isum, acc);
  }
};

KV_AVX2 inline float reduce8(__m256 v) {
  alignas(32) float lane[8];
  _mm256_store_ps(lane, v);
  return reduce_lanes(lane);
}

// One group of up to 8 blocks (starting at block b) of an R x T tile. The unpacked quants of
// each row and token are staged once; then each (row, token) sums its 8 blocks exactly and takes
// the float step of dot_blocks, with the same blend for a partial last group.
template <class Tr, int R, int T, bool Full>
KV_AVX2 inline void tile_group(const uint8_t* w, size_t w_stride, const uint8_t* a, size_t a_stride,
                               int64_t b, int count, __m256 (&acc)[R][T]) {
  using WB = typename Tr::WB;
  using AB = typename Tr::AB;
  typename Tr::WP wp[R][8];
  typename Tr::AP ap[T][8];
  __m256 dw[R], mw[R], dx[T], sx[T];
  for (int r = 0; r < R; ++r) {
    const WB* x = reinterpret_cast<const WB*>(w + r * w_stride) + b;
    split_f16(heads(reinterpret_cast<const uint8_t*>(x), sizeof(WB), Full ? 8 : count), dw[r], mw[r]);
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k)
      if (Full || k < count) wp[r][k] = Tr::wprep(x[k]);
  }
  for (int t = 0; t < T; ++t) {
    const AB* y = reinterpret_cast<const AB*>(a + t * a_stride) + b;
    split_f16(heads(reinterpret_cast<const uint8_t*>(y), sizeof(AB), Full ? 8 : count), dx[t], sx[t]);
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k)
      if (Full || k < count) ap[t][k] = Tr::aprep(y[k]);
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      __m256i s[8];
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k)
        s[k] = (Full || k < count) ? Tr::prod(wp[r][k], ap[t][k]) : _mm256_setzero_si256();
      const __m256 next = Tr::step(acc[r][t], dw[r], mw[r], dx[t], sx[t],
                                   _mm256_cvtepi32_ps(hsum8_i32(s)));
      if (Full) {
        acc[r][t] = next;
      } else {
        const __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(
            _mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
        acc[r][t] = _mm256_blendv_ps(acc[r][t], next, keep);
      }
    }
}

// R rows (w, w_stride apart) x T activations (a, a_stride apart), nb blocks each.
template <class Tr, int R, int T, bool Ahead = false>
KV_AVX2 void tile(const uint8_t* w, size_t w_stride, const uint8_t* a, size_t a_stride, int64_t nb,
                  float* out, int64_t out_stride) {
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 8 <= nb; b += 8) {
    if constexpr (Ahead)
      for (int r = 0; r < R; ++r) prefetch_ahead(w + r * w_stride + size_t(b) * sizeof(typename Tr::WB), 8 * sizeof(typename Tr::WB));
    tile_group<Tr, R, T, true>(w, w_stride, a, a_stride, b, 8, acc);
  }
  if (b < nb) tile_group<Tr, R, T, false>(w, w_stride, a, a_stride, b, int(nb - b), acc);
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) out[t * out_stride + r] = reduce8(acc[r][t]);
}

constexpr int kRows = 4, kTokens = 8;
constexpr int64_t kTokenBlock = 64;  // activations of this many tokens stay in cache per pass

template <class Tr>
KV_AVX2 void matmul(int64_t nb, const uint8_t* w, size_t w_stride, int64_t r0, int64_t r1,
                    const uint8_t* act, size_t act_stride, int64_t n, float* out, int64_t out_stride) {
  const size_t row_bytes = size_t(nb) * sizeof(typename Tr::WB);
  const bool wide = wide_rows(row_bytes);
  const int64_t ahead = prefetch_distance(row_bytes, kRows);  // kernels_impl.h
  for (int64_t t0 = 0; t0 < n; t0 += kTokenBlock) {
    const int64_t t1 = std::min(n, t0 + kTokenBlock);
    for (int64_t r = r0; r < r1;) {
      const int rows = r + kRows <= r1 ? kRows : 1;
      const uint8_t* wr = w + size_t(r) * w_stride;
      if (t0 == 0) {  // first pass over these rows: fetch a later tile's rows from memory
        const int64_t p0 = std::min(r1, r + ahead), p1 = std::min(r1, r + ahead + rows);
        const char* pb = reinterpret_cast<const char*>(w + size_t(p0) * w_stride);
        const char* pe = reinterpret_cast<const char*>(w + size_t(p1) * w_stride);
        for (; pb < pe; pb += 64) _mm_prefetch(pb, _MM_HINT_T0);
      }
      int64_t t = t0;
      for (; t + kTokens <= t1; t += kTokens) {
        const uint8_t* at = act + size_t(t) * act_stride;
        float* o = out + t * out_stride + r;
        if (rows == kRows) tile<Tr, kRows, kTokens>(wr, w_stride, at, act_stride, nb, o, out_stride);
        else tile<Tr, 1, kTokens>(wr, w_stride, at, act_stride, nb, o, out_stride);
      }
      for (; t < t1; ++t) {
        const uint8_t* at = act + size_t(t) * act_stride;
        float* o = out + t * out_stride + r;
        if (rows == kRows && wide && n == 1) tile<Tr, kRows, 1, true>(wr, w_stride, at, act_stride, nb, o, out_stride);
        else if (rows == kRows) tile<Tr, kRows, 1>(wr, w_stride, at, act_stride, nb, o, out_stride);
        else tile<Tr, 1, 1>(wr, w_stride, at, act_stride, nb, o, out_stride);
      }
      r += rows;
    }
  }
}

}  // namespace

// cols is a whole number of 32-element blocks (Kernels::matmul_rows checks).
#define KV_MATMUL_AVX2(name, Traits)                                                               \
  void name(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* act, \
            size_t act_stride, int64_t n, float* out, int64_t out_stride) {                        \
    matmul<Traits>(cols / kQK, static_cast<const uint8_t*>(w), w_stride, r0, r1,                    \
                   static_cast<const uint8_t*>(act), act_stride, n, out, out_stride);               \
  }
KV_MATMUL_AVX2(matmul_q4_0_avx2, TraitsQ4_0)
KV_MATMUL_AVX2(matmul_q4_1_avx2, TraitsQ4_1)
KV_MATMUL_AVX2(matmul_q5_0_avx2, TraitsQ5_0)
KV_MATMUL_AVX2(matmul_q5_1_avx2, TraitsQ5_1)
KV_MATMUL_AVX2(matmul_q8_0_avx2, TraitsQ8_0)

}  // namespace kvstash::detail
