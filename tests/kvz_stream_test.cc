// stream_kvz: the pipelined load into a sequence equals restore(load_kvz(...)) bit for bit (K/V in
// the pool, tokens, positions, book, the next logits), for every level choice, for budgeted
// states, for chunks that straddle pool blocks; and a refused stream leaves the pool as it was.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "kvstash/error.h"
#include "kvstash/kvz.h"
#include "kvstash/prefix.h"
#include "kvstash/thread_pool.h"
#include "kvz_test_util.h"
#include "test_util.h"

namespace kvstash {
namespace {

using testing::at_level;
using testing::kvz_options;
using testing::per_chunk;

ThreadPool& threads() {
  static ThreadPool pool(2);
  return pool;
}

Engine& engine() {
  static Engine e(testing::default_model(), threads(), EngineOptions{.n_ctx = 512, .kv_tokens = 2048});
  return e;
}

const State& prose_state() {
  static const State s = process_prefix(engine(), testing::prose_tokens(200));
  return s;
}

const State& budgeted_state() {
  static const State s = [] {
    KvBudget b;
    b.policy = EvictionPolicy::H2O;
    b.budget = 48;
    b.interval = 16;
    b.summary = SummaryMode::Mean;
    return process_prefix(engine(), testing::prose_tokens(160), {}, b);
  }();
  return s;
}

// The sequence's contents as a state (K/V copied out of the pool), and the logits of one more token.
struct Seen {
  State state;
  std::vector<float> next;
};
Seen look(Sequence& seq, const std::vector<float>& logits) {
  Seen r{snapshot(engine().model(), seq, engine().n_ctx(), logits.data()), {}};
  Sequence f = seq.fork();
  const Token t = 42;
  const float* l = engine().forward(f, &t, 1);
  r.next.assign(l, l + engine().model().config().n_vocab);
  return r;
}

void expect_same(const Seen& a, const Seen& b) {
  EXPECT_EQ(a.state.tokens, b.state.tokens);
  EXPECT_EQ(a.state.positions, b.state.positions);
  EXPECT_EQ(a.state.book, b.state.book);
  ASSERT_EQ(a.state.kv_elements(), b.state.kv_elements());
  for (int l = 0; l < a.state.arch.n_layer; ++l) {
    ASSERT_EQ(0, std::memcmp(a.state.k(l), b.state.k(l), a.state.kv_elements() * 2)) << "k." << l;
    ASSERT_EQ(0, std::memcmp(a.state.v(l), b.state.v(l), a.state.kv_elements() * 2)) << "v." << l;
  }
  ASSERT_EQ(a.next.size(), b.next.size());
  EXPECT_EQ(0, std::memcmp(a.next.data(), b.next.data(), a.next.size() * 4));
}

// stream_kvz against restore(load_kvz) for one file and choice; returns the stream's stats.
StreamStats check_stream(const std::vector<uint8_t>& f, const LevelChoice& choice) {
  const ByteSource src = memory_source(f.data(), f.size(), "s.kvz");
  StreamedState streamed = stream_kvz(engine(), src, choice);
  LevelChoice fixed = choice;
  if (choice.ttft_target_ms > 0) fixed = per_chunk(streamed.stats.chunk_levels);
  const State loaded = load_kvz(src, fixed);
  Sequence restored = engine().new_sequence();
  restore(loaded, engine().model(), engine().n_ctx(), restored);
  expect_same(look(streamed.seq, streamed.meta.logits), look(restored, loaded.logits));
  EXPECT_EQ(streamed.meta.logits, loaded.logits);
  EXPECT_EQ(streamed.stats.bytes_read,
            f.size() - [&] {  // everything but the levels not read
              uint64_t skipped = 0;
              const KvzInfo info = read_kvz_info(src);
              for (size_t c = 0; c < info.chunks.size(); ++c)
                for (const KvzChunk::Stored& st : info.chunks[c].levels)
                  if (st.level != streamed.stats.chunk_levels[c]) skipped += st.size;
              return skipped;
            }());
  return streamed.stats;
}

TEST(KvzStream, EqualsRestoreOfLoadAtEveryLevel) {
  // 200 slots in chunks of 48 (not a multiple of the pool's 32-token blocks): chunks straddle blocks.
  const std::vector<uint8_t> f = encode_kvz(prose_state(), kvz_options({1, 2, kvz_lossless_level()}, 48));
  for (int level : {0, 1, 2, kvz_lossless_level()}) {
    SCOPED_TRACE(level);
    const StreamStats st = check_stream(f, at_level(level));
    EXPECT_EQ(st.chunk_levels, std::vector<int>(5, level == 0 ? kvz_lossless_level() : level));
  }
  // Lossless streams the original state exactly.
  StreamedState s = stream_kvz(engine(), memory_source(f.data(), f.size()), {});
  Sequence original = engine().new_sequence();
  restore(prose_state(), engine().model(), engine().n_ctx(), original);
  expect_same(look(s.seq, s.meta.logits), look(original, prose_state().logits));
}

TEST(KvzStream, PerChunkLevels) {
  const std::vector<uint8_t> f = encode_kvz(prose_state(), kvz_options({1, 2, kvz_lossless_level()}, 64));
  const std::vector<int> levels = {2, kvz_lossless_level(), 1, 2};
  EXPECT_EQ(check_stream(f, per_chunk(levels)).chunk_levels, levels);
}

TEST(KvzStream, BudgetedStateStreamsWithItsBook) {
  const State& s = budgeted_state();
  ASSERT_TRUE(s.book);
  const std::vector<uint8_t> f = encode_kvz(s, kvz_options({1, kvz_lossless_level()}, 20));
  check_stream(f, at_level(1));
  StreamedState streamed = stream_kvz(engine(), memory_source(f.data(), f.size()), {});
  ASSERT_TRUE(streamed.seq.budgeted());
  EXPECT_EQ(*streamed.seq.book(), *s.book);
  Sequence original = engine().new_sequence();
  restore(s, engine().model(), engine().n_ctx(), original);
  expect_same(look(streamed.seq, streamed.meta.logits), look(original, s.logits));
}

// A source that delivers `bytes_per_ms`, as a slow link would.
ByteSource throttled(const std::vector<uint8_t>& f, double bytes_per_ms) {
  ByteSource inner = memory_source(f.data(), f.size(), "slow.kvz");
  ByteSource s = inner;
  s.read = [inner, bytes_per_ms](uint64_t offset, uint64_t size, uint8_t* dst) {
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(double(size) / bytes_per_ms));
    inner.read(offset, size, dst);
  };
  return s;
}

// Adaptive choice: chunk 0 at the smallest level; with time to spare the best level for the
// rest, with none the smallest; either way the result is what loading those levels gives.
TEST(KvzStream, AdaptiveLevelsFollowTheTarget) {
  const int best = kvz_lossless_level();
  const std::vector<uint8_t> f = encode_kvz(prose_state(), kvz_options({1, 2, best}, 64));
  LevelChoice c;
  c.ttft_target_ms = 1e7;
  // The header's read already measures the link, so even the first chunk can be the best.
  EXPECT_EQ(check_stream(f, c).chunk_levels, (std::vector<int>{best, best, best, best}));
  c.ttft_target_ms = 1e-6;
  EXPECT_EQ(check_stream(f, c).chunk_levels, (std::vector<int>{1, 1, 1, 1}));
  // A link of 2 MB/s and a 200 ms target: 400 kB, far less than the lossless chunks (about 4 MB),
  // so not every chunk can be lossless; what was chosen loads as load_kvz loads it.
  c.ttft_target_ms = 200;
  StreamedState s = stream_kvz(engine(), throttled(f, 2000), c);
  EXPECT_NE(s.stats.chunk_levels, (std::vector<int>{best, best, best, best}));
  Sequence restored = engine().new_sequence();
  const State loaded = load_kvz(memory_source(f.data(), f.size()), per_chunk(s.stats.chunk_levels));
  restore(loaded, engine().model(), engine().n_ctx(), restored);
  expect_same(look(s.seq, s.meta.logits), look(restored, loaded.logits));
}

// Refusals leave the pool as it was: another model (checked before anything is allocated), a
// level the file lacks, a corrupt chunk in the middle of the stream.
TEST(KvzStream, RefusedStreamLeavesThePoolAsItWas) {
  Engine& e = engine();
  const int64_t free_before = e.kv_pool().free_blocks();
  auto expect_refused = [&](const std::vector<uint8_t>& f, const LevelChoice& c, ErrorKind kind, const std::string& start) {
    try {
      stream_kvz(e, memory_source(f.data(), f.size(), "s.kvz"), c);
      ADD_FAILURE() << "streamed";
    } catch (const Error& err) {
      EXPECT_EQ(err.kind(), kind) << err.what();
      EXPECT_EQ(std::string(err.what()).rfind(start, 0), 0u) << err.what();
    }
    EXPECT_EQ(e.kv_pool().free_blocks(), free_before);
  };
  State other = prose_state();
  other.model_fingerprint.bytes[0] ^= 1;
  expect_refused(encode_kvz(other, kvz_options({1}, 64)), {}, ErrorKind::ModelMismatch,
                 "s.kvz: state was made by another model (fingerprint " + other.model_fingerprint.hex());
  std::vector<uint8_t> f = encode_kvz(prose_state(), kvz_options({1, 2}, 64));
  expect_refused(f, at_level(3), ErrorKind::InvalidArgument, "s.kvz: level 3 is not stored in this file (stored: 1,2)");
  const KvzInfo info = read_kvz_info(memory_source(f.data(), f.size()));
  f[info.chunks[2].levels[1].offset + 5] ^= 0x10;
  expect_refused(f, {}, ErrorKind::Corruption, "s.kvz: checksum mismatch in chunk 2 level 2 (file corrupted)");
  // A file whose state does not fit the context.
  Engine small(testing::default_model(), threads(), EngineOptions{.n_ctx = 128});
  try {
    stream_kvz(small, memory_source(f.data(), f.size(), "s.kvz"), {});
    ADD_FAILURE() << "streamed";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::ResourceExhausted);
    EXPECT_EQ(std::string(err.what()), "s.kvz: state of 200 tokens does not fit the context of 128 tokens");
  }
  EXPECT_EQ(small.kv_pool().free_blocks(), small.kv_pool().n_blocks());
}

}  // namespace
}  // namespace kvstash
