// Tiled AVX2 products for the k-quants: 8 weight rows x T tokens at a time, one row per int32
// lane. The 8 rows are repacked once per call ("panel", reused by every group of 4 tokens): quad
// k of a super-block is a ymm holding elements 4k..4k+3 of the 8 rows as unsigned bytes, so that
// vpmaddubsw with 4 activation bytes broadcast gives each row two int16 pair sums, and no
// horizontal sum is ever needed. The scales, mins and f16 factors are repacked row-in-lane too.
// One token (decoding) takes the dot product row by row.
//
// Bits: per (row, token) this is vec_dot's computation. isum = sum_g sc_g * (group sum), exact:
// the int16 pair sums of a few quads add up exactly in int16 before vpmaddwd applies the group
// scale (q4_K: 8 quads, |sum| <= 8 * 2 * 15 * 128; q5_K: 4 quads, 4 * 2 * 31 * 128; q6_K: 2
// quads, 2 * 2 * 63 * 128; all below 32768). q4_K / q5_K: msum = sum_j min_j * (bsum_2j +
// bsum_2j+1) (q4k_min_sum); q6_K: the offset 32 * sum_g sc_g * bsum_g (q6k_offset_sum) is
// subtracted inside the int32 sum. Then fma_k / fma_q6_K into lane b % 8 (one ymm per lane, 8
// rows wide) and reduce_lanes.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "tensor/avx2_util.h"
#include "tensor/kquant_kernels.h"

namespace kvstash::detail {

namespace {

constexpr int kPanelRows = 8;
constexpr int kTokens = 4;  // tokens per tile (their int16 and int32 sums stay in registers)

// One super-block of an 8-row panel, rows in lanes.
struct alignas(32) PanelBlock {
  int32_t q[64][kPanelRows];   // quad k: unsigned quants of elements 4k..4k+3 of each row
  int32_t sc[16][kPanelRows];  // scale of each group as two int16 (q4_K / q5_K: 8 groups of 32)
  int32_t bm[8][kPanelRows];   // multipliers of the activation's bsums 2j, 2j+1 as two int16
  float d[kPanelRows], dmin[kPanelRows];
};

KV_AVX2 inline __m256i set1(int32_t v) { return _mm256_set1_epi32(v); }
KV_AVX2 inline void store(int32_t* p, __m256i v) { _mm256_store_si256(reinterpret_cast<__m256i*>(p), v); }
KV_AVX2 inline __m256i load(const int32_t* p) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(p)); }
KV_AVX2 inline float load_f32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}
// Byte `byte` of each int32 lane, zero-extended.
KV_AVX2 inline __m256i byte_of(__m256i v, int byte) {
  return _mm256_and_si256(_mm256_srli_epi32(v, 8 * byte), set1(0xFF));
}
// The low 16 bits of each lane in both halves (a value for vpmaddwd's pairs).
KV_AVX2 inline __m256i twice16(__m256i v) {
  const __m256i lo = _mm256_and_si256(v, set1(0xFFFF));
  return _mm256_or_si256(lo, _mm256_slli_epi32(lo, 16));
}
// The f16 in the low half of each lane as f32.
KV_AVX2 inline __m256 f16_low(__m256i v) {
  const __m256i lo = _mm256_and_si256(v, set1(0xFFFF));
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, lo), 0x08);
  return _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
}

// 4 x 4 transpose of dwords inside each 128-bit lane: o[j] lane L = dword j of v[0..3] lane L.
KV_AVX2 inline void transpose_in_lanes(const __m256i v[4], __m256i o[4]) {
  const __m256i t0 = _mm256_unpacklo_epi32(v[0], v[1]), t1 = _mm256_unpackhi_epi32(v[0], v[1]);
  const __m256i t2 = _mm256_unpacklo_epi32(v[2], v[3]), t3 = _mm256_unpackhi_epi32(v[2], v[3]);
  o[0] = _mm256_unpacklo_epi64(t0, t2), o[1] = _mm256_unpackhi_epi64(t0, t2);
  o[2] = _mm256_unpacklo_epi64(t1, t3), o[3] = _mm256_unpackhi_epi64(t1, t3);
}

