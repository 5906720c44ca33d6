// Element-wise and per-row operations of the forward pass. Each is a fixed sequence of float
// operations, so results do not depend on batching or threads.
#pragma once
#include <cstdint>
#include <vector>

namespace kvstash {

void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out);
// Rotates adjacent pairs (x[2i], x[2i+1]) of the first n_rot dims of each head (GGUF llama order).
void rope(float* x, int n_heads, int head_dim, int n_rot, int32_t pos, const std::vector<double>& inv_freq);
// rope in two steps, the same bits: the angles of a position once (cos, sin of each of the n_rot / 2
// pairs: 2 * (n_rot / 2) floats), then the rotation of elements [begin, end) of a row of heads
// (begin and end even, head_dim even: pairs are never split).
void rope_angles(int32_t pos, int n_rot, const std::vector<double>& inv_freq, float* cos_sin);
void rope_span(float* x, int64_t begin, int64_t end, int head_dim, int n_rot, const float* cos_sin);
void swiglu(float* gate, const float* up, int64_t n);  // gate = silu(gate) * up

}  // namespace kvstash
