// Tiled AVX-512 VNNI matrix products of the 32-element block types: 4 weight rows x a block of up
// to 128 tokens, two tokens per register.
//
// Layout: groups of 8 blocks. A token pair's group is transposed once per call so that lane k of
// a[j] holds bytes 4j..4j+3 of block k of the first token (lanes 0-7) or of the second token
// (lanes 8-15); a weight row's group is transposed once per token block the same way, its 8
// blocks in both halves. Then 8 vpdpbusd give each (row, token, block) its exact int32 sum in its
// own lane, with no horizontal sums, and one 16-lane fma does the float step of 8 blocks of both
// tokens: lane k of each half is lane k of that token's 8 accumulator lanes (block b -> b % 8), as
// fma_q8 / fma_q4_1 do, group after group. One or two tokens take the dot kernels instead.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "tensor/avx512_util.h"
#include "tensor/kernels_impl.h"
#include "tensor/q32_avx512.h"

namespace kvstash::detail {

namespace {

constexpr int kBlocks = 8;  // blocks per group

// First 4 bytes of 8 blocks stride bytes apart (d, and m or s for the _1 types), as int32 lanes.
KV_AVX512 inline __m128i dwords4(const uint8_t* p, size_t stride) {
  __m128i v = _mm_cvtsi32_si128(load_i32(p));
  v = _mm_insert_epi32(v, load_i32(p + stride), 1);
  v = _mm_insert_epi32(v, load_i32(p + 2 * stride), 2);
  return _mm_insert_epi32(v, load_i32(p + 3 * stride), 3);
}
KV_AVX512 inline __m256i dwords8(const void* blocks, size_t stride) {
  const uint8_t* p = static_cast<const uint8_t*>(blocks);
  return _mm256_set_m128i(dwords4(p + 4 * stride, stride), dwords4(p, stride));
}

// One group of a token pair (see the file comment); init: -kOffset * sum of each block's bytes.
struct alignas(64) PairGroup {
  __m512i a[8];
  __m512 dx, sx;
  __m512i init;
};

// Blocks y0[0..7] and y1[0..7] (whole groups; partial ones are staged by the caller).
template <class F>
KV_AVX512 void prep_pair(const typename F::AB* y0, const typename F::AB* y1, PairGroup& g) {
  for (int half = 0; half < 2; ++half) {  // bytes 0..15 give a[0..3], bytes 16..31 a[4..7]
    __m512i z[4];
    for (int m = 0; m < 4; ++m)
      z[m] = load4x128(y0[m].qs + 16 * half, y0[m + 4].qs + 16 * half, y1[m].qs + 16 * half,
                       y1[m + 4].qs + 16 * half);
    transpose4x4_in_chunks(z);
    for (int j = 0; j < 4; ++j) g.a[4 * half + j] = z[j];
  }
  g.init = _mm512_setzero_si512();
  if constexpr (F::kOffset != 0) {
    const __m512i off = _mm512_set1_epi8(char(F::kOffset));  // unsigned 8, 16 or 128
    __m512i s = _mm512_setzero_si512();
    for (int j = 0; j < 8; ++j) s = _mm512_dpbusd_epi32(s, off, g.a[j]);
    g.init = _mm512_sub_epi32(g.init, s);
  }
  const size_t stride = sizeof(typename F::AB);
  const __m512i h = _mm512_inserti64x4(_mm512_castsi256_si512(dwords8(y0, stride)), dwords8(y1, stride), 1);
  g.dx = f16_lanes_to_f32(h);
  g.sx = F::kMin ? f16_lanes_to_f32(_mm512_srli_epi32(h, 16)) : _mm512_setzero_ps();
}

// Tokens [t, t + 2) or just t (a zero second token), blocks [b, b + count).
template <class F>
KV_AVX512 void prep_pair_at(const uint8_t* act, size_t act_stride, int64_t t, bool two, int64_t b, int count,
                            PairGroup& g) {
  using AB = typename F::AB;
  const AB* y0 = reinterpret_cast<const AB*>(act + size_t(t) * act_stride) + b;
  if (two && count == kBlocks) {
    prep_pair<F>(y0, reinterpret_cast<const AB*>(act + size_t(t + 1) * act_stride) + b, g);
    return;
  }
  AB staged[2][kBlocks];  // zero blocks past count and for a missing second token
  std::memset(staged, 0, sizeof staged);
  std::memcpy(staged[0], y0, size_t(count) * sizeof(AB));
  if (two)
    std::memcpy(staged[1], reinterpret_cast<const AB*>(act + size_t(t + 1) * act_stride) + b,
                size_t(count) * sizeof(AB));
  prep_pair<F>(staged[0], staged[1], g);
}

// One weight row's group: w[j] lane k (both halves) = unsigned quant bytes 4j..4j+3 of block k.
struct WeightGroup {
  __m512i w[8];
  __m512 dw, mw;
};

// q5: byte i of w[j] lane k gets 0x10 where bit 4j + i of block k's qh is set (element 4j + i).
KV_AVX512 inline void add_q5_bits(__m512i qh, __m512i w[8]) {
  const __m512i b4 = _mm512_set1_epi8(0x10);
  for (int c = 0; c < 4; ++c) {  // qh byte c holds the bits of w[2c] (low nibble) and w[2c + 1]
    const __m512i lane_base = _mm512_broadcast_i32x4(_mm_setr_epi32(0, 0x04040404, 0x08080808, 0x0C0C0C0C));
    const __m512i pick = _mm512_add_epi32(lane_base, _mm512_set1_epi32(0x01010101 * c));  // byte 4p + c of lane p
    const __m512i bytes = _mm512_shuffle_epi8(qh, pick);
    const __mmask64 k0 = _mm512_test_epi8_mask(bytes, _mm512_set1_epi32(0x08040201));
    const __mmask64 k1 = _mm512_test_epi8_mask(bytes, _mm512_set1_epi32(int32_t(0x80402010)));
    w[2 * c] = _mm512_mask_add_epi8(w[2 * c], k0, w[2 * c], b4);
    w[2 * c + 1] = _mm512_mask_add_epi8(w[2 * c + 1], k1, w[2 * c + 1], b4);
  }
}

template <class F>
KV_AVX512 void prep_weights(const typename F::WB* x, WeightGroup& g) {
  if constexpr (F::kQuants == Quants::Q8) {
    const __m512i flip = _mm512_set1_epi8(char(0x80));  // q + 128
    for (int half = 0; half < 2; ++half) {
      __m512i z[4];
      for (int m = 0; m < 4; ++m)
        z[m] = dup256(_mm256_set_m128i(load128(x[m + 4].qs + 16 * half), load128(x[m].qs + 16 * half)));
      transpose4x4_in_chunks(z);
      for (int j = 0; j < 4; ++j) g.w[4 * half + j] = _mm512_xor_si512(z[j], flip);
    }
  } else {
    __m512i z[4];
    for (int m = 0; m < 4; ++m) z[m] = dup256(_mm256_set_m128i(load128(x[m + 4].qs), load128(x[m].qs)));
    transpose4x4_in_chunks(z);  // z[j] lane k: qs bytes 4j..4j+3 of block k
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int j = 0; j < 4; ++j) {
      g.w[j] = _mm512_and_si512(z[j], m4);                              // elements 4j..4j+3
      g.w[j + 4] = _mm512_and_si512(_mm512_srli_epi32(z[j], 4), m4);  // elements 16+4j..
    }
    if constexpr (F::kQuants == Quants::Q5)
      add_q5_bits(dup256(dwords8(x[0].qh, sizeof(typename F::WB))), g.w);
  }
  const __m512i h = dup256(dwords8(x, sizeof(typename F::WB)));
  g.dw = f16_lanes_to_f32(h);
  g.mw = F::kMin ? f16_lanes_to_f32(_mm512_srli_epi32(h, 16)) : _mm512_setzero_ps();
}

template <class F>
KV_AVX512 void prep_weights_at(const uint8_t* row, int64_t b, int count, WeightGroup& g) {
  using WB = typename F::WB;
  const WB* x = reinterpret_cast<const WB*>(row) + b;
  if (count == kBlocks) {
    prep_weights<F>(x, g);
    return;
  }
  WB staged[kBlocks];
  std::memset(staged, 0, sizeof staged);
  std::memcpy(staged, x, size_t(count) * sizeof(WB));
  prep_weights<F>(staged, g);
}

// The group's float step for R rows and one token pair: acc[r] (both tokens) += fma_q8 /
// fma_q4_1 of each block; lanes of blocks past the group's count (mask off) keep their values.
// Each activation register is loaded once for the R rows.
template <class F, int R>
KV_AVX512 inline void pair_step(__m512* acc, const WeightGroup* w, const PairGroup& a, __mmask16 k) {
  __m512i isum[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) isum[r] = a.init;
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) {
    const __m512i aj = _mm512_load_si512(&a.a[j]);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) isum[r] = _mm512_dpbusd_epi32(isum[r], w[r].w[j], aj);
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm512_mask3_fmadd_ps(_mm512_mul_ps(w[r].dw, a.dx), _mm512_cvtepi32_ps(isum[r]), acc[r], k);
    if constexpr (F::kMin) acc[r] = _mm512_mask3_fmadd_ps(w[r].mw, a.sx, acc[r], k);
  }
}

