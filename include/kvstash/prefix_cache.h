// Automatic prefix reuse through the prefix store (docs/format-store.md): a sequence's K/V cut into
// chunks of a fixed token count, each keyed by a hash chain over the token ids seeded by everything
// that changes the K/V, so any process on any machine that reads the same tokens with the same
// model finds them. Loading the longest cached run of chunks and computing only the rest gives
// bitwise the same logits as computing everything (the engine is batch-invariant).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kvstash/engine.h"
#include "kvstash/state.h"
#include "kvstash/store.h"

namespace kvstash {

struct PrefixCacheOptions {
  int chunk_tokens = 256;  // a multiple of the engine's KV block size
  // 0: raw f16, the .kvs tensor layout (exact, nothing to decode); else a .kvz level number: the
  // codec's chunk format (kvz_lossless_level() is exact; lower levels are lossy and change results).
  int codec_level = 0;
};

struct CacheTierRead {
  std::string tier;
  int64_t chunks = 0;
  uint64_t bytes = 0;
};
struct CacheLoad {
  int64_t cached_tokens = 0;         // tokens whose K/V came from the store
  std::vector<CacheTierRead> reads;  // per tier read from, fastest first
  double ms = 0;                     // lookup and load
};

class PrefixCache {
 public:
  // InvalidArgument for a chunk size that is not a positive multiple of the block size, or a level
  // that does not exist.
  PrefixCache(ChunkStore& store, Engine& engine, const PrefixCacheOptions& options = {});
  ~PrefixCache() { store_.flush(); }  // queued writes still read this object
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  const PrefixCacheOptions& options() const { return options_; }
  // The text the key chain is seeded with (docs/format-store.md), and its hash.
  const std::string& seed_text() const { return seed_text_; }
  // Keys of the first n_chunks full chunks of tokens.
  std::vector<StoreKey> keys(const std::vector<Token>& tokens, size_t n_chunks) const;

  // Extends seq, an unbudgeted sequence of the engine holding a prefix of `tokens` (InvalidArgument
  // otherwise), with the longest run of stored chunks of `tokens` that leaves at least one token to
  // compute (its logits are needed). Chunks are read while earlier ones are installed; a corrupt or
  // unreadable entry ends the run (it is dropped, and the rest is computed). A budgeted sequence is
  // left as it is (its K/V depend on the eviction's history, not on the tokens alone).
  CacheLoad load(Sequence& seq, const std::vector<Token>& tokens);
  // Queues every full chunk of seq that the store lacks: the K/V are copied now, coded and written
  // in the background (ChunkStore::flush waits for them). A budgeted sequence is not stored.
  void save(const Sequence& seq);

 private:
  bool check_payload(const uint8_t* p, size_t size, const std::vector<Token>& tokens, int64_t first) const;
  void install(Sequence& seq, const uint8_t* payload, size_t size, const std::vector<Token>& tokens, int64_t first);
  std::vector<uint8_t> encode(const std::vector<uint16_t>& kv, const Token* tokens, int64_t first) const;

  ChunkStore& store_;
  Engine& engine_;
  PrefixCacheOptions options_;
  StateArch arch_;  // the engine model's: the shape of every chunk
  std::string seed_text_;
  StoreKey seed_;
  std::vector<uint16_t> staging_;                      // a decoded chunk
};

}  // namespace kvstash
