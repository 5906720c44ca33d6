// Internal consistency of a State, checked before it is saved or restored.
#pragma once
#include <string>

#include "kvstash/error.h"
#include "kvstash/state.h"

namespace kvstash {

// Bounds on what a state may describe (any real model is far inside them); tokens and n_ctx are
// bounded by KvPool::kMaxTokens.
inline constexpr int kMaxStateDim = 1 << 16;    // layers, heads, head size
inline constexpr int kMaxStateVocab = 1 << 24;

// Throws Error(kind, "<context>: <what is wrong>") unless: arch values are positive and bounded
// (n_rot <= head_dim, n_head a multiple of n_head_kv, rope values finite), cache_type is f16,
// tokens and positions have the same length, n_ctx holds the entries, tokens lie in [0, n_vocab),
// positions are non-negative, strictly increasing and leave room for one more, logits hold n_vocab
// finite floats (none for an empty state), and K/V storage exists for a non-empty state.
// kind: Corruption for what a file held, InvalidArgument for a state built in memory.
void check_state(const State& state, const std::string& context, ErrorKind kind);

}  // namespace kvstash
