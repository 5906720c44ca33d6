// Tiled AVX-512 (VNNI) products for the k-quants: 16 weight rows x T tokens at a time, one row per
// int32 lane. The 16 rows are repacked ("panel"): quad k of a super-block is a zmm holding
// elements 4k..4k+3 of the 16 rows as unsigned bytes, so that one vpdpbusd with 4 activation
// bytes broadcast adds 64 exact products into the 16 rows' sums and no horizontal sum is ever
// needed. The scales, mins and f16 factors are repacked row-in-lane too. With more than 8 tokens
// the whole panel is repacked once and reused by every group of 8 tokens; with 2..8 tokens each
// super-block is repacked into one L1-resident buffer and used at once; one token (decoding)
// takes the dot product row by row.
//
// Bits: per (row, token) this is vec_dot's computation. isum = sum_g sc_g * (group sum), exact in
// int32; q4_K / q5_K: msum = sum_j min_j * (bsum_2j + bsum_2j+1) (q4k_min_sum); q6_K: the
// offset 32 * sum_g sc_g * bsum_g (q6k_offset_sum) is subtracted inside the int32 sum. Then
// fma_k / fma_q6_K into lane b % 8 (one zmm per lane, 16 rows wide) and reduce_lanes.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "tensor/kquant_kernels.h"


namespace kvstash::detail {

namespace {

constexpr int kPanelRows = 16;
constexpr int kTokens = 8;  // tokens per tile (the int32 sums of all of them stay in registers)

// One super-block of a 16-row panel, rows in lanes.
struct alignas(64) PanelBlock {
  int32_t q[64][kPanelRows];   // quad k: unsigned quants of elements 4k..4k+3 of each row
  int32_t sc[16][kPanelRows];  // scale of each group (q4_K / q5_K: 8 groups of 32; q6_K: 16 of 16)
  int32_t bm[8][kPanelRows];   // multipliers of the activation's bsums 2j, 2j+1 as two int16
  float d[kPanelRows], dmin[kPanelRows];
};

KV_AVX512 inline __m512i set1(int32_t v) { return _mm512_set1_epi32(v); }
KV_AVX512 inline void store(int32_t* p, __m512i v) { _mm512_store_si512(p, v); }
KV_AVX512 inline int32_t load_i32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
KV_AVX512 inline float load_f32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}
// Byte `byte` of each int32 lane, zero-extended.
KV_AVX512 inline __m512i byte_of(__m512i v, int byte) {
  return _mm512_and_si512(_mm512_srli_epi32(v, unsigned(8 * byte)), set1(0xFF));
}

// 4 x 4 transpose of dwords inside each 128-bit lane: o[j] lane L = dword j of v[0..3] lane L.
KV_AVX512 inline void transpose_in_lanes(const __m512i v[4], __m512i o[4]) {
  const __m512i t0 = _mm512_unpacklo_epi32(v[0], v[1]), t1 = _mm512_unpackhi_epi32(v[0], v[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(v[2], v[3]), t3 = _mm512_unpackhi_epi32(v[2], v[3]);
  o[0] = _mm512_unpacklo_epi64(t0, t2), o[1] = _mm512_unpackhi_epi64(t0, t2);
  o[2] = _mm512_unpacklo_epi64(t1, t3), o[3] = _mm512_unpackhi_epi64(t1, t3);
}

// The 16 rows of a panel at one block: dword i of a field, all rows, as one zmm (lane = row).
struct Rows {
  const uint8_t* p[kPanelRows];  // the block's first byte in each row

  // 16 dwords at byte offset off: out[i] lane r = dword i of row r (a 16 x 16 transpose).
  KV_AVX512 void dwords16(size_t off, __m512i out[16]) const {
    __m512i b[16];
    for (int q = 0; q < 4; ++q) {  // rows 4q..4q+3: b[4q + j] lane L = their dword 4L + j
      const __m512i v[4] = {_mm512_loadu_si512(p[4 * q] + off), _mm512_loadu_si512(p[4 * q + 1] + off),
                            _mm512_loadu_si512(p[4 * q + 2] + off), _mm512_loadu_si512(p[4 * q + 3] + off)};
      transpose_in_lanes(v, b + 4 * q);
    }
    for (int j = 0; j < 4; ++j) {  // 4 x 4 transpose of 128-bit lanes across b[j], b[4+j], ...
      const __m512i c0 = _mm512_shuffle_i32x4(b[j], b[4 + j], 0x44), c1 = _mm512_shuffle_i32x4(b[j], b[4 + j], 0xEE);
      const __m512i c2 = _mm512_shuffle_i32x4(b[8 + j], b[12 + j], 0x44);
      const __m512i c3 = _mm512_shuffle_i32x4(b[8 + j], b[12 + j], 0xEE);
      out[j] = _mm512_shuffle_i32x4(c0, c2, 0x88), out[4 + j] = _mm512_shuffle_i32x4(c0, c2, 0xDD);
      out[8 + j] = _mm512_shuffle_i32x4(c1, c3, 0x88), out[12 + j] = _mm512_shuffle_i32x4(c1, c3, 0xDD);
    }
  }
  // 4 dwords at byte offset off: out[j] lane r = dword j of row r.
  KV_AVX512 void dwords4(size_t off, __m512i out[4]) const {
    __m512i v[4];  // v[a]: rows a, a + 4, a + 8, a + 12 in its 128-bit lanes
    for (int a = 0; a < 4; ++a) {
      const auto row = [&](int r) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[r] + off)); };
      v[a] = _mm512_inserti32x4(_mm512_inserti32x4(_mm512_inserti32x4(_mm512_castsi128_si512(row(a)), row(a + 4), 1),
                                                   row(a + 8), 2),
                                row(a + 12), 3);
    }
    transpose_in_lanes(v, out);
  }
};

