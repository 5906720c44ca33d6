// load_state_into: a .kvs file straight into a sequence in one pass over its K/V from memory: each
// layer's K and V are copied into the block pool and then hashed while they are still in cache,
// instead of one pass to verify everything (load_state) and another to copy it (restore).
#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "kvstash/error.h"
#include "kvstash/thread_pool.h"
#include "state/kvs_read.h"
#include "state/restore_parts.h"

namespace kvstash {

namespace {

// Copies layer `layer`'s K and V ([n_head_kv][slots][head_dim] each) into seq's blocks, block by
// block (each block's rows of the layer are one contiguous run in the pool).
void copy_layer(Sequence& seq, int layer, const uint16_t* k, const uint16_t* v, int64_t slots) {
  KvPool& pool = seq.pool();
  const KvShape& shape = pool.shape();
  const size_t hd = size_t(shape.head_dim);
  for (int64_t at = 0; at < slots;) {
    const int64_t run = std::min<int64_t>(shape.block_tokens - seq.slot_of(at), slots - at);
    const int32_t b = seq.block_of(at);
    const size_t dst = size_t(seq.slot_of(at)) * hd, bytes = size_t(run) * hd * 2;
    for (int h = 0; h < shape.n_head_kv; ++h) {
      const size_t src = (size_t(h) * size_t(slots) + size_t(at)) * hd;
      std::memcpy(pool.k(b, layer, h) + dst, k + src, bytes);
    }
    for (int h = 0; h < shape.n_head_kv; ++h) {
      const size_t src = (size_t(h) * size_t(slots) + size_t(at)) * hd;
      std::memcpy(pool.v(b, layer, h) + dst, v + src, bytes);
    }
    at += run;
  }
}

std::string hex64(uint64_t h) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

}  // namespace

State load_state_into(const std::string& path, const Model& model, int64_t n_ctx, Sequence& seq,
                      ThreadPool* threads) {
  std::vector<kvs::DeferredChecksum> sums;
  State s = kvs::load_state_unverified_kv(path, sums);
  restore_prepare(s, model, n_ctx, seq);  // the checks of restore(); seq untouched if they fail
  const int64_t slots = s.kv_entries();
  if (slots == 0) return s;
  if (sums.size() != size_t(2 * s.arch.n_layer)) throw Error(ErrorKind::Internal, path + ": K/V checksums missing");
  const size_t bytes = s.kv_elements() * 2;
  std::vector<uint8_t> bad(sums.size(), 0);
  auto layers = [&](int64_t begin, int64_t end, int) {
    for (int64_t l = begin; l < end; ++l) {
      copy_layer(seq, int(l), s.k(int(l)), s.v(int(l)), slots);
      // The layer's K and V were just read: hashing them now reads the cache, not memory again.
      for (int which = 0; which < 2; ++which)
        bad[size_t(2 * l + which)] =
            hex64(XXH3_64bits(which == 0 ? s.k(int(l)) : s.v(int(l)), bytes)) != sums[size_t(2 * l + which)].hex;
    }
  };
  if (threads)
    threads->parallel_for(s.arch.n_layer, layers);
  else
    layers(0, s.arch.n_layer, 0);
  for (size_t i = 0; i < bad.size(); ++i)
    if (bad[i]) {
      seq = Sequence(seq.pool());  // part of the K/V is corrupt: keep none of it
      throw Error(ErrorKind::Corruption, path + ": checksum mismatch in tensor '" + sums[i].tensor + "' (file corrupted)");
    }
  return s;
}

}  // namespace kvstash
