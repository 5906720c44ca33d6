// The prefix store's Redis tier through the CLI (--redis), end to end on the real model with a
// real redis-server (tests/redis_server.h): hits across processes, exact tokens, and a server
// that is unreachable, killed or restarted costs a warning, never the run.
#include <gtest/gtest.h>

#include "redis_server.h"
#include "store_test_util.h"

namespace kvstash {
namespace {

using namespace kvstash::testing;

std::string redis(const std::string& url) { return "--redis " + url; }

int64_t prompt_tokens() { return uncached_run(prompt_file()).json["prompt_tokens"]; }

// A run that found nothing in the store and stored its chunks.
void expect_exact_miss(const CliRun& r) {
  expect_clean_exact(r, uncached_run(prompt_file()));
  EXPECT_EQ(r.cached_tokens(), 0);
}
// A run that loaded every chunk it could from `tier`.
void expect_exact_full_hit(const CliRun& r, const std::string& tier) {
  expect_clean_exact(r, uncached_run(prompt_file()));
  EXPECT_EQ(r.cached_tokens(), full_hit_tokens(prompt_tokens()));
  EXPECT_GT(r.bytes_read(tier), 0u);
  EXPECT_EQ(r.chunks_read(tier), full_hit_tokens(prompt_tokens()) / kChunk);
}
// A run the store failed: the uncached tokens, one warning, nothing loaded.
void expect_one_warning_and_exact(const CliRun& r) {
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.tokens(), uncached_run(prompt_file()).tokens());
  EXPECT_EQ(r.cached_tokens(), 0);
  EXPECT_EQ(r.warnings().size(), 1u) << r.err;
}

TEST(CliStoreRedis, SecondProcessHitsThroughRedisOnly) {
  RedisServer server;
  expect_exact_miss(cached_run(prompt_file(), redis(server.url())));
  expect_exact_full_hit(cached_run(prompt_file(), redis(server.url())), "redis");
}

TEST(CliStoreRedis, SeededSamplingHitGivesTheUncachedTokens) {
  RedisServer server;
  const CliRun& plain = uncached_run(prompt_file(), kSeeded);
  expect_clean_exact(cached_run(prompt_file(), redis(server.url()), kSeeded), plain);
  const CliRun hit = cached_run(prompt_file(), redis(server.url()), kSeeded);
  expect_clean_exact(hit, plain);
  EXPECT_EQ(hit.cached_tokens(), full_hit_tokens(prompt_tokens()));
}

TEST(CliStoreRedis, UnreachableServerWarnsOnceAndRunsUncached) {
  const std::string closed = "redis://127.0.0.1:" + std::to_string(free_loopback_port());
  expect_one_warning_and_exact(cached_run(prompt_file(), redis(closed)));
}

TEST(CliStoreRedis, ServerKilledBetweenRunsWarnsOnceAndRunsUncached) {
  RedisServer server;
  expect_exact_miss(cached_run(prompt_file(), redis(server.url())));
  server.kill();
  expect_one_warning_and_exact(cached_run(prompt_file(), redis(server.url())));
}

// A restarted server is empty (no persistence): the next run fills it, the one after hits.
TEST(CliStoreRedis, RestartedServerIsRefilledAndHitsAgain) {
  RedisServer server;
  expect_exact_miss(cached_run(prompt_file(), redis(server.url())));
  server.kill();
  expect_one_warning_and_exact(cached_run(prompt_file(), redis(server.url())));
  server.restart();
  expect_exact_miss(cached_run(prompt_file(), redis(server.url())));
  expect_exact_full_hit(cached_run(prompt_file(), redis(server.url())), "redis");
}

// Chunks found only in Redis are promoted to the faster disk tier: the next run reads the disk.
TEST(CliStoreRedis, ChunksOnlyInRedisArePromotedToDisk) {
  RedisServer server;
  ScratchDir d("redis_promote");
  const std::string both = "--prompt-cache " + (d / "store") + " " + redis(server.url());
  expect_exact_miss(cached_run(prompt_file(), redis(server.url())));
  expect_exact_full_hit(cached_run(prompt_file(), both), "redis");
  EXPECT_GE(int64_t(entry_files(d / "store").size()), full_hit_tokens(prompt_tokens()) / kChunk);
  const CliRun from_disk = cached_run(prompt_file(), both);
  expect_exact_full_hit(from_disk, "disk");
  EXPECT_EQ(from_disk.bytes_read("redis"), 0u);
}

// Both tiers named, Redis down: the disk still serves, with one warning about Redis at most.
TEST(CliStoreRedis, DiskStillServesWhileRedisIsDown) {
  RedisServer server;
  ScratchDir d("redis_down");
  const std::string both = "--prompt-cache " + (d / "store") + " " + redis(server.url());
  expect_exact_miss(cached_run(prompt_file(), both));
  server.kill();
  const CliRun r = cached_run(prompt_file(), both);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.tokens(), uncached_run(prompt_file()).tokens());
  EXPECT_EQ(r.cached_tokens(), full_hit_tokens(prompt_tokens()));
  EXPECT_GT(r.bytes_read("disk"), 0u);
  EXPECT_LE(r.warnings().size(), 1u) << r.err;
}

}  // namespace
}  // namespace kvstash