// q4_K / q5_K head (dwords: d | dmin << 16, then the 12 scale bytes): unpack_k4_scales lane-wise.
KV_AVX512 inline void pack_k4_head(const __m512i h[4], PanelBlock& p) {
  _mm512_store_ps(p.d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h[0])));
  _mm512_store_ps(p.dmin, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(h[0], 16))));
  const __m512i s0 = h[1], s1 = h[2], s2 = h[3];
  const __m512i m6 = set1(0x3F3F3F3F), m4 = set1(0x0F0F0F0F), top = set1(0x30303030);
  const __m512i sc_lo = _mm512_and_si512(s0, m6), mn_lo = _mm512_and_si512(s1, m6);
  // Bits 6-7 of bytes 0-7 become bits 4-5 of scales / mins 4-7 (bits shifted in from the next
  // byte fall outside the mask).
  const __m512i sc_hi = _mm512_or_si512(_mm512_and_si512(s2, m4),
                                        _mm512_and_si512(_mm512_srli_epi32(s0, 2), top));
  const __m512i mn_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(s2, 4), m4),
                                        _mm512_and_si512(_mm512_srli_epi32(s1, 2), top));
  for (int j = 0; j < 4; ++j) {
    store(p.sc[j], byte_of(sc_lo, j));
    store(p.sc[j + 4], byte_of(sc_hi, j));
    const __m512i mn0 = byte_of(mn_lo, j), mn1 = byte_of(mn_hi, j);
    store(p.bm[j], _mm512_or_si512(mn0, _mm512_slli_epi32(mn0, 16)));
    store(p.bm[j + 4], _mm512_or_si512(mn1, _mm512_slli_epi32(mn1, 16)));
  }
}

struct Q4K {
  static constexpr size_t kBlockBytes = sizeof(BlockQ4_K);
  static constexpr int kGroups = 8, kQuadsPerGroup = 8;
  static constexpr bool kMins = true;
  // Quant dword i of qs (chunk c = i / 8, word m = i % 8): low nibbles are quad 16c + m, high
  // nibbles quad 16c + 8 + m (unpack_q4_K).
  static KV_AVX512 void pack(const Rows& rows, PanelBlock& p) {
    __m512i h[4];
    rows.dwords4(0, h);
    pack_k4_head(h, p);
    const __m512i m4 = set1(0x0F0F0F0F);
    for (int half = 0; half < 2; ++half) {
      __m512i x[16];
      rows.dwords16(offsetof(BlockQ4_K, qs) + 64 * half, x);
      for (int i = 0; i < 16; ++i) {
        const int c = 2 * half + i / 8, m = i % 8;
        store(p.q[16 * c + m], _mm512_and_si512(x[i], m4));
        store(p.q[16 * c + 8 + m], _mm512_and_si512(_mm512_srli_epi32(x[i], 4), m4));
      }
    }
  }
};