// The 8 rows of a panel at one block: dword i of a field, all rows, as one ymm (lane = row).
struct Rows {
  const uint8_t* p[kPanelRows];  // the block's first byte in each row

  // 8 dwords at byte offset off: out[i] lane r = dword i of row r (an 8 x 8 transpose).
  KV_AVX2 void dwords8(size_t off, __m256i out[8]) const {
    __m256i b[8];  // b[4q + j] lane L: dword 4L + j of rows 4q..4q+3
    for (int q = 0; q < 2; ++q) {
      const __m256i v[4] = {load256(p[4 * q] + off), load256(p[4 * q + 1] + off), load256(p[4 * q + 2] + off),
                            load256(p[4 * q + 3] + off)};
      transpose_in_lanes(v, b + 4 * q);
    }
    for (int j = 0; j < 4; ++j) {
      out[j] = _mm256_permute2x128_si256(b[j], b[4 + j], 0x20);
      out[4 + j] = _mm256_permute2x128_si256(b[j], b[4 + j], 0x31);
    }
  }
  // 4 dwords at byte offset off: out[j] lane r = dword j of row r.
  KV_AVX2 void dwords4(size_t off, __m256i out[4]) const {
    __m256i v[4];  // v[a]: rows a and a + 4 in its 128-bit lanes
    for (int a = 0; a < 4; ++a) v[a] = _mm256_set_m128i(load128(p[a + 4] + off), load128(p[a] + off));
    transpose_in_lanes(v, out);
  }
};

// q4_K / q5_K head (dwords: d | dmin << 16, then the 12 scale bytes): unpack_k4_scales lane-wise.
KV_AVX2 inline void pack_k4_head(const __m256i h[4], PanelBlock& p) {
  _mm256_store_ps(p.d, f16_low(h[0]));
  _mm256_store_ps(p.dmin, f16_low(_mm256_srli_epi32(h[0], 16)));
  const __m256i s0 = h[1], s1 = h[2], s2 = h[3];
  const __m256i m6 = set1(0x3F3F3F3F), m4 = set1(0x0F0F0F0F), top = set1(0x30303030);
  const __m256i sc_lo = _mm256_and_si256(s0, m6), mn_lo = _mm256_and_si256(s1, m6);
  // Bits 6-7 of bytes 0-7 become bits 4-5 of scales / mins 4-7 (bits shifted in from the next
  // byte fall outside the mask).
  const __m256i sc_hi = _mm256_or_si256(_mm256_and_si256(s2, m4),
                                        _mm256_and_si256(_mm256_srli_epi32(s0, 2), top));
  const __m256i mn_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(s2, 4), m4),
                                        _mm256_and_si256(_mm256_srli_epi32(s1, 2), top));
  for (int j = 0; j < 4; ++j) {
    store(p.sc[j], twice16(byte_of(sc_lo, j)));
    store(p.sc[j + 4], twice16(byte_of(sc_hi, j)));
    store(p.bm[j], twice16(byte_of(mn_lo, j)));
    store(p.bm[j + 4], twice16(byte_of(mn_hi, j)));
  }
}

struct Q4K {
  static constexpr size_t kBlockBytes = sizeof(BlockQ4_K);
  static constexpr int kGroups = 8, kQuadsPerGroup = 8, kDepth = 8;  // kDepth: quads per int16 sum
  static constexpr bool kMins = true;
  // Dword m of qs chunk c (32 bytes): low nibbles are quad 16c + m, high nibbles quad
  // 16c + 8 + m (unpack_q4_K).
  static KV_AVX2 void pack(const Rows& rows, PanelBlock& p) {
    __m256i h[4];
    rows.dwords4(0, h);
    pack_k4_head(h, p);
    const __m256i m4 = set1(0x0F0F0F0F);
    for (int c = 0; c < 4; ++c) {
      __m256i x[8];
      rows.dwords8(offsetof(BlockQ4_K, qs) + 32 * c, x);
      for (int m = 0; m < 8; ++m) {
        store(p.q[16 * c + m], _mm256_and_si256(x[m], m4));
        store(p.q[16 * c + 8 + m], _mm256_and_si256(_mm256_srli_epi32(x[m], 4), m4));
      }
    }
  }
};

