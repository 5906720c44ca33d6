// The loop nest the float tiled products of every SIMD level share (matmul_float_avx2.cc,
// matmul_float_avx512.cc). A tile is R weight rows x T tokens with one 8-lane accumulator per
// (row, token) in registers; each loaded (and converted) weight chunk serves T tokens, each
// activation chunk R rows.
//
// Tokens go in blocks of about 64; each weight row is read from memory once per block. When a
// block's activations outgrow L2 (long rows), the columns are cut into panels that a block of
// rows runs over in turn (about 10% faster for 2048 x 8192 f32 rows and 128 tokens with AVX2).
// The 8 lanes of every (row, token) pass from one panel to the next through a state buffer as
// stored floats, so each lane still takes its elements' fmas one after the other in element
// order: the same bits as one pass over the row.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvstash::detail {

// One tile: rows w + i * w_stride (i < rows) times tokens a + j * a_stride (j < tokens), over
// columns [k0, k1). A tile built for more rows repeats the last one and writes only these;
// tokens is always the tile's own count.
struct FloatTile {
  const uint8_t* w;
  size_t w_stride;
  int rows;
  const uint8_t* a;
  size_t a_stride;
  int tokens;
  int64_t k0, k1;  // k0 is a multiple of 8: element k sits in lane k % 8
  bool prefetch;   // fetch the next row tile's weights (rows + R) at the same columns
  bool first;      // lanes start at +0 (as the scalar kernel's); else they load from state
  bool last;       // reduce the lanes into out; else store them to state
  float* state;    // lanes of (row i, token j) at state + j * state_stride + 8 * i
  int64_t state_stride;
  float* out;  // out[j * out_stride + i]
  int64_t out_stride;
};

constexpr int64_t kFloatPanel = 1024;            // columns per panel (a multiple of 8)
constexpr int64_t kFloatPanelBytes = 256 << 10;  // one pass over whole rows if the acts fit this

// Tiles::run(job, R) runs an R x job.tokens tile: R = kRows with 1..kTokens tokens, or, when a
// token block has a single token, R = kDecodeRows. kRowBlock rows (a multiple of both) share one
// pass over the panels.
template <class Tiles>
void matmul_float(int64_t cols, const uint8_t* w, size_t w_stride, int64_t r0, int64_t r1,
                  const uint8_t* act, size_t act_stride, int64_t n, float* out, int64_t out_stride) {
  constexpr int64_t kRowBlock = Tiles::kRowBlock;
  static_assert(kRowBlock % Tiles::kRows == 0 && kRowBlock % Tiles::kDecodeRows == 0);
  constexpr int64_t kTokenBlock = Tiles::kTokens * (64 / Tiles::kTokens);
  thread_local std::vector<float> state;
  for (int64_t t0 = 0; t0 < n; t0 += kTokenBlock) {
    const int64_t nt = std::min(kTokenBlock, n - t0);
    const int rows_per_tile = nt == 1 ? Tiles::kDecodeRows : Tiles::kRows;
    const bool panels = nt * cols * int64_t(sizeof(float)) > kFloatPanelBytes;
    const int64_t panel = panels ? kFloatPanel : std::max<int64_t>(cols, 1);
    const int64_t row_block = panels ? kRowBlock : r1 - r0;
    if (panels) state.resize(size_t(kRowBlock * 8 * nt));
    for (int64_t rb = r0; rb < r1; rb += row_block) {
      const int64_t re = std::min(r1, rb + row_block);
      for (int64_t k0 = 0; k0 < std::max<int64_t>(cols, 1); k0 += panel) {
        FloatTile j{};
        j.w_stride = w_stride;
        j.a_stride = act_stride;
        j.k0 = std::min(k0, cols);
        j.k1 = std::min(cols, k0 + panel);
        j.first = k0 == 0;
        j.last = k0 + panel >= cols;
        j.state_stride = 8 * kRowBlock;
        j.out_stride = out_stride;
        for (int64_t r = rb; r < re; r += rows_per_tile) {
          j.rows = int(std::min<int64_t>(rows_per_tile, re - r));
          j.w = w + size_t(r) * w_stride;
          for (int64_t t = t0; t < t0 + nt; t += Tiles::kTokens) {
            j.tokens = int(std::min<int64_t>(Tiles::kTokens, t0 + nt - t));
            j.a = act + size_t(t) * act_stride;
            j.prefetch = t == t0;  // the first token tile reads the weights from memory
            j.state = panels ? state.data() + (t - t0) * j.state_stride + 8 * (r - rb) : nullptr;
            j.out = out + t * out_stride + r;
            Tiles::run(j, rows_per_tile);
          }
        }
      }
    }
  }
}

}  // namespace kvstash::detail