struct Q5K {
  static constexpr size_t kBlockBytes = sizeof(BlockQ5_K);
  static constexpr int kGroups = 8, kQuadsPerGroup = 8;
  static constexpr bool kMins = true;
  // As q4_K, plus the 5th bit: bit 2c (low nibbles) or 2c + 1 (high) of qh[l] (unpack_q5_K).
  static KV_AVX512 void pack(const Rows& rows, PanelBlock& p) {
    __m512i h[4], qh[8];
    rows.dwords4(0, h);
    pack_k4_head(h, p);
    rows.dwords4(offsetof(BlockQ5_K, qh), qh);
    rows.dwords4(offsetof(BlockQ5_K, qh) + 16, qh + 4);
    const __m512i m4 = set1(0x0F0F0F0F), b4 = set1(0x10101010);
    for (int half = 0; half < 2; ++half) {
      __m512i x[16];
      rows.dwords16(offsetof(BlockQ5_K, qs) + 64 * half, x);
      for (int i = 0; i < 16; ++i) {
        const int c = 2 * half + i / 8, m = i % 8;
        // bit 2c (or 2c + 1) of each byte moved to bit 4
        const __m512i h0 = 2 * c <= 4 ? _mm512_slli_epi32(qh[m], unsigned(4 - 2 * c))
                                      : _mm512_srli_epi32(qh[m], unsigned(2 * c - 4));
        const __m512i h1 = 2 * c + 1 <= 4 ? _mm512_slli_epi32(qh[m], unsigned(3 - 2 * c))
                                          : _mm512_srli_epi32(qh[m], unsigned(2 * c - 3));
        store(p.q[16 * c + m], _mm512_or_si512(_mm512_and_si512(x[i], m4), _mm512_and_si512(h0, b4)));
        store(p.q[16 * c + 8 + m], _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(x[i], 4), m4),
                                                   _mm512_and_si512(h1, b4)));
      }
    }
  }
};

struct Q6K {
  static constexpr size_t kBlockBytes = sizeof(BlockQ6_K);
  static constexpr int kGroups = 16, kQuadsPerGroup = 4;
  static constexpr bool kMins = false;
  // Element 128h + 32k + l: nibble k / 2 of ql[64h + 32(k % 2) + l], bits 2k..2k+1 of
  // qh[32h + l] on top (unpack_q6_K); quad 32h + 8k + m covers l = 4m..4m+3.
  static KV_AVX512 void pack(const Rows& rows, PanelBlock& p) {
    // d is the block's last two bytes: the dword ending there (never read past the block).
    alignas(64) int32_t dw[kPanelRows];
    for (int r = 0; r < kPanelRows; ++r) dw[r] = load_i32(rows.p[r] + offsetof(BlockQ6_K, d) - 2);
    _mm512_store_ps(p.d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_load_si512(dw), 16))));
    __m512i s[4], sc[16];
    rows.dwords4(offsetof(BlockQ6_K, scales), s);
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) {  // scales are int8: sign-extend byte j of dword i
        sc[4 * i + j] = _mm512_srai_epi32(_mm512_slli_epi32(s[i], unsigned(24 - 8 * j)), 24);
        store(p.sc[4 * i + j], sc[4 * i + j]);
      }
    // bsum pair (2j, 2j+1) weighs -32 * sc: the offset enters the int32 sum as two int16 products.
    for (int j = 0; j < 8; ++j) {
      const __m512i lo = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sc[2 * j], 5));
      const __m512i hi = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sc[2 * j + 1], 5));
      store(p.bm[j], _mm512_or_si512(_mm512_and_si512(lo, set1(0xFFFF)), _mm512_slli_epi32(hi, 16)));
    }
    const __m512i m4 = set1(0x0F0F0F0F), m2 = set1(0x03030303);
    __m512i qh[16];
    rows.dwords16(offsetof(BlockQ6_K, qh), qh);  // qh dword 8h + m
    for (int h = 0; h < 2; ++h) {
      __m512i x[16];
      rows.dwords16(offsetof(BlockQ6_K, ql) + 64 * h, x);  // ql dword 16h + 8 * half + m
      for (int half = 0; half < 2; ++half)
        for (int m = 0; m < 8; ++m)
          for (int nib = 0; nib < 2; ++nib) {
            const int k = 2 * nib + half;
            const __m512i lo = _mm512_and_si512(nib ? _mm512_srli_epi32(x[8 * half + m], 4) : x[8 * half + m], m4);
            const __m512i hb = _mm512_and_si512(_mm512_srli_epi32(qh[8 * h + m], unsigned(2 * k)), m2);
            store(p.q[32 * h + 8 * k + m], _mm512_or_si512(lo, _mm512_slli_epi32(hb, 4)));
          }
    }
  }
};