// reduce_lanes of both halves of a pair's accumulator at once: the same adds in the same tree
// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)); results in lanes 0 and 8.
KV_AVX512 inline void reduce_pair(__m512 v, float* first, float* second) {
  const __m512 a = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));  // l_i + l_i+4
  const __m512 b = _mm512_add_ps(a, _mm512_permute_ps(a, _MM_SHUFFLE(1, 0, 3, 2)));        // lane 0, 1
  const __m512 c = _mm512_add_ps(b, _mm512_permute_ps(b, _MM_SHUFFLE(2, 3, 0, 1)));        // lane 0
  *first = _mm512_cvtss_f32(c);
  *second = _mm_cvtss_f32(_mm512_extractf32x4_ps(c, 2));
}

constexpr int kRows = 4;                     // weight rows per tile
constexpr int kMaxPairs = 64;                // token pairs per token block (128 tokens)
constexpr size_t kPrepBytes = 192 * 1024;    // prepared activations of one token block

// The prepared activations of a token block: per thread, grown on first use (a few hundred KiB
// would not be safe on every thread's stack).
PairGroup* prep_buffer(size_t count) {
  thread_local std::vector<PairGroup> buffer;
  if (buffer.size() < count) buffer.resize(count);
  return buffer.data();
}

// R rows (w, w_stride apart) against the prepared token pairs of tokens [t0, t1).
template <class F, int R>
KV_AVX512 void row_tile(int64_t nb, const uint8_t* w, size_t w_stride, const PairGroup* prep, int64_t groups,
                        int pairs, int64_t t0, int64_t t1, float* out, int64_t out_stride) {
  __m512 acc[kMaxPairs][R];
  for (int p = 0; p < pairs; ++p)
    for (int r = 0; r < R; ++r) acc[p][r] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    const int count = int(std::min<int64_t>(kBlocks, nb - g * kBlocks));
    const __mmask16 k = __mmask16(((1u << count) - 1) * 0x101u);
    WeightGroup wg[R];
    for (int r = 0; r < R; ++r) prep_weights_at<F>(w + size_t(r) * w_stride, g * kBlocks, count, wg[r]);
    for (int p = 0; p < pairs; ++p) {
      const PairGroup& a = prep[size_t(p) * size_t(groups) + size_t(g)];
      pair_step<F, R>(acc[p], wg, a, k);
    }
  }
  // Results go out one token at a time (R adjacent floats): out's rows of tokens lie out_stride
  // floats apart, often a multiple of 4 KiB, and scattered single stores thrash L1 sets.
  float res[2 * kMaxPairs][R];
  for (int p = 0; p < pairs; ++p)
    for (int r = 0; r < R; ++r) reduce_pair(acc[p][r], &res[2 * p][r], &res[2 * p + 1][r]);
  for (int64_t t = t0; t < t1; ++t) std::memcpy(out + t * out_stride, res[t - t0], sizeof res[0]);
}

