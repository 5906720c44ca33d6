// The prefix store's flags (--prompt-cache, --redis, --cache-ram, ...) shared by run, prefill,
// generate and `cache`.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "kvstash/prefix_cache.h"
#include "kvstash/store.h"

namespace kvstash::cli {

struct CacheFlags {
  std::string dir;                 // --prompt-cache
  std::string dir_bytes = "4G";    // --prompt-cache-size
  std::string redis;               // --redis
  std::string ram = "0";           // --cache-ram (0: no memory tier)
  int chunk_tokens = 256;          // --cache-chunk-tokens
  std::string codec = "raw";       // --cache-codec: raw, lossless or a .kvz level number
};
// All of them (for commands that compute); with_chunks = false: only where the store is (`cache`).
void add_cache_options(CLI::App& app, CacheFlags& f, bool with_chunks = true);

// The tiers the flags name (memory, disk, Redis), or nullptr when none is named. Warnings go to
// stderr as "kvstash: warning: ...".
std::unique_ptr<ChunkStore> open_store(const CacheFlags& f);
PrefixCacheOptions cache_options(const CacheFlags& f);
// A PrefixCache over the store for the engine, or nullptr without a store or with a KV budget (a
// budgeted sequence's K/V depend on its eviction history: a warning says it is not used).
std::unique_ptr<PrefixCache> prefix_cache(ChunkStore* store, Engine& engine, const PrefixCacheOptions& o,
                                          const KvBudget& budget);

// "cached_tokens" and "cache": {"load_ms", "bytes_read": {tier: bytes}, "chunks_read": {...}} for --json.
void add_cache_json(nlohmann::json& j, const CacheLoad& load);

}  // namespace kvstash::cli