// Repacks `rows` (1..16) rows of nb super-blocks; missing rows repeat the last one. Meanwhile
// prefetches the bytes [next, next + next_bytes) (the next panel: its rows are one contiguous
// run, which the hardware prefetcher would not see in this row-interleaved order).
template <class Tr>
KV_AVX512 void pack_panel(const uint8_t* w, size_t w_stride, int rows, int64_t nb, PanelBlock* out,
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

// The running sums of one panel times T tokens (activation rows a[t]), one block at a time.
template <class Tr, int T>
struct Tile {
  __m512 acc[8][T];  // acc[l][t]: lane l of the 16 rows' results for token t

  KV_AVX512 void clear() {
#pragma GCC unroll 8
    for (int l = 0; l < 8; ++l)
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) acc[l][t] = _mm512_setzero_ps();
  }

  // Block b: the exact int32 sums, then fma_k / fma_q6_K into lane b % 8.
  KV_AVX512 void add_block(const PanelBlock& p, const uint8_t* const* a, int64_t b) {
    constexpr size_t kQs = offsetof(BlockQ8_K, qs), kBsums = offsetof(BlockQ8_K, bsums);
    const uint8_t* y[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) y[t] = a[t] + size_t(b) * sizeof(BlockQ8_K);
    __m512i isum[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
#pragma GCC unroll 16
    for (int g = 0; g < Tr::kGroups; ++g) {
      __m512i s[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) s[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int k = 0; k < Tr::kQuadsPerGroup; ++k) {
        const int quad = g * Tr::kQuadsPerGroup + k;
        const __m512i w = _mm512_load_si512(p.q[quad]);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t)
          s[t] = _mm512_dpbusd_epi32(s[t], w, set1(load_i32(y[t] + kQs + 4 * quad)));
      }
      const __m512i sc = _mm512_load_si512(p.sc[g]);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(s[t], sc));
    }
    const __m512 d = _mm512_load_ps(p.d);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      __m512i m = Tr::kMins ? _mm512_setzero_si512() : isum[t];
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j)
        m = _mm512_dpwssd_epi32(m, _mm512_load_si512(p.bm[j]), set1(load_i32(y[t] + kBsums + 4 * j)));
      const __m512 dx = _mm512_set1_ps(load_f32(y[t]));
      __m512& lane = acc[b % 8][t];
      if constexpr (Tr::kMins) {
        const __m512 neg_mdx = _mm512_castsi512_ps(_mm512_xor_si512(
            _mm512_castps_si512(_mm512_mul_ps(_mm512_load_ps(p.dmin), dx)), set1(INT32_MIN)));
        lane = _mm512_fmadd_ps(_mm512_mul_ps(d, dx), _mm512_cvtepi32_ps(isum[t]), lane);
        lane = _mm512_fmadd_ps(neg_mdx, _mm512_cvtepi32_ps(m), lane);
      } else {
        lane = _mm512_fmadd_ps(_mm512_mul_ps(d, dx), _mm512_cvtepi32_ps(m), lane);
      }
    }
  }

  // reduce_lanes per row; the first `count` tokens' results (rows under `mask`) go to o[t].
  KV_AVX512 void store(float* const* o, int count, __mmask16 mask) const {
#pragma GCC unroll 8
    for (int t = 0; t < count; ++t) {
      const __m512 r = _mm512_add_ps(
          _mm512_add_ps(_mm512_add_ps(acc[0][t], acc[4][t]), _mm512_add_ps(acc[2][t], acc[6][t])),
          _mm512_add_ps(_mm512_add_ps(acc[1][t], acc[5][t]), _mm512_add_ps(acc[3][t], acc[7][t])));
      _mm512_mask_storeu_ps(o[t], mask, r);
    }
  }
};

// A repacked panel times T tokens.
template <class Tr, int T>
KV_AVX512 void panel_tokens(const PanelBlock* panel, int64_t nb, const uint8_t* const* a, int count,
                            float* const* o, __mmask16 mask) {
  Tile<Tr, T> tile;
  tile.clear();
  for (int t = 0; t < count; ++t) {  // the output lines, cold in a large product, arrive meanwhile
    _mm_prefetch(reinterpret_cast<const char*>(o[t]), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(o[t] + kPanelRows - 1), _MM_HINT_T0);
  }
  for (int64_t b = 0; b < nb; ++b) tile.add_block(panel[b], a, b);
  tile.store(o, count, mask);
}