struct Q5K {
  static constexpr size_t kBlockBytes = sizeof(BlockQ5_K);
  static constexpr int kGroups = 8, kQuadsPerGroup = 8, kDepth = 4;
  static constexpr bool kMins = true;
  // As q4_K, plus the 5th bit: bit 2c (low nibbles) or 2c + 1 (high) of qh[l] (unpack_q5_K).
  static KV_AVX2 void pack(const Rows& rows, PanelBlock& p) {
    __m256i h[4], qh[8];
    rows.dwords4(0, h);
    pack_k4_head(h, p);
    rows.dwords8(offsetof(BlockQ5_K, qh), qh);
    const __m256i m4 = set1(0x0F0F0F0F), b4 = set1(0x10101010);
    for (int c = 0; c < 4; ++c) {
      __m256i x[8];
      rows.dwords8(offsetof(BlockQ5_K, qs) + 32 * c, x);
      for (int m = 0; m < 8; ++m) {
        // bit 2c (or 2c + 1) of each byte moved to bit 4
        const __m256i h0 = 2 * c <= 4 ? _mm256_slli_epi32(qh[m], 4 - 2 * c) : _mm256_srli_epi32(qh[m], 2 * c - 4);
        const __m256i h1 = 2 * c + 1 <= 4 ? _mm256_slli_epi32(qh[m], 3 - 2 * c) : _mm256_srli_epi32(qh[m], 2 * c - 3);
        store(p.q[16 * c + m], _mm256_or_si256(_mm256_and_si256(x[m], m4), _mm256_and_si256(h0, b4)));
        store(p.q[16 * c + 8 + m], _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(x[m], 4), m4),
                                                   _mm256_and_si256(h1, b4)));
      }
    }
  }
};

struct Q6K {
  static constexpr size_t kBlockBytes = sizeof(BlockQ6_K);
  static constexpr int kGroups = 16, kQuadsPerGroup = 4, kDepth = 2;
  static constexpr bool kMins = false;
  // Element 128h + 32k + l: nibble k / 2 of ql[64h + 32(k % 2) + l], bits 2k..2k+1 of
  // qh[32h + l] on top (unpack_q6_K); quad 32h + 8k + m covers l = 4m..4m+3.
  static KV_AVX2 void pack(const Rows& rows, PanelBlock& p) {
    // d is the block's last two bytes: the dword ending there (never read past the block).
    alignas(32) int32_t dw[kPanelRows];
    for (int r = 0; r < kPanelRows; ++r) dw[r] = load_i32(rows.p[r] + offsetof(BlockQ6_K, d) - 2);
    _mm256_store_ps(p.d, f16_low(_mm256_srli_epi32(load(dw), 16)));
    __m256i s[4], sc[16];
    rows.dwords4(offsetof(BlockQ6_K, scales), s);
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) {  // scales are int8: sign-extend byte j of dword i
        sc[4 * i + j] = _mm256_srai_epi32(_mm256_slli_epi32(s[i], 24 - 8 * j), 24);
        store(p.sc[4 * i + j], twice16(sc[4 * i + j]));
      }
    // bsum pair (2j, 2j+1) weighs -32 * sc: the offset enters the int32 sum as two int16 products.
    for (int j = 0; j < 8; ++j) {
      const __m256i lo = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sc[2 * j], 5));
      const __m256i hi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sc[2 * j + 1], 5));
      store(p.bm[j], _mm256_or_si256(_mm256_and_si256(lo, set1(0xFFFF)), _mm256_slli_epi32(hi, 16)));
    }
    const __m256i m4 = set1(0x0F0F0F0F), m2 = set1(0x03030303);
    for (int h = 0; h < 2; ++h) {
      __m256i qh[8];
      rows.dwords8(offsetof(BlockQ6_K, qh) + 32 * h, qh);
      for (int half = 0; half < 2; ++half) {
        __m256i x[8];
        rows.dwords8(offsetof(BlockQ6_K, ql) + 64 * h + 32 * half, x);
        for (int m = 0; m < 8; ++m)
          for (int nib = 0; nib < 2; ++nib) {
            const int k = 2 * nib + half;
            const __m256i lo = _mm256_and_si256(nib ? _mm256_srli_epi32(x[m], 4) : x[m], m4);
            const __m256i hb = _mm256_and_si256(_mm256_srli_epi32(qh[m], 2 * k), m2);
            store(p.q[32 * h + 8 * k + m], _mm256_or_si256(lo, _mm256_slli_epi32(hb, 4)));
          }
      }
    }
  }
};

