// Element-wise and per-row operations of the forward pass. Each is a fixed sequence of float
// operations, so results do not depend on batching or threads.
#pragma once
#include <cstdint>
#include <vector>

#include "kvstash/kernels.h"
#include "kvstash/kv_cache.h"

namespace kvstash {

void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out);
// Rotates adjacent pairs (x[2i], x[2i+1]) of the first n_rot dims of each head (GGUF llama order).
void rope(float* x, int n_heads, int head_dim, int n_rot, int32_t pos, const std::vector<double>& inv_freq);
void softmax(float* x, int64_t n);
void swiglu(float* gate, const float* up, int64_t n);  // gate = silu(gate) * up
// Writes one token's K and V (all KV heads) into its cache slot as f16.
void store_kv(const Kernels& kernels, KvPool& pool, int32_t block, int slot, int layer, int n_head_kv, int head_dim,
              const float* k, const float* v);

}  // namespace kvstash
