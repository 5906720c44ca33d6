#include "cache_options.h"

#include <cstdio>

#include "kvstash/error.h"
#include "kvstash/kvz.h"

namespace kvstash::cli {

void add_cache_options(CLI::App& app, CacheFlags& f, bool with_chunks) {
  app.add_option("--prompt-cache", f.dir,
                 "prefix store directory: the longest cached prefix is loaded, new chunks are stored "
                 "(created if missing; several processes may share it)");
  app.add_option("--prompt-cache-size", f.dir_bytes,
                 "bytes the --prompt-cache directory may hold, least recently used removed first (default 4G)");
  app.add_option("--redis", f.redis, "prefix store in Redis: redis://[[user]:password@]host[:port][/db][?timeout_ms=N]");
  if (!with_chunks) return;
  app.add_option("--cache-ram", f.ram, "bytes of prefix chunks kept in this process's memory (default 0: none)");
  app.add_option("--cache-chunk-tokens", f.chunk_tokens, "tokens per stored chunk (a multiple of 32; default 256)");
  app.add_option("--cache-codec", f.codec,
                 "how chunks are stored: raw (f16, default), lossless (.kvz codec, exact) or a lossy .kvz level 1-" +
                     std::to_string(kvz_lossless_level() - 1) + " (changes results)");
}

std::unique_ptr<ChunkStore> open_store(const CacheFlags& f) {
  const uint64_t ram = parse_byte_size(f.ram);
  if (f.dir.empty() && f.redis.empty() && ram == 0) return nullptr;
  const StoreWarn warn = [](const std::string& m) { std::fprintf(stderr, "kvstash: warning: %s\n", m.c_str()); };
  std::vector<std::unique_ptr<StoreTier>> tiers;
  if (ram > 0) tiers.push_back(memory_tier(ram));
  if (!f.dir.empty()) tiers.push_back(disk_tier(f.dir, parse_byte_size(f.dir_bytes), warn));
  if (!f.redis.empty()) tiers.push_back(redis_tier(f.redis, warn));
  return std::make_unique<ChunkStore>(std::move(tiers), warn);
}

PrefixCacheOptions cache_options(const CacheFlags& f) {
  PrefixCacheOptions o;
  o.chunk_tokens = f.chunk_tokens;
  if (f.codec == "raw") return o;
  if (f.codec == "lossless") {
    o.codec_level = kvz_lossless_level();
    return o;
  }
  try {
    size_t used = 0;
    o.codec_level = std::stoi(f.codec, &used);
    if (used != f.codec.size() || o.codec_level < 1 || o.codec_level >= kvz_lossless_level()) throw std::exception();
  } catch (const std::exception&) {
    throw Error(ErrorKind::InvalidArgument, "--cache-codec must be raw, lossless or a level 1-" +
                                                std::to_string(kvz_lossless_level() - 1) + ", got '" + f.codec + "'");
  }
  return o;
}

std::unique_ptr<PrefixCache> prefix_cache(ChunkStore* store, Engine& engine, const PrefixCacheOptions& o,
                                          const KvBudget& budget) {
  if (!store) return nullptr;
  if (budget.enabled()) {
    std::fprintf(stderr, "kvstash: warning: the prompt cache is not used with --kv-budget (a budgeted cache's "
                         "entries depend on its eviction history)\n");
    return nullptr;
  }
  return std::make_unique<PrefixCache>(*store, engine, o);
}

void add_cache_json(nlohmann::json& j, const CacheLoad& load) {
  j["cached_tokens"] = load.cached_tokens;
  nlohmann::json bytes = nlohmann::json::object(), chunks = nlohmann::json::object();
  for (const CacheTierRead& r : load.reads) {
    const std::string tier = r.tier.substr(0, r.tier.find(' '));  // "disk /path" -> "disk"
    bytes[tier] = bytes.value(tier, uint64_t(0)) + r.bytes;
    chunks[tier] = chunks.value(tier, int64_t(0)) + r.chunks;
  }
  j["cache"] = {{"load_ms", load.ms}, {"bytes_read", bytes}, {"chunks_read", chunks}};
}

}  // namespace kvstash::cli