// Repacks `rows` (1..8) rows of nb super-blocks; missing rows repeat the last one. Meanwhile
// prefetches the bytes [next, next + next_bytes) (the next panel: its rows are one contiguous
// run, which the hardware prefetcher would not see in this row-interleaved order).
template <class Tr>
KV_AVX2 void pack_panel(const uint8_t* w, size_t w_stride, int rows, int64_t nb, PanelBlock* out,
                      const uint8_t* next, size_t next_bytes) {
  Rows r;
  for (int i = 0; i < kPanelRows; ++i) r.p[i] = w + size_t(std::min(i, rows - 1)) * w_stride;
  const size_t lines = (next_bytes + 63) / 64;
  for (int64_t b = 0; b < nb; ++b) {
    for (size_t l = lines * size_t(b) / size_t(nb); l < lines * size_t(b + 1) / size_t(nb); ++l)
      _mm_prefetch(reinterpret_cast<const char*>(next + 64 * l), _MM_HINT_T0);
    Tr::pack(r, out[b]);
    for (int i = 0; i < kPanelRows; ++i) r.p[i] += Tr::kBlockBytes;
  }
}

// One panel times T tokens (activation rows a[t]); stores the first `count` tokens' results
// (the first `rows` rows) at o[t].
template <class Tr, int T>
KV_AVX2 void panel_tokens(const PanelBlock* panel, int64_t nb, const uint8_t* const* a, int count,
                          float* const* o, int rows) {
  constexpr size_t kQs = offsetof(BlockQ8_K, qs), kBsums = offsetof(BlockQ8_K, bsums);
  for (int t = 0; t < count; ++t) {  // the output lines, cold in a large product, arrive meanwhile
    _mm_prefetch(reinterpret_cast<const char*>(o[t]), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(o[t] + kPanelRows - 1), _MM_HINT_T0);
  }
  __m256 acc[8][T];
#pragma GCC unroll 8
  for (int l = 0; l < 8; ++l)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[l][t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const PanelBlock& p = panel[b];
    const uint8_t* y[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) y[t] = a[t] + size_t(b) * sizeof(BlockQ8_K);
    __m256i isum[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 16
    for (int g = 0; g < Tr::kGroups; ++g) {
#pragma GCC unroll 4
      for (int k0 = 0; k0 < Tr::kQuadsPerGroup; k0 += Tr::kDepth) {
        __m256i s[T];  // int16 pair sums of kDepth quads
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int k = k0; k < k0 + Tr::kDepth; ++k) {
          const int quad = g * Tr::kQuadsPerGroup + k;
          const __m256i w = load(p.q[quad]);
#pragma GCC unroll 8
          for (int t = 0; t < T; ++t) {
            s[t] = _mm256_add_epi16(s[t], _mm256_maddubs_epi16(w, set1(load_i32(y[t] + kQs + 4 * quad))));
            __asm__("" : "+x"(s[t]));  // keep the sums sequential: GCC's reassociated tree spills
          }
        }
        const __m256i sc = load(p.sc[g]);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(s[t], sc));
      }
    }
    const __m256 d = _mm256_load_ps(p.d);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      __m256i m = Tr::kMins ? _mm256_setzero_si256() : isum[t];
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j)
        m = _mm256_add_epi32(m, _mm256_madd_epi16(load(p.bm[j]), set1(load_i32(y[t] + kBsums + 4 * j))));
      const __m256 dx = _mm256_set1_ps(load_f32(y[t]));
      __m256& lane = acc[b % 8][t];
      if constexpr (Tr::kMins) {
        const __m256 neg_mdx = _mm256_xor_ps(_mm256_mul_ps(_mm256_load_ps(p.dmin), dx), _mm256_set1_ps(-0.0f));
        lane = _mm256_fmadd_ps(_mm256_mul_ps(d, dx), _mm256_cvtepi32_ps(isum[t]), lane);
        lane = _mm256_fmadd_ps(neg_mdx, _mm256_cvtepi32_ps(m), lane);
      } else {
        lane = _mm256_fmadd_ps(_mm256_mul_ps(d, dx), _mm256_cvtepi32_ps(m), lane);
      }
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < count; ++t) {
    const __m256 r = _mm256_add_ps(
        _mm256_add_ps(_mm256_add_ps(acc[0][t], acc[4][t]), _mm256_add_ps(acc[2][t], acc[6][t])),
        _mm256_add_ps(_mm256_add_ps(acc[1][t], acc[5][t]), _mm256_add_ps(acc[3][t], acc[7][t])));
    if (rows == kPanelRows) {
      _mm256_storeu_ps(o[t], r);
    } else {
      alignas(32) float v[kPanelRows];
      _mm256_store_ps(v, r);
      std::memcpy(o[t], v, size_t(rows) * sizeof(float));
    }
  }
}

