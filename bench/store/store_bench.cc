// The prefix store's targets (issue 12), measured: time to first token for a long shared prefix
// and a new suffix, computed (no store), missed (store on, nothing cached) and hit from the disk
// and Redis tiers; then requests with Redis killed and restarted in the middle, every answer
// compared with the one computed without a store. Redis is a real redis-server on loopback.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "kvstash/kvstash.h"
#include "redis_server.h"

namespace {

using namespace kvstash;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

struct Answer {
  double ttft_ms = 0;
  std::vector<Token> tokens;
  int64_t cached = 0;
  double lookup_ms = 0;  // the store's part of ttft_ms (on a miss: its whole cost before the answer)
  double save_ms = 0;    // copying new chunks out for the writer, after the answer (on this thread)
};

// One request as the CLI's `run` serves it: load the cached prefix, compute the rest, sample
// n tokens greedily; the store's writes happen after the answer (flushed, not timed).
Answer request(Engine& engine, PrefixCache* cache, ChunkStore* store, const std::vector<Token>& prompt, int n) {
  GenerateOptions gen;
  gen.n_predict = n;
  gen.ignore_eos = true;
  gen.sampling.temperature = 0;
  Sequence seq = engine.new_sequence();
  const CacheLoad load = cache ? cache->load(seq, prompt) : CacheLoad{};
  const GenerateResult r =
      generate(engine, seq, std::vector<Token>(prompt.begin() + seq.size(), prompt.end()), gen);
  Answer a{load.ms + r.time_to_first_token_ms, r.tokens, load.cached_tokens, load.ms, 0};
  if (cache) {
    const Clock::time_point t0 = Clock::now();
    cache->save(seq);
    a.save_ms = ms_since(t0);
    store->flush();
  }
  return a;
}

std::unique_ptr<ChunkStore> store_of(std::unique_ptr<StoreTier> tier) {
  std::vector<std::unique_ptr<StoreTier>> tiers;
  tiers.push_back(std::move(tier));
  return std::make_unique<ChunkStore>(std::move(tiers),
                                      [](const std::string& w) { std::fprintf(stderr, "warning: %s\n", w.c_str()); });
}

std::vector<Token> prompt_at(const std::vector<Token>& all, size_t prefix, size_t suffix, size_t i) {
  std::vector<Token> p(all.begin(), all.begin() + long(prefix));
  const size_t span = all.size() - prefix - suffix;
  const size_t at = prefix + (i * 97) % span;  // a different suffix per request
  p.insert(p.end(), all.begin() + long(at), all.begin() + long(at + suffix));
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvstash_store_bench: prefix store hit/miss times and Redis fault run"};
  std::string model_path = KVSTASH_DEFAULT_MODEL, text_path;
  int threads = 2, rounds = 5, requests = 1000, prefix = 2048, suffix = 32, fault_prefix = 512, fault_suffix = 16;
  app.add_option("--model", model_path);
  app.add_option("--text", text_path, "prose to take the prefix and suffixes from")->required();
  app.add_option("--threads", threads);
  app.add_option("--rounds", rounds);
  app.add_option("--prefix", prefix);
  app.add_option("--suffix", suffix);
  app.add_option("--requests", requests, "fault run: requests (0: skip)");
  app.add_option("--fault-prefix", fault_prefix);
  app.add_option("--fault-suffix", fault_suffix);
  CLI11_PARSE(app, argc, argv);

  std::ifstream in(text_path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::unique_ptr<Model> model = Model::load(model_path);
  const std::vector<Token> all = prompt_tokens(model->tokenizer(), ss.str());
  if (all.size() < size_t(prefix + 4 * suffix)) {
    std::fprintf(stderr, "text too short: %zu tokens\n", all.size());
    return 1;
  }
  ThreadPool pool(threads);
  Engine engine(*model, pool, {.n_ctx = prefix + suffix + 8});
  testing::RedisServer redis;
  const std::string dir = (std::filesystem::temp_directory_path() / ("kvstash_store_bench_" + std::to_string(::getpid()))).string();

  std::printf("model %s, %d threads, %s kernels; prefix %d tokens, suffix %d, chunks of 256 (raw f16)\n",
              model_path.c_str(), threads, Kernels::active().name(), prefix, suffix);
  std::vector<double> none, disk_miss, disk_hit, redis_miss, redis_hit, lookup_disk, lookup_redis, save_disk, load_disk,
      load_redis;
  int wrong = 0;
  for (int r = 0; r < rounds; ++r) {
    const std::vector<Token> p = prompt_at(all, size_t(prefix), size_t(suffix), size_t(r));
    const Answer want = request(engine, nullptr, nullptr, p, 1);
    none.push_back(want.ttft_ms);
    auto check = [&](const Answer& a, int64_t cached, std::vector<double>& into) {
      if (a.tokens != want.tokens || a.cached != cached) ++wrong;
      into.push_back(a.ttft_ms);
      return a;
    };
    std::filesystem::remove_all(dir);
    {
      auto store = store_of(disk_tier(dir, uint64_t(8) << 30, {}));
      PrefixCache cache(*store, engine);
      const Answer a = check(request(engine, &cache, store.get(), p, 1), 0, disk_miss);
      lookup_disk.push_back(a.lookup_ms);
      save_disk.push_back(a.save_ms);
    }
    {  // a new store object: as another process (the files are in the page cache)
      auto store = store_of(disk_tier(dir, uint64_t(8) << 30, {}));
      PrefixCache cache(*store, engine);
      load_disk.push_back(check(request(engine, &cache, store.get(), p, 1), prefix, disk_hit).lookup_ms);
    }
    {
      auto store = store_of(redis_tier(redis.url(), {}));
      store->tiers()[0]->clear();
      PrefixCache cache(*store, engine);
      lookup_redis.push_back(check(request(engine, &cache, store.get(), p, 1), 0, redis_miss).lookup_ms);
    }
    {
      auto store = store_of(redis_tier(redis.url(), {}));
      PrefixCache cache(*store, engine);
      load_redis.push_back(check(request(engine, &cache, store.get(), p, 1), prefix, redis_hit).lookup_ms);
    }
    std::fprintf(stderr, "round %d: none %.1f, disk miss %.1f hit %.1f, redis miss %.1f hit %.1f ms\n", r + 1,
                 none.back(), disk_miss.back(), disk_hit.back(), redis_miss.back(), redis_hit.back());
  }
  std::filesystem::remove_all(dir);
  const double n = median(none), dm = median(disk_miss), dh = median(disk_hit), rm = median(redis_miss),
               rh = median(redis_hit);
  std::printf("\n| time to first token (median of %d) | ms | of which loading the prefix | miss / hit |\n|---|---|---|---|\n",
              rounds);
  std::printf("| no store | %.1f | | |\n| disk: miss | %.1f | | |\n| disk: hit | %.1f | %.1f | %.1fx |\n", n, dm, dh,
              median(load_disk), dm / dh);
  std::printf("| redis: miss | %.1f | | |\n| redis: hit | %.1f | %.1f | %.1fx |\n", rm, rh, median(load_redis), rm / rh);
  std::printf("\nmiss overhead: the lookup before the answer takes %.3f ms (disk) and %.3f ms (redis), %.3f%% and "
              "%.3f%% of the miss; copying the new chunks out for the writer takes %.1f ms after the answer. "
              "Medians of whole misses vs no store (noise included): disk %+.2f%%, redis %+.2f%%. "
              "Wrong answers or cached counts: %d\n",
              median(lookup_disk), median(lookup_redis), 100 * median(lookup_disk) / n,
              100 * median(lookup_redis) / n, median(save_disk), 100 * (dm - n) / n, 100 * (rm - n) / n, wrong);

  if (requests <= 0) return wrong == 0 ? 0 : 1;
  // Fault run: Redis only; killed at 40% of the requests, restarted at 45%.
  const int kinds = 8;
  std::vector<std::vector<Token>> prompts;
  std::vector<std::vector<Token>> want;
  for (int k = 0; k < kinds; ++k) {
    prompts.push_back(prompt_at(all, size_t(fault_prefix), size_t(fault_suffix), size_t(k)));
    want.push_back(request(engine, nullptr, nullptr, prompts.back(), 4).tokens);
  }
  redis.restart();  // empty
  auto store = store_of(redis_tier(redis.url(), [](const std::string& w) { std::fprintf(stderr, "warning: %s\n", w.c_str()); }));
  PrefixCache cache(*store, engine);
  int failed = 0, differing = 0, hits = 0;
  const Clock::time_point t0 = Clock::now();
  for (int i = 0; i < requests; ++i) {
    if (i == requests * 40 / 100) redis.kill();
    if (i == requests * 45 / 100) redis.restart();
    try {
      const Answer a = request(engine, &cache, store.get(), prompts[size_t(i % kinds)], 4);
      if (a.tokens != want[size_t(i % kinds)]) ++differing;
      if (a.cached > 0) ++hits;
    } catch (const std::exception& e) {
      ++failed;
      std::fprintf(stderr, "request %d failed: %s\n", i, e.what());
    }
  }
  std::printf("\nfault run: %d requests (prefix %d + suffix %d tokens, 4 generated), Redis killed at request %d and "
              "restarted at %d: %d failed, %d differing, %d hits, %.1f s\n",
              requests, fault_prefix, fault_suffix, requests * 40 / 100, requests * 45 / 100, failed, differing, hits,
              ms_since(t0) / 1000);
  return wrong == 0 && failed == 0 && differing == 0 ? 0 : 1;
}
