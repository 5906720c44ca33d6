// restore() in two steps for streamed K/V: restore_prepare checks and sizes the sequence,
// restore_slots installs each decoded run of slots. The checks repeat restore()'s (snapshot.cc)
// so that a streamed state is refused exactly where a restored one would be.
#include "state/restore_parts.h"

#include <algorithm>
#include <cstring>

#include "state/check.h"

namespace kvstash {

void set_views(State& s, std::shared_ptr<const void> keep, std::vector<const uint16_t*> k,
               std::vector<const uint16_t*> v);

namespace {

std::string arch_text(const StateArch& a) {
  return std::to_string(a.n_layer) + " layers, " + std::to_string(a.n_head) + " heads, " +
         std::to_string(a.n_head_kv) + " KV heads, head_dim " + std::to_string(a.head_dim) +
         ", n_rot " + std::to_string(a.n_rot) + ", vocab " + std::to_string(a.n_vocab) +
         ", rope base " + std::to_string(a.rope_base) + " scale " + std::to_string(a.rope_linear_scale);
}

}  // namespace

void check_state_meta(const State& meta, const std::string& context, ErrorKind kind) {
  // check_state requires K/V storage of the described shape but never reads it: views onto one
  // shared zero value satisfy that check and let every other check run on meta's values.
  static const uint16_t kNothing[1] = {0};
  State s = meta;
  const size_t layers = s.arch.n_layer > 0 ? size_t(s.arch.n_layer) : 0;
  set_views(s, nullptr, std::vector<const uint16_t*>(layers, kNothing), std::vector<const uint16_t*>(layers, kNothing));
  check_state(s, context, kind);
}

void restore_prepare(const State& meta, const Model& model, int64_t n_ctx, Sequence& seq) {
  const ModelConfig& c = model.config();
  KvPool& pool = seq.pool();
  if (meta.model_fingerprint != model.fingerprint())
    throw Error(ErrorKind::ModelMismatch, "state was made by another model (fingerprint " +
                                              meta.model_fingerprint.hex() + ", this model " +
                                              model.fingerprint().hex() + ")");
  const StateArch want = state_arch(c);
  if (!(meta.arch == want))
    throw Error(ErrorKind::ModelMismatch, "state architecture (" + arch_text(meta.arch) +
                                              ") differs from the model's (" + arch_text(want) + ")");
  check_state_meta(meta, "invalid state", ErrorKind::InvalidArgument);
  const KvShape& shape = pool.shape();
  if (shape.n_layer != want.n_layer || shape.n_head_kv != want.n_head_kv || shape.head_dim != want.head_dim)
    throw Error(ErrorKind::InvalidArgument, "restore: the sequence's KV pool does not match the model");
  const int64_t slots = meta.kv_entries();
  const char* unit = meta.book ? " entries per head" : " tokens";
  if (slots > n_ctx)
    throw Error(ErrorKind::ResourceExhausted, "state of " + std::to_string(slots) + unit +
                                                  " does not fit the context of " + std::to_string(n_ctx) + " tokens");
  const int64_t max_position = std::max<int64_t>(n_ctx, c.n_ctx_train);
  if (!meta.book && !meta.positions.empty() && meta.positions.back() >= max_position)
    throw Error(ErrorKind::InvalidArgument, "state position " + std::to_string(meta.positions.back()) +
                                                " is beyond the context (" + std::to_string(max_position) +
                                                " positions)");
  const int bt = shape.block_tokens;
  int64_t freed = 0;
  for (int32_t b : seq.blocks()) freed += pool.refcount(b) == 1 ? 1 : 0;
  const int64_t need = (slots + bt - 1) / bt;
  if (need > pool.free_blocks() + freed)
    throw Error(ErrorKind::ResourceExhausted, "state of " + std::to_string(slots) + unit +
                                                  " does not fit the free KV cache (" +
                                                  std::to_string((pool.free_blocks() + freed) * bt) + " tokens free)");
  if (meta.book) {
    seq.assign_budgeted(meta.tokens, meta.positions, slots, *meta.book);
  } else {
    if (seq.budgeted()) seq = Sequence(pool);
    seq.clear();
    seq.append(meta.tokens.data(), meta.positions.data(), meta.size());
  }
}

void restore_slots(Sequence& seq, int64_t first, int64_t count, const std::vector<const uint16_t*>& k,
                   const std::vector<const uint16_t*>& v, int64_t stride, int64_t src_first) {
  KvPool& pool = seq.pool();
  const KvShape& shape = pool.shape();
  if (first < 0 || count < 0 || first + count > seq.size() || src_first < 0 || src_first + count > stride ||
      k.size() != size_t(shape.n_layer) || v.size() != size_t(shape.n_layer))
    throw Error(ErrorKind::InvalidArgument, "restore_slots: slots [" + std::to_string(first) + ", " +
                                                std::to_string(first + count) + ") do not fit the sequence or the staging buffers");
  const size_t hd = size_t(shape.head_dim);
  const int bt = shape.block_tokens;
  for (int64_t at = first; at < first + count;) {
    const int64_t run = std::min<int64_t>(bt - seq.slot_of(at), first + count - at);
    const int32_t b = seq.block_of(at);
    const size_t dst = size_t(seq.slot_of(at)) * hd, bytes = size_t(run) * hd * 2;
    for (int l = 0; l < shape.n_layer; ++l)
      for (int h = 0; h < shape.n_head_kv; ++h) {
        const size_t src = (size_t(h) * size_t(stride) + size_t(src_first + at - first)) * hd;
        std::memcpy(pool.k(b, l, h) + dst, k[size_t(l)] + src, bytes);
        std::memcpy(pool.v(b, l, h) + dst, v[size_t(l)] + src, bytes);
      }
    at += run;
  }
}

}  // namespace kvstash