template <class Tr>
KV_AVX2 void matmul(int64_t cols, const uint8_t* w, size_t w_stride, int64_t r0, int64_t r1,
                    const uint8_t* act, size_t act_stride, int64_t n, float* out, int64_t out_stride) {
  const int64_t nb = cols / kQKK;
  thread_local std::vector<PanelBlock> panel;
  if (panel.size() < size_t(nb)) panel.resize(size_t(nb));
  for (int64_t r = r0; r < r1; r += kPanelRows) {
    const int rows = int(std::min<int64_t>(kPanelRows, r1 - r));
    const int64_t next_rows = std::min<int64_t>(kPanelRows, r1 - r - rows);
    pack_panel<Tr>(w + size_t(r) * w_stride, w_stride, rows, nb, panel.data(), w + size_t(r + rows) * w_stride,
                   next_rows > 0 ? size_t(next_rows) * w_stride : 0);
    for (int64_t t0 = 0; t0 < n; t0 += kTokens) {
      const int count = int(std::min<int64_t>(kTokens, n - t0));
      const uint8_t* a[kTokens];
      float* o[kTokens];
      for (int t = 0; t < kTokens; ++t) {  // past count: repeat the last token, results unused
        const int64_t tt = t0 + std::min(t, count - 1);
        a[t] = act + size_t(tt) * act_stride;
        o[t] = out + tt * out_stride + r;
      }
      if (count > 2) panel_tokens<Tr, 4>(panel.data(), nb, a, count, o, rows);
      else if (count == 2) panel_tokens<Tr, 2>(panel.data(), nb, a, count, o, rows);
      else panel_tokens<Tr, 1>(panel.data(), nb, a, count, o, rows);
    }
  }
}

}  // namespace

// cols is a whole number of super-blocks (Kernels::matmul_rows checks). One token (decoding):
// repacking would cost more than it saves, the rows take the dot product one by one.
#define KV_MATMUL_KQUANT_AVX2(name, Traits, dot)                                                     \
  void name(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* act, \
            size_t act_stride, int64_t n, float* out, int64_t out_stride) {                        \
    const uint8_t* wb = static_cast<const uint8_t*>(w);                                            \
    if (n == 1) {                                                                                  \
      for (int64_t r = r0; r < r1; ++r) out[r] = dot(wb + size_t(r) * w_stride, act, cols / kQKK); \
      return;                                                                                      \
    }                                                                                              \
    matmul<Traits>(cols, wb, w_stride, r0, r1, static_cast<const uint8_t*>(act), act_stride, n, out, \
                   out_stride);                                                                    \
  }
KV_MATMUL_KQUANT_AVX2(matmul_q4_K_avx2, Q4K, kAvx2Kernels.dot_q4_K)
KV_MATMUL_KQUANT_AVX2(matmul_q5_K_avx2, Q5K, kAvx2Kernels.dot_q5_K)
KV_MATMUL_KQUANT_AVX2(matmul_q6_K_avx2, Q6K, kAvx2Kernels.dot_q6_K)

}  // namespace kvstash::detail
