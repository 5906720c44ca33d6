// Restoring a state whose K/V arrive in pieces (a streamed .kvz): the header first, then runs of
// slots as they are decoded. Together they do what restore() does, in the same order of checks.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kvstash/error.h"
#include "kvstash/state.h"

namespace kvstash {

// check_state for a state without K/V storage (`meta`: tokens, positions, logits, book, arch):
// every check but the presence of K/V.
void check_state_meta(const State& meta, const std::string& context, ErrorKind kind);

// Checks `meta` against the model and seq's pool exactly as restore() does (ModelMismatch,
// InvalidArgument, ResourceExhausted; seq untouched on error), then gives seq the state's tokens,
// positions, book and kv_entries() slots whose K/V are left for restore_slots to write.
void restore_prepare(const State& meta, const Model& model, int64_t n_ctx, Sequence& seq);

// Copies slots [first, first + count) of every layer and KV head into seq's blocks from staging
// K/V laid out as a State's: k[layer] and v[layer] are [n_head_kv][stride][head_dim], slot `first`
// at index src_first of each head. The range must lie within seq.size() (InvalidArgument).
void restore_slots(Sequence& seq, int64_t first, int64_t count, const std::vector<const uint16_t*>& k,
                   const std::vector<const uint16_t*>& v, int64_t stride, int64_t src_first);

}  // namespace kvstash
