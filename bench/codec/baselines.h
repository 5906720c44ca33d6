// The schemes docs/codec.md compares the .kvz codec with, reimplemented on a State's f16 K/V: plain
// per-token quantisation, KIVI-style 2-bit, llama.cpp's q8_0/q4_0 blocks and CacheGen's scheme (as a
// setting of kvstash's own chunk codec). Each gives back the state a loader would see (K/V
// dequantised and rounded to f16, everything else as in the input) and the bytes its K/V take.
#pragma once
#include <cstdint>
#include <vector>

#include "kvstash/state.h"

namespace kvstash::bench {

struct Coded {
  State state;            // the reconstruction (tokens, positions, logits, book shared with the input)
  uint64_t kv_bytes = 0;  // K/V payload: codes, scales, minima, f16 tails (packed, no padding)
};

// Symmetric max-abs quantisation per (layer, head, token) over head_dim with an f16 scale:
// s = f16(amax / qmax), q = clamp(round(x / s), -qmax, qmax), x' = q s; qmax = 2^(bits-1) - 1.
Coded per_token(const State& s, int bits);
// KIVI-style: keys per channel (groups of `group` tokens), values per token (groups of `group`
// channels), asymmetric 2-bit with an f16 scale and minimum per group; the last `recent` tokens of
// every head stay f16 (KIVI's full-precision window).
Coded kivi2(const State& s, int group = 32, int64_t recent = 128);
// llama.cpp's block formats along head_dim, as ggml-quants.c's quantize_row_q8_0_ref /
// quantize_row_q4_0_ref and dequantize_row_*: 34 and 18 bytes per block of 32.
Coded q8_0(const State& s);
Coded q4_0(const State& s);
// CacheGen's scheme (codec::cachegen_level()): every chunk of chunk_tokens slots through
// codec::encode_chunk / decode_chunk; kv_bytes is the sum of the chunks' payloads.
Coded cachegen(const State& s, int chunk_tokens = 256);

// Row primitives (n values in, n reconstructed values out), exposed for the self-check.
void per_token_row(const float* x, float* y, int n, int bits);
void asym2_group(const float* x, float* y, int64_t n, int64_t stride);  // x[i * stride], i < n
void q8_0_block(const float* x, float* y);  // 32 values
void q4_0_block(const float* x, float* y);  // 32 values

}  // namespace kvstash::bench
