// Internal consistency of a State, checked before it is saved or restored.
#pragma once
#include <string>

#include "kvstash/state.h"

namespace kvstash {

// Throws Error("<context>: <what is wrong>") unless: arch values are positive (n_rot <= head_dim,
// n_head a multiple of n_head_kv, rope values finite), cache_type is f16, tokens and positions
// have the same length, tokens lie in [0, n_vocab), positions are non-negative and strictly
// increasing, logits hold n_vocab floats (none for an empty state), and K/V storage exists for a
// non-empty state.
void check_state(const State& state, const std::string& context);

}  // namespace kvstash