using DotRowsFn = void (*)(int64_t nb, const void* w, size_t w_stride, int64_t rows, const void* act, float* out);

template <class F, DotRowsFn DotRows>
KV_AVX512 void matmul(int64_t nb, const uint8_t* w, size_t w_stride, int64_t r0, int64_t r1, const uint8_t* act,
                      size_t act_stride, int64_t n, float* out, int64_t out_stride) {
  const int64_t groups = (nb + kBlocks - 1) / kBlocks;
  const int64_t fit = int64_t(kPrepBytes / sizeof(PairGroup)) / groups;
  // One or two tokens do not repay transposing the weights (nor do rows too long for the
  // buffer): the dot kernels, one token at a time.
  if (n <= 2 || fit < 1) {
    for (int64_t t = 0; t < n; ++t)
      DotRows(nb, w + size_t(r0) * w_stride, w_stride, r1 - r0, act + size_t(t) * act_stride,
              out + t * out_stride + r0);
    return;
  }
  const int max_pairs = int(std::min<int64_t>({fit, kMaxPairs, (n + 1) / 2}));
  PairGroup* prep = prep_buffer(size_t(max_pairs) * size_t(groups));
  for (int64_t t0 = 0; t0 < n; t0 += 2 * max_pairs) {
    const int64_t t1 = std::min(n, t0 + 2 * max_pairs);
    const int pairs = int((t1 - t0 + 1) / 2);
    for (int p = 0; p < pairs; ++p)
      for (int64_t g = 0; g < groups; ++g) {
        const int count = int(std::min<int64_t>(kBlocks, nb - g * kBlocks));
        prep_pair_at<F>(act, act_stride, t0 + 2 * p, t0 + 2 * p + 1 < t1, g * kBlocks, count,
                        prep[size_t(p) * size_t(groups) + size_t(g)]);
      }
    int64_t r = r0;
    for (; r + kRows <= r1; r += kRows)
      row_tile<F, kRows>(nb, w + size_t(r) * w_stride, w_stride, prep, groups, pairs, t0, t1, out + r, out_stride);
    const uint8_t* wr = w + size_t(r) * w_stride;
    switch (r1 - r) {
      case 3: row_tile<F, 3>(nb, wr, w_stride, prep, groups, pairs, t0, t1, out + r, out_stride); break;
      case 2: row_tile<F, 2>(nb, wr, w_stride, prep, groups, pairs, t0, t1, out + r, out_stride); break;
      case 1: row_tile<F, 1>(nb, wr, w_stride, prep, groups, pairs, t0, t1, out + r, out_stride); break;
      default: break;
    }
  }
}

}  // namespace

// cols is a whole number of 32-element blocks (Kernels::matmul_rows checks).
#define KV_MATMUL_AVX512(name, Format, dot_rows)                                                    \
  void name(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* act, \
            size_t act_stride, int64_t n, float* out, int64_t out_stride) {                        \
    matmul<Format, dot_rows>(cols / kQK, static_cast<const uint8_t*>(w), w_stride, r0, r1,          \
                             static_cast<const uint8_t*>(act), act_stride, n, out, out_stride);     \
  }
KV_MATMUL_AVX512(matmul_q4_0_avx512, FormatQ4_0, dot_rows_q4_0_avx512)
KV_MATMUL_AVX512(matmul_q4_1_avx512, FormatQ4_1, dot_rows_q4_1_avx512)
KV_MATMUL_AVX512(matmul_q5_0_avx512, FormatQ5_0, dot_rows_q5_0_avx512)
KV_MATMUL_AVX512(matmul_q5_1_avx512, FormatQ5_1, dot_rows_q5_1_avx512)
KV_MATMUL_AVX512(matmul_q8_0_avx512, FormatQ8_0, dot_rows_q8_0_avx512)

}  // namespace kvstash::detail