// Few tokens: each block is repacked into one small buffer (it stays in L1) and used at once.
template <class Tr, int T>
KV_AVX512 void stream_tokens(const Rows& rows, int64_t nb, const uint8_t* next, size_t next_bytes,
                             const uint8_t* const* a, int count, float* const* o, __mmask16 mask) {
  alignas(64) PanelBlock p;
  Tile<Tr, T> tile;
  tile.clear();
  Rows r = rows;
  const size_t lines = (next_bytes + 63) / 64;
  for (int64_t b = 0; b < nb; ++b) {
    for (size_t l = lines * size_t(b) / size_t(nb); l < lines * size_t(b + 1) / size_t(nb); ++l)
      _mm_prefetch(reinterpret_cast<const char*>(next + 64 * l), _MM_HINT_T0);
    Tr::pack(r, p);
    tile.add_block(p, a, b);
    for (int i = 0; i < kPanelRows; ++i) r.p[i] += Tr::kBlockBytes;
  }
  tile.store(o, count, mask);
}

template <class Tr>
KV_AVX512 void matmul(int64_t cols, const uint8_t* w, size_t w_stride, int64_t r0, int64_t r1,
                      const uint8_t* act, size_t act_stride, int64_t n, float* out, int64_t out_stride) {
  const int64_t nb = cols / kQKK;
  thread_local std::vector<PanelBlock> panel;
  if (n > kTokens && panel.size() < size_t(nb)) panel.resize(size_t(nb));
  for (int64_t r = r0; r < r1; r += kPanelRows) {
    const int rows = int(std::min<int64_t>(kPanelRows, r1 - r));
    const int64_t next_rows = std::min<int64_t>(kPanelRows, r1 - r - rows);
    const uint8_t* next = w + size_t(r + rows) * w_stride;
    const size_t next_bytes = next_rows > 0 ? size_t(next_rows) * w_stride : 0;
    const __mmask16 mask = __mmask16((1u << rows) - 1);
    if (n > kTokens) pack_panel<Tr>(w + size_t(r) * w_stride, w_stride, rows, nb, panel.data(), next, next_bytes);
    Rows rr;
    for (int i = 0; i < kPanelRows; ++i) rr.p[i] = w + size_t(r + std::min(i, rows - 1)) * w_stride;
    for (int64_t t0 = 0; t0 < n; t0 += kTokens) {
      const int count = int(std::min<int64_t>(kTokens, n - t0));
      const uint8_t* a[kTokens];
      float* o[kTokens];
      for (int t = 0; t < kTokens; ++t) {  // past count: repeat the last token, results unused
        const int64_t tt = t0 + std::min(t, count - 1);
        a[t] = act + size_t(tt) * act_stride;
        o[t] = out + tt * out_stride + r;
      }
      if (n <= kTokens) {
        if (count > 4) stream_tokens<Tr, 8>(rr, nb, next, next_bytes, a, count, o, mask);
        else if (count > 2) stream_tokens<Tr, 4>(rr, nb, next, next_bytes, a, count, o, mask);
        else if (count == 2) stream_tokens<Tr, 2>(rr, nb, next, next_bytes, a, count, o, mask);
        else stream_tokens<Tr, 1>(rr, nb, next, next_bytes, a, count, o, mask);
      } else if (count > 4) {
        panel_tokens<Tr, 8>(panel.data(), nb, a, count, o, mask);
      } else if (count > 2) {
        panel_tokens<Tr, 4>(panel.data(), nb, a, count, o, mask);
      } else if (count == 2) {
        panel_tokens<Tr, 2>(panel.data(), nb, a, count, o, mask);
      } else {
        panel_tokens<Tr, 1>(panel.data(), nb, a, count, o, mask);
      }
    }
  }
}

}  // namespace

// cols is a whole number of super-blocks (Kernels::matmul_rows checks). One token (decoding):
// repacking costs more than it saves, and reading the rows one after the other streams from
// memory fastest: the rows take the dot product one by one.
#define KV_MATMUL_KQUANT_AVX512(name, Traits, dot)                                                 \
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
KV_MATMUL_KQUANT_AVX512(matmul_q4_K_avx512, Q4K, dot_q4_K_avx512)
KV_MATMUL_KQUANT_AVX512(matmul_q5_K_avx512, Q5K, dot_q5_K_avx512)
KV_MATMUL_KQUANT_AVX512(matmul_q6_K_avx512, Q6K, dot_q6_K_avx512)

}  // namespace kvstash::detail
