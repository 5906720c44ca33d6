// Tiled AVX2 products of f32 / f16 / bf16 weight rows with f32 activations. Each (row, token)
// keeps dot_f32 / dot_f32_f16 / dot_f32_bf16's 8 lanes in one __m256 (element i -> lane i % 8,
// one fma per element in element order, reduce_lanes at the end), so every output has vec_dot's
// bits; a weight chunk is loaded and converted once per tile and serves all its tokens.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "tensor/avx2_util.h"
#include "tensor/float_kernels.h"
#include "tensor/float_tiling.h"
#include "tensor/kernels_impl.h"

namespace kvstash::detail {

namespace {

// Weight loaders: 8 elements as f32; partial: the first count (1..7) elements, zeros after.
struct LoadF32 {
  using E = float;
  static KV_AVX2 inline __m256 full(const float* p) { return _mm256_loadu_ps(p); }
  static KV_AVX2 inline __m256 partial(const float* p, int, __m256i live) { return _mm256_maskload_ps(p, live); }
};
struct LoadF16 {
  using E = uint16_t;
  static KV_AVX2 inline __m256 full(const uint16_t* p) { return _mm256_cvtph_ps(load128(p)); }
  static KV_AVX2 inline __m256 partial(const uint16_t* p, int count, __m256i) {
    uint16_t buf[8] = {};
    std::memcpy(buf, p, size_t(count) * 2);
    return full(buf);
  }
};
struct LoadBF16 {
  using E = uint16_t;
  static KV_AVX2 inline __m256 full(const uint16_t* p) {  // bf16 -> f32: the bits shifted up 16
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(p)), 16));
  }
  static KV_AVX2 inline __m256 partial(const uint16_t* p, int count, __m256i) {
    uint16_t buf[8] = {};
    std::memcpy(buf, p, size_t(count) * 2);
    return full(buf);
  }
};

KV_AVX2 inline float reduce8(__m256 v) {
  alignas(32) float lane[8];
  _mm256_store_ps(lane, v);
  return reduce_lanes(lane);
}

// The R x T tile of FloatTile j (float_tiling.h).
template <class Ld, int R, int T>
KV_AVX2 void tile(const FloatTile& j) {
  using E = typename Ld::E;
  const E* w[R];
  const float* a[T];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) w[r] = reinterpret_cast<const E*>(j.w + size_t(std::min(r, j.rows - 1)) * j.w_stride);
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const float*>(j.a + size_t(t) * j.a_stride);
  __m256 acc[R][T];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t)
      acc[r][t] = j.first ? _mm256_setzero_ps() : _mm256_loadu_ps(j.state + t * j.state_stride + 8 * r);
  const size_t next = R * j.w_stride;
  int64_t i = j.k0;
  for (; i + 8 <= j.k1; i += 8) {
    __m256 wv[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) wv[r] = Ld::full(w[r] + i);
    // Rows are usually adjacent in memory, and R interleaved streams defeat the hardware
    // prefetcher (decode from memory ran slower than one row at a time): fetch the next tile.
    if (j.prefetch)
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(w[r] + i) + next, _MM_HINT_T0);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
      const __m256 av = _mm256_loadu_ps(a[t] + i);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], av, acc[r][t]);
    }
  }
  if (i < j.k1) {  // the last 1..7 elements of the row: lanes past them keep their value
    const int count = int(j.k1 - i);
    const __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 wv[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) wv[r] = Ld::partial(w[r] + i, count, live);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
      const __m256 av = _mm256_maskload_ps(a[t] + i, live);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
        acc[r][t] = _mm256_blendv_ps(acc[r][t], _mm256_fmadd_ps(wv[r], av, acc[r][t]), _mm256_castsi256_ps(live));
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
      if (!j.last) _mm256_storeu_ps(j.state + t * j.state_stride + 8 * r, acc[r][t]);
      else if (r < j.rows) j.out[t * j.out_stride + r] = reduce8(acc[r][t]);
    }
}

// The R x tokens tile, tokens <= T.
template <class Ld, int R, int T>
void tile_for(const FloatTile& j, int tokens) {
  if constexpr (T > 1)
    if (tokens < T) return tile_for<Ld, R, T - 1>(j, tokens);
  tile<Ld, R, T>(j);
}

// 3 rows x 4 tokens: 12 accumulators, 3 converted weight chunks and 1 activation chunk fill the
// 16 registers (4 x 3 would spill one). One token: 8 rows, so 8 fma chains hide the latency.
template <class Ld>
struct Tiles {
  static constexpr int kRows = 3, kTokens = 4, kDecodeRows = 8, kRowBlock = 48;
  static void run(const FloatTile& j, int rows) {
    if (rows == kDecodeRows) return tile<Ld, kDecodeRows, 1>(j);
    tile_for<Ld, kRows, kTokens>(j, j.tokens);
  }
};

}  // namespace

#define KV_MATMUL_FLOAT_AVX2(name, Loader)                                                          \
  void name(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* act, \
            size_t act_stride, int64_t n, float* out, int64_t out_stride) {                        \
    matmul_float<Tiles<Loader>>(cols, static_cast<const uint8_t*>(w), w_stride, r0, r1,              \
                                static_cast<const uint8_t*>(act), act_stride, n, out, out_stride);  \
  }
KV_MATMUL_FLOAT_AVX2(matmul_f32_avx2, LoadF32)
KV_MATMUL_FLOAT_AVX2(matmul_f16_avx2, LoadF16)
KV_MATMUL_FLOAT_AVX2(matmul_bf16_avx2, LoadBF16)

}  // namespace kvstash::detail
