// The prefix cache over a real Redis (tests/redis_server.h) that dies in the middle of a load: the
// chunks read before are used, the rest is computed, the logits are still exact, and the cache
// works again once Redis is back.
#include <gtest/gtest.h>

#include <cstring>

#include "kvstash/prefix_cache.h"
#include "redis_server.h"
#include "test_util.h"

namespace kvstash {
namespace {

TEST(PrefixCacheRedis, ServerKilledMidLoadFallsBackToComputingExactly) {
  testing::RedisServer redis;
  std::vector<std::string> warnings;
  std::vector<std::unique_ptr<StoreTier>> tiers;
  tiers.push_back(redis_tier(redis.url(), [&](const std::string& w) { warnings.push_back(w); }));
  ChunkStore store(std::move(tiers), [&](const std::string& w) { warnings.push_back(w); });

  ThreadPool pool(2);
  Engine engine(testing::default_model(), pool, {.n_ctx = 512, .kv_tokens = 2048});
  const std::vector<Token> tokens = testing::prose_tokens(300);
  const int n_vocab = engine.model().config().n_vocab;
  auto logits_after = [&](Sequence& seq) {
    const float* l = engine.forward(seq, tokens.data() + seq.size(), int64_t(tokens.size()) - seq.size());
    return std::vector<float>(l, l + n_vocab);
  };
  Sequence plain = engine.new_sequence();
  const std::vector<float> want = logits_after(plain);

  PrefixCache cache(store, engine, {.chunk_tokens = 32});
  store.flush();
  cache.save(plain);
  store.flush();
  const std::vector<StoreKey> keys = cache.keys(tokens, 9);
  ASSERT_EQ(store.locate(keys), std::vector<int>(9, 0));

  // Killed after the first chunk arrives: the reader's next batch fails.
  size_t used = store.fetch(keys, store.locate(keys), [&](const ChunkStore::Fetched& f) {
    if (f.index == 0) redis.kill();
    return true;
  });
  EXPECT_GE(used, 1u);
  EXPECT_LT(used, 9u);
  EXPECT_EQ(warnings.size(), 1u) << (warnings.empty() ? "" : warnings[0]);

  // Down: a miss, computed, exact.
  Sequence down = engine.new_sequence();
  EXPECT_EQ(cache.load(down, tokens).cached_tokens, 0);
  EXPECT_EQ(logits_after(down), want);
  EXPECT_EQ(warnings.size(), 1u);  // one warning per outage

  // Back (empty: no persistence); after the retry interval the next save refills it.
  redis.restart();
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  cache.save(down);
  store.flush();
  Sequence again = engine.new_sequence();
  EXPECT_EQ(cache.load(again, tokens).cached_tokens, 288);
  EXPECT_EQ(logits_after(again), want);
}

}  // namespace
}  // namespace kvstash
