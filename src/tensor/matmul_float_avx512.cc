// Tiled AVX-512 products of f32 / f16 / bf16 weight rows with f32 activations.
//
// The lane contract (element i -> lane i % 8, one fma per element in element order) allows 8
// lanes per (row, token), so a 16-wide register holds two of them: rows r and r + 1 for one
// token. Each step loads 8 elements of both rows into one __m512 (low half: row r), broadcasts
// the token's 8 activations to both halves, and does one fma: every lane still takes exactly
// the scalar kernel's fma for its element, in order. The halves reduce separately at the end.
#include <immintrin.h>

#include <algorithm>

#include "tensor/avx2_util.h"
#include "tensor/float_kernels.h"
#include "tensor/float_tiling.h"
#include "tensor/kernels_impl.h"

#include "tensor/avx512_util.h"


namespace kvstash::detail {

namespace {

// Weight loaders: 8 elements of row p0 (low half) and of row p1 (high half) as f32; masked: the
// first elements of m, zeros after.
struct PairF32 {
  using E = float;
  static KV_AVX512 inline __m512 load(const float* p0, const float* p1) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(p0)), _mm256_loadu_ps(p1), 1);
  }
  static KV_AVX512 inline __m512 load(const float* p0, const float* p1, __mmask8 m) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_maskz_loadu_ps(m, p0)), _mm256_maskz_loadu_ps(m, p1), 1);
  }
};
KV_AVX512 inline __m256i pair128(__m128i lo, __m128i hi) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}
struct PairF16 {
  using E = uint16_t;
  static KV_AVX512 inline __m512 load(const uint16_t* p0, const uint16_t* p1) {
    return _mm512_cvtph_ps(pair128(load128(p0), load128(p1)));
  }
  static KV_AVX512 inline __m512 load(const uint16_t* p0, const uint16_t* p1, __mmask8 m) {
    return _mm512_cvtph_ps(pair128(_mm_maskz_loadu_epi16(m, p0), _mm_maskz_loadu_epi16(m, p1)));
  }
};
struct PairBF16 {
  using E = uint16_t;
  static KV_AVX512 inline __m512 widen(__m256i h) {  // bf16 -> f32: the bits shifted up 16
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static KV_AVX512 inline __m512 load(const uint16_t* p0, const uint16_t* p1) {
    return widen(pair128(load128(p0), load128(p1)));
  }
  static KV_AVX512 inline __m512 load(const uint16_t* p0, const uint16_t* p1, __mmask8 m) {
    return widen(pair128(_mm_maskz_loadu_epi16(m, p0), _mm_maskz_loadu_epi16(m, p1)));
  }
};

// The (2 * P) x T tile of FloatTile j (float_tiling.h): P row pairs.
template <class Ld, int P, int T>
KV_AVX512 void tile(const FloatTile& j) {
  using E = typename Ld::E;
  constexpr int R = 2 * P;
  const E* w[R];
  const float* a[T];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) w[r] = reinterpret_cast<const E*>(j.w + size_t(std::min(r, j.rows - 1)) * j.w_stride);
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const float*>(j.a + size_t(t) * j.a_stride);
  __m512 acc[P][T];  // lanes 0-7: row 2p, lanes 8-15: row 2p + 1 (adjacent in state, too)
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t)
      acc[p][t] = j.first ? _mm512_setzero_ps() : _mm512_loadu_ps(j.state + t * j.state_stride + 16 * p);
  const size_t next = R * j.w_stride;
  int64_t i = j.k0;
  for (; i + 8 <= j.k1; i += 8) {
    __m512 wv[P];
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p) wv[p] = Ld::load(w[2 * p] + i, w[2 * p + 1] + i);
    // Rows are usually adjacent in memory, and R interleaved streams defeat the hardware
    // prefetcher (decode from memory ran slower than one row at a time): fetch the next tile.
    if (j.prefetch)
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(w[r] + i) + next, _MM_HINT_T0);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
      const __m512 av = _mm512_broadcast_f32x8(_mm256_loadu_ps(a[t] + i));
#pragma GCC unroll 16
      for (int p = 0; p < P; ++p) acc[p][t] = _mm512_fmadd_ps(wv[p], av, acc[p][t]);
    }
  }
  if (i < j.k1) {  // the last 1..7 elements of the row: masked-off lanes keep their value
    const __mmask8 m = __mmask8((1u << (j.k1 - i)) - 1);
    const __mmask16 m2 = __mmask16(m | (m << 8));
    __m512 wv[P];
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p) wv[p] = Ld::load(w[2 * p] + i, w[2 * p + 1] + i, m);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
      const __m512 av = _mm512_broadcast_f32x8(_mm256_maskz_loadu_ps(m, a[t] + i));
#pragma GCC unroll 16
      for (int p = 0; p < P; ++p) acc[p][t] = _mm512_mask3_fmadd_ps(wv[p], av, acc[p][t], m2);
    }
  }
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
      if (!j.last) {
        _mm512_storeu_ps(j.state + t * j.state_stride + 16 * p, acc[p][t]);
        continue;
      }
      alignas(64) float lane[16];
      _mm512_store_ps(lane, acc[p][t]);
      if (2 * p < j.rows) j.out[t * j.out_stride + 2 * p] = reduce_lanes(lane);
      if (2 * p + 1 < j.rows) j.out[t * j.out_stride + 2 * p + 1] = reduce_lanes(lane + 8);
    }
}

// The (2 * P) x tokens tile, tokens <= T.
template <class Ld, int P, int T>
void tile_for(const FloatTile& j, int tokens) {
  if constexpr (T > 1)
    if (tokens < T) return tile_for<Ld, P, T - 1>(j, tokens);
  tile<Ld, P, T>(j);
}

// 8 rows (4 pairs) x 6 tokens: 24 accumulators + 4 weight pairs + 1 activation of the 32
// registers. One token takes the same 8 rows: its 4 fma chains of 16 lanes outrun memory.
template <class Ld>
struct Tiles {
  static constexpr int kRows = 8, kTokens = 6, kDecodeRows = kRows, kRowBlock = 48;
  static void run(const FloatTile& j, int) { tile_for<Ld, kRows / 2, kTokens>(j, j.tokens); }
};

}  // namespace

#define KV_MATMUL_FLOAT_AVX512(name, Loader)                                                        \
  void name(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* act, \
            size_t act_stride, int64_t n, float* out, int64_t out_stride) {                        \
    matmul_float<Tiles<Loader>>(cols, static_cast<const uint8_t*>(w), w_stride, r0, r1,              \
                                static_cast<const uint8_t*>(act), act_stride, n, out, out_stride);  \
  }
KV_MATMUL_FLOAT_AVX512(matmul_f32_avx512, PairF32)
KV_MATMUL_FLOAT_AVX512(matmul_f16_avx512, PairF16)
KV_MATMUL_FLOAT_AVX512(matmul_bf16_avx512, PairBF16)

}  // namespace kvstash::detail
