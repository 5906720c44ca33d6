// snapshot: a sequence's cache entries out of the pool into a State; restore: back into a sequence.
// Pool blocks hold, per layer and KV head, [block_tokens][head_dim]; a state holds per layer
// [n_head_kv][tokens][head_dim]. Both copy runs of up to block_tokens entries.
#include <algorithm>
#include <cstring>

#include "kvstash/error.h"
#include "kvstash/state.h"
#include "state/check.h"
#include "state/restore_parts.h"

namespace kvstash {

namespace {

bool same_shape(const KvShape& s, const StateArch& a) {
  return s.n_layer == a.n_layer && s.n_head_kv == a.n_head_kv && s.head_dim == a.head_dim;
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
  // restore_prepare checks everything but the K/V storage, which a streamed state gets later.
  if (state.kv_entries() > 0 && !state.has_kv())
    throw Error(ErrorKind::InvalidArgument, "invalid state: no K/V data");
  restore_prepare(state, model, n_ctx, seq);  // from here on nothing fails
  const int64_t slots = state.kv_entries();
  std::vector<const uint16_t*> k, v;
  for (int l = 0; l < state.arch.n_layer && slots > 0; ++l) {
    k.push_back(state.k(l));
    v.push_back(state.v(l));
  }
  if (slots > 0) restore_slots(seq, 0, slots, k, v, slots, 0);
}

}  // namespace kvstash
