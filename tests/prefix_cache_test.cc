// The prefix store's promise on the real model: a sequence whose first chunks came from the store
// gives bitwise the logits of computing everything, for every value format; only full chunks that
// leave a token to compute are loaded; LoadedPrefix continuations take chunks beyond the state.
#include <gtest/gtest.h>

#include <cstring>

#include "kvstash/error.h"
#include "kvstash/kvz.h"
#include "kvstash/prefix.h"
#include "kvstash/prefix_cache.h"
#include "test_util.h"

namespace kvstash {
namespace {

std::unique_ptr<ChunkStore> memory_store() {
  std::vector<std::unique_ptr<StoreTier>> tiers;
  tiers.push_back(memory_tier(uint64_t(1) << 30));
  return std::make_unique<ChunkStore>(std::move(tiers), [](const std::string& w) { ADD_FAILURE() << w; });
}

std::vector<float> last_logits(Engine& e, Sequence& seq, const std::vector<Token>& tokens) {
  const float* l = e.forward(seq, tokens.data() + seq.size(), int64_t(tokens.size()) - seq.size());
  return std::vector<float>(l, l + e.model().config().n_vocab);
}

void expect_bitwise(const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

class PrefixCacheExact : public ::testing::TestWithParam<int> {};

TEST_P(PrefixCacheExact, LoadedChunksGiveTheLogitsOfComputingEverything) {
  ThreadPool pool(2);
  Engine engine(testing::default_model(), pool, {.n_ctx = 512, .kv_tokens = 2048});
  const std::vector<Token> tokens = testing::prose_tokens(300);
  Sequence plain = engine.new_sequence();
  const std::vector<float> want = last_logits(engine, plain, tokens);

  auto store = memory_store();
  PrefixCache cache(*store, engine, {.chunk_tokens = 64, .codec_level = GetParam()});
  Sequence first = engine.new_sequence();
  EXPECT_EQ(cache.load(first, tokens).cached_tokens, 0);
  expect_bitwise(last_logits(engine, first, tokens), want);
  cache.save(first);
  store->flush();

  Sequence second = engine.new_sequence();
  const CacheLoad load = cache.load(second, tokens);
  EXPECT_EQ(load.cached_tokens, 256);  // 4 full chunks of 64 leave tokens 256..299 to compute
  ASSERT_EQ(load.reads.size(), 1u);
  EXPECT_EQ(load.reads[0].chunks, 4);
  EXPECT_EQ(second.size(), 256);
  expect_bitwise(last_logits(engine, second, tokens), want);
}

INSTANTIATE_TEST_SUITE_P(Formats, PrefixCacheExact, ::testing::Values(0, kvz_lossless_level()),
                         [](const auto& info) { return info.param == 0 ? std::string("Raw") : std::string("KvzLossless"); });

TEST(PrefixCache, PromptOfExactlyWholeChunksLeavesTheLastChunkToCompute) {
  ThreadPool pool(2);
  Engine engine(testing::default_model(), pool, {.n_ctx = 512});
  const std::vector<Token> tokens = testing::prose_tokens(128);
  auto store = memory_store();
  PrefixCache cache(*store, engine, {.chunk_tokens = 64});
  Sequence a = engine.new_sequence();
  last_logits(engine, a, tokens);
  cache.save(a);
  store->flush();
  Sequence b = engine.new_sequence();
  EXPECT_EQ(cache.load(b, tokens).cached_tokens, 64);
}

TEST(PrefixCache, KeysDependOnModelFormatAndChunkSize) {
  ThreadPool pool(1);
  Engine engine(testing::default_model(), pool, {.n_ctx = 256});
  auto store = memory_store();
  const std::vector<Token> tokens = testing::prose_tokens(128);
  const PrefixCache raw(*store, engine, {.chunk_tokens = 64});
  const PrefixCache coded(*store, engine, {.chunk_tokens = 64, .codec_level = kvz_lossless_level()});
  const PrefixCache wide(*store, engine, {.chunk_tokens = 128});
  EXPECT_NE(raw.keys(tokens, 1), coded.keys(tokens, 1));
  EXPECT_NE(raw.keys(tokens, 1)[0], wide.keys(tokens, 1)[0]);
  EXPECT_NE(raw.seed_text().find(engine.model().fingerprint().hex()), std::string::npos);
  std::vector<Token> other = tokens;
  other[100] += 1;  // the second chunk's key changes, the first's does not
  EXPECT_EQ(raw.keys(other, 2)[0], raw.keys(tokens, 2)[0]);
  EXPECT_NE(raw.keys(other, 2)[1], raw.keys(tokens, 2)[1]);
}

TEST(PrefixCache, ChunkSizeOffTheBlockSizeIsRefused) {
  ThreadPool pool(1);
  Engine engine(testing::default_model(), pool, {.n_ctx = 256});
  auto store = memory_store();
  try {
    PrefixCache cache(*store, engine, {.chunk_tokens = 100});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
  }
}

TEST(PrefixCache, LoadedPrefixContinuationTakesCachedChunksBeyondTheState) {
  ThreadPool pool(2);
  Engine engine(testing::default_model(), pool, {.n_ctx = 512});
  const std::vector<Token> tokens = testing::prose_tokens(260);
  const std::vector<Token> head(tokens.begin(), tokens.begin() + 40);
  GenerateOptions gen;
  gen.n_predict = 6;
  gen.sampling.temperature = 0;

  LoadedPrefix plain(engine, process_prefix(engine, head));
  const Continuation want = plain.generate_tokens(tokens, gen);

  auto store = memory_store();
  PrefixCache cache(*store, engine, {.chunk_tokens = 64});
  LoadedPrefix cached(engine, process_prefix(engine, head));
  cached.use_cache(&cache);
  const Continuation first = cached.generate_tokens(tokens, gen);
  store->flush();
  const Continuation second = cached.generate_tokens(tokens, gen);
  EXPECT_EQ(first.cache.cached_tokens, 0);
  EXPECT_EQ(second.cache.cached_tokens, 256);
  EXPECT_EQ(second.reused_tokens, 256);
  EXPECT_EQ(first.result.tokens, want.result.tokens);
  EXPECT_EQ(second.result.tokens, want.result.tokens);
}

}  // namespace
}  // namespace kvstash
