// snapshot: a sequence's cache entries out of the pool into a State; restore: back into a sequence.
// Pool blocks hold, per layer and KV head, [block_tokens][head_dim]; a state holds per layer
// [n_head_kv][tokens][head_dim]. Both copy runs of up to block_tokens entries.
#include <algorithm>
#include <cstring>

#include "kvstash/error.h"
#include "kvstash/state.h"
#include "state/check.h"

namespace kvstash {

namespace {

bool same_shape(const KvShape& s, const StateArch& a) {
  return s.n_layer == a.n_layer && s.n_head_kv == a.n_head_kv && s.head_dim == a.head_dim;
}

std::string arch_text(const StateArch& a) {
  return std::to_string(a.n_layer) + " layers, " + std::to_string(a.n_head) + " heads, " +
         std::to_string(a.n_head_kv) + " KV heads, head_dim " + std::to_string(a.head_dim) +
         ", n_rot " + std::to_string(a.n_rot) + ", vocab " + std::to_string(a.n_vocab) +
         ", rope base " + std::to_string(a.rope_base) + " scale " + std::to_string(a.rope_linear_scale);
}

// Calls fn(block, slot, first_entry, count) for each run of entries that share a pool block.
template <class Fn>
void for_each_block_run(const Sequence& seq, int64_t n, int block_tokens, Fn fn) {
  for (int64_t first = 0; first < n; first += block_tokens)
    fn(seq.block_of(first), seq.slot_of(first), first, std::min<int64_t>(block_tokens, n - first));
}

}  // namespace

State snapshot(const Model& model, const Sequence& seq, int64_t n_ctx, const float* last_logits) {
  const ModelConfig& c = model.config();
  const KvPool& pool = seq.pool();
  State s;
  s.model_fingerprint = model.fingerprint();
  s.arch = state_arch(c);
  s.n_ctx = std::max<int64_t>(n_ctx, seq.size());
  if (!same_shape(pool.shape(), s.arch))
    throw Error(ErrorKind::InvalidArgument, "snapshot: the sequence's KV pool does not match the model");
  if (seq.n_processed() > 0 && !last_logits)
    throw Error(ErrorKind::InvalidArgument, "snapshot: a non-empty sequence needs its last logits");
  s.tokens = seq.tokens();
  s.positions = seq.positions();
  if (seq.budgeted()) s.book = *seq.book();
  if (seq.n_processed() > 0) s.logits.assign(last_logits, last_logits + c.n_vocab);
  if (s.kv_entries() != seq.size())
    throw Error(ErrorKind::Internal, "snapshot: the sequence's book does not match its size");
  s.allocate_kv();

  const int bt = pool.shape().block_tokens;
  const size_t hd = size_t(c.head_dim), n = size_t(seq.size());
  for (int l = 0; l < c.n_layer; ++l) {
    uint16_t* k = s.mutable_k(l);
    uint16_t* v = s.mutable_v(l);
    for (int h = 0; h < c.n_head_kv; ++h)
      for_each_block_run(seq, seq.size(), bt, [&](int32_t b, int slot, int64_t first, int64_t count) {
        const size_t at = (size_t(h) * n + size_t(first)) * hd, bytes = size_t(count) * hd * 2;
        std::memcpy(k + at, pool.k(b, l, h) + size_t(slot) * hd, bytes);
        std::memcpy(v + at, pool.v(b, l, h) + size_t(slot) * hd, bytes);
      });
  }
  return s;
}

void restore(const State& state, const Model& model, int64_t n_ctx, Sequence& seq) {
  const ModelConfig& c = model.config();
  KvPool& pool = seq.pool();
  if (state.model_fingerprint != model.fingerprint())
    throw Error(ErrorKind::ModelMismatch, "state was made by another model (fingerprint " +
                                              state.model_fingerprint.hex() + ", this model " +
                                              model.fingerprint().hex() + ")");
  const StateArch want = state_arch(c);
  if (!(state.arch == want))
    throw Error(ErrorKind::ModelMismatch, "state architecture (" + arch_text(state.arch) +
                                              ") differs from the model's (" + arch_text(want) + ")");
  check_state(state, "invalid state", ErrorKind::InvalidArgument);
  if (!same_shape(pool.shape(), want))
    throw Error(ErrorKind::InvalidArgument, "restore: the sequence's KV pool does not match the model");
  const int64_t slots = state.kv_entries();
  if (slots > n_ctx)
    throw Error(ErrorKind::ResourceExhausted, "state of " + std::to_string(slots) +
                                                  (state.book ? " entries per head" : " tokens") +
                                                  " does not fit the context of " + std::to_string(n_ctx) + " tokens");
  // Positions may run past the entry count (after eviction) but not past what the model was
  // trained for or the context asked for: RoPE beyond both is not what the state's maker ran.
  // A budgeted state is exempt: its cache is bounded by the budget, not its stream, so a long
  // stream's positions grow past any context by design (with original positions; contiguous ones
  // stay below the slot count). Its maker ran those positions, and check_state keeps them below
  // kMaxPosition - 1, so continuing it computes exactly what the unsaved sequence would.
  const int64_t max_position = std::max<int64_t>(n_ctx, c.n_ctx_train);
  if (!state.book && !state.positions.empty() && state.positions.back() >= max_position)
    throw Error(ErrorKind::InvalidArgument, "state position " + std::to_string(state.positions.back()) +
                                                " is beyond the context (" + std::to_string(max_position) +
                                                " positions)");
  // Clearing seq frees the blocks only it holds; the state needs ceil(slots / block_tokens).
  const int bt = pool.shape().block_tokens;
  int64_t freed = 0;
  for (int32_t b : seq.blocks()) freed += pool.refcount(b) == 1 ? 1 : 0;
  const int64_t need = (slots + bt - 1) / bt;
  if (need > pool.free_blocks() + freed)
    throw Error(ErrorKind::ResourceExhausted, "state of " + std::to_string(slots) +
                                                  (state.book ? " entries per head" : " tokens") +
                                                  " does not fit the free KV cache (" +
                                                  std::to_string((pool.free_blocks() + freed) * bt) + " tokens free)");

  if (state.book) {
    // Checks the book once more and changes nothing if it throws; from here on nothing fails.
    seq.assign_budgeted(state.tokens, state.positions, slots, *state.book);
  } else {
    // Validated: from here on nothing can fail. A budgeted sequence becomes an unbudgeted one (it
    // takes the state's budget: none).
    if (seq.budgeted()) seq = Sequence(pool);
    seq.clear();
    seq.append(state.tokens.data(), state.positions.data(), state.size());
  }
  const size_t hd = size_t(c.head_dim), n = size_t(slots);
  for (int l = 0; l < c.n_layer; ++l) {
    const uint16_t* k = state.k(l);
    const uint16_t* v = state.v(l);
    for (int h = 0; h < c.n_head_kv; ++h)
      for_each_block_run(seq, slots, bt, [&](int32_t b, int slot, int64_t first, int64_t count) {
        const size_t at = (size_t(h) * n + size_t(first)) * hd, bytes = size_t(count) * hd * 2;
        std::memcpy(pool.k(b, l, h) + size_t(slot) * hd, k + at, bytes);
        std::memcpy(pool.v(b, l, h) + size_t(slot) * hd, v + at, bytes);
      });
  }
}

}  // namespace kvstash
