// kvstash cache ls|stats|evict|clear: look into and trim a prefix store (a directory or Redis).
#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cache_options.h"
#include "commands.h"
#include "common.h"
#include "kvstash/error.h"

namespace kvstash::cli {

namespace {
struct CacheArgs {
  CacheFlags cache;
  std::string action, max_bytes;
  bool json = false;
};

nlohmann::json entry_json(const StoreEntry& e) {
  return {{"key", e.key.hex()}, {"bytes", e.bytes}, {"hits", e.hits}, {"last_used_ms", e.last_used_ms}};
}
}  // namespace

Command add_cache(CLI::App& app) {
  auto a = std::make_shared<CacheArgs>();
  CLI::App* sub = app.add_subcommand("cache", "list, count, trim or empty a prefix store (--prompt-cache DIR or --redis URL)");
  sub->add_option("action", a->action, "ls (every entry), stats (totals), evict (down to --max-bytes), clear (remove all)")
      ->required()
      ->check(CLI::IsMember({"ls", "stats", "evict", "clear"}));
  sub->add_option("--max-bytes", a->max_bytes, "evict: least recently used entries go until this many bytes remain");
  sub->add_flag("--json", a->json, "print JSON (ls: one object per line)");
  add_cache_options(*sub, a->cache, false);
  return [a]() {
    if (a->cache.dir.empty() == a->cache.redis.empty())
      throw Error(ErrorKind::InvalidArgument, "cache needs exactly one of --prompt-cache DIR or --redis URL");
    if ((a->action == "evict") == a->max_bytes.empty())
      throw Error(ErrorKind::InvalidArgument, "--max-bytes goes with evict, and evict needs it");
    const uint64_t max_bytes = a->max_bytes.empty() ? 0 : parse_byte_size(a->max_bytes);
    std::unique_ptr<ChunkStore> store = open_store(a->cache);
    StoreTier& tier = *store->tiers().front();
    if (a->action == "ls") {
      for (const StoreEntry& e : tier.list()) {
        if (a->json)
          std::printf("%s\n", entry_json(e).dump().c_str());
        else
          std::printf("%s %12" PRIu64 " bytes %8" PRIu64 " hits\n", e.key.hex().c_str(), e.bytes, e.hits);
      }
      return 0;
    }
    if (a->action == "stats") {
      uint64_t entries = 0, bytes = 0, hits = 0;
      for (const StoreEntry& e : tier.list()) {
        ++entries;
        bytes += e.bytes;
        hits += e.hits;
      }
      if (a->json)
        print_json({{"store", tier.name()}, {"entries", entries}, {"bytes", bytes}, {"hits", hits}});
      else
        std::printf("%s: %" PRIu64 " entries, %" PRIu64 " bytes, %" PRIu64 " hits\n", tier.name().c_str(), entries,
                    bytes, hits);
      return 0;
    }
    const uint64_t removed = a->action == "clear" ? tier.clear() : tier.evict_to(max_bytes);
    if (a->json)
      print_json({{"store", tier.name()}, {"removed", removed}});
    else
      std::printf("%s: %" PRIu64 " entries removed\n", tier.name().c_str(), removed);
    return 0;
  };
}

}  // namespace kvstash::cli
