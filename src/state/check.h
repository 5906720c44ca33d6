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
// tokens and positions have the same length, n_ctx holds the kv_entries(), tokens lie in
// [0, n_vocab), positions are non-negative, strictly increasing (for a budgeted state with
// contiguous positions: at most the entry's index instead) and leave room for one more, logits
// hold n_vocab finite floats (none for an empty state), and K/V storage exists for a non-empty
// state. A book (budgeted state) must describe what a Sequence can hold: a valid KvBudget, one
// lane of entries and scores per layer and KV head, all of kv_entries() slots, entries strictly
// increasing stream indices in [0, size()) apart from the summary slot (budget - 1, entry -1,
// present exactly when has_summary and then with merged > 0 in every lane), finite scores,
// at least min(size(), budget) and at most budget + interval slots (any number up to size() before
// SnapKV's selection), merged
// counts that the stream can account for, pinned <= min(slots, budget).
// kind: Corruption for what a file held, InvalidArgument for a state built in memory.
void check_state(const State& state, const std::string& context, ErrorKind kind);

}  // namespace kvstash
