// The .kvz container: exact lossless round trips (budgeted states too), the same bytes for any
// thread count, each level decoding as the codec decodes its chunk, and bad files refused with one
// line: every byte flip, truncation, a crafted index, a level the file does not store.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "codec/kv_codec.h"
#include "kvstash/error.h"
#include "kvstash/kvz.h"
#include "kvstash/prefix.h"
#include "kvstash/thread_pool.h"
#include "kvz_test_util.h"
#include "test_util.h"

namespace kvstash {
namespace {

using testing::tiny_state;

ThreadPool& threads() {
  static ThreadPool pool(2);
  return pool;
}

// A real state: the model after `n` tokens of prose (optionally through a KV budget).
const State& real_state(int n, const KvBudget& budget = {}) {
  static std::map<std::string, State> cache;
  const std::string key = std::to_string(n) + "/" + (budget.enabled() ? describe(budget) : "");
  auto it = cache.find(key);
  if (it == cache.end()) {
    Engine engine(testing::default_model(), threads(), EngineOptions{.n_ctx = 512});
    it = cache.emplace(key, process_prefix(engine, testing::prose_tokens(size_t(n)), {}, budget)).first;
  }
  return it->second;
}

void expect_same_state(const State& a, const State& b) {
  EXPECT_EQ(a.model_fingerprint, b.model_fingerprint);
  EXPECT_EQ(a.arch, b.arch);
  EXPECT_EQ(a.n_ctx, b.n_ctx);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.positions, b.positions);
  ASSERT_EQ(a.logits.size(), b.logits.size());
  if (!a.logits.empty()) {
    EXPECT_EQ(0, std::memcmp(a.logits.data(), b.logits.data(), a.logits.size() * 4));
  }
  EXPECT_EQ(a.book, b.book);
  ASSERT_EQ(a.kv_elements(), b.kv_elements());
  for (int l = 0; l < a.arch.n_layer && a.kv_elements() > 0; ++l) {
    ASSERT_EQ(0, std::memcmp(a.k(l), b.k(l), a.kv_elements() * 2)) << "k." << l;
    ASSERT_EQ(0, std::memcmp(a.v(l), b.v(l), a.kv_elements() * 2)) << "v." << l;
  }
}

State load_bytes(const std::vector<uint8_t>& f, const LevelChoice& choice = {}, ThreadPool* pool = nullptr) {
  return load_kvz(memory_source(f.data(), f.size(), "x.kvz"), choice, pool);
}

// The error load_kvz gives for these bytes (fails the test if it loads).
Error load_error(const std::vector<uint8_t>& f, const LevelChoice& choice = {}) {
  try {
    load_bytes(f, choice);
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "loaded";
  return Error(ErrorKind::Internal, "");
}

KvzOptions lossless(int chunk_tokens = 256) {
  return testing::kvz_options({kvz_lossless_level()}, chunk_tokens);
}

TEST(KvzContainer, LosslessRoundTripIsExact) {
  const State& s = real_state(300);
  const std::vector<uint8_t> f = encode_kvz(s, lossless(128));
  const KvzInfo info = read_kvz_info(memory_source(f.data(), f.size()));
  ASSERT_EQ(info.chunks.size(), 3u);  // 128 + 128 + 44 slots
  EXPECT_EQ(info.chunks[2].first, 256);
  EXPECT_EQ(info.chunks[2].count, 44);
  EXPECT_EQ(info.levels, std::vector<int>{kvz_lossless_level()});
  EXPECT_EQ(info.level_params, std::vector<std::string>{"lossless"});
  EXPECT_EQ(info.file_size, f.size());
  expect_same_state(load_bytes(f), s);
  expect_same_state(load_bytes(f, {}, &threads()), s);
  // Lossless is smaller than the f16 it holds.
  EXPECT_LT(f.size(), 2 * 2 * s.kv_elements() * size_t(s.arch.n_layer));
}

TEST(KvzContainer, BudgetedLosslessRoundTripKeepsTheBook) {
  KvBudget b;
  b.policy = EvictionPolicy::H2O;
  b.budget = 48;
  b.interval = 16;
  b.summary = SummaryMode::Mean;
  const State& s = real_state(200, b);
  ASSERT_TRUE(s.book);
  ASSERT_LT(s.kv_entries(), s.size());
  const std::vector<uint8_t> f = encode_kvz(s, lossless(32));
  const KvzInfo info = read_kvz_info(memory_source(f.data(), f.size()));
  EXPECT_EQ(info.chunks.back().first + info.chunks.back().count, s.kv_entries());
  expect_same_state(load_bytes(f), s);
  expect_same_state(load_bytes(encode_kvz(tiny_state(0, true), lossless(3))), tiny_state(0, true));
}

TEST(KvzContainer, EmptyStateRoundTrips) {
  State s;
  s.arch = tiny_state().arch;
  s.n_ctx = 8;
  const std::vector<uint8_t> f = encode_kvz(s);
  EXPECT_TRUE(read_kvz_info(memory_source(f.data(), f.size())).chunks.empty());
  expect_same_state(load_bytes(f), s);
}

// Every other lossy level (1, 3, 5, ...) is stored by default; every level loads as the codec
// decodes each chunk.
TEST(KvzContainer, EachLevelLoadsAsTheCodecDecodesItsChunks) {
  const State& s = real_state(150);
  std::vector<int> odd, all;
  for (int l = 1; l <= codec::built_in_levels(); ++l) {
    all.push_back(l);
    if (l % 2 == 1) odd.push_back(l);
  }
  ASSERT_GE(odd.size(), 3u);
  const std::vector<uint8_t> d = encode_kvz(s, testing::kvz_options({}, 64));
  EXPECT_EQ(read_kvz_info(memory_source(d.data(), d.size())).levels, odd);
  const std::vector<uint8_t> f = encode_kvz(s, testing::kvz_options(all, 64));
  const KvzInfo info = read_kvz_info(memory_source(f.data(), f.size()));
  ASSERT_EQ(info.levels, all);
  for (int level : info.levels) {
    const State got = load_bytes(f, testing::at_level(level));
    State want = s;
    want.allocate_kv();
    const StateArch& a = s.arch;
    for (const KvzChunk& c : info.chunks) {
      codec::KvIn in{{}, {}, s.kv_entries(), c.first};
      codec::KvOut out{{}, {}, s.kv_entries(), c.first};
      for (int l = 0; l < a.n_layer; ++l) {
        in.k.push_back(s.k(l));
        in.v.push_back(s.v(l));
        out.k.push_back(want.mutable_k(l));
        out.v.push_back(want.mutable_v(l));
      }
      const codec::ChunkShape shape{a.n_layer, a.n_head_kv, a.head_dim, c.count};
      const std::vector<uint8_t> bytes = codec::encode_chunk(shape, in, codec::built_in_level(level));
      codec::decode_chunk(shape, bytes.data(), bytes.size(), codec::built_in_level(level), out);
    }
    expect_same_state(got, want);
  }
  // Level 0 is the best stored level.
  expect_same_state(load_bytes(f), load_bytes(f, testing::at_level(info.levels.back())));
}

TEST(KvzContainer, PerChunkLevelsTakeEachChunkFromItsLevel) {
  const State& s = real_state(150);
  const int best = kvz_lossless_level();
  const std::vector<uint8_t> f = encode_kvz(s, testing::kvz_options({1, 2, best}, 64));
  const State mixed = load_bytes(f, testing::per_chunk({best, 1, 2}));
  const State lossless_all = load_bytes(f, testing::at_level(best));
  const State one = load_bytes(f, testing::at_level(1)), two = load_bytes(f, testing::at_level(2));
  const size_t hd = size_t(s.arch.head_dim), n = size_t(s.kv_entries());
  const struct { size_t first, count; const State* from; } runs[] = {{0, 64, &lossless_all}, {64, 64, &one}, {128, 22, &two}};
  for (int l = 0; l < s.arch.n_layer; ++l)
    for (int h = 0; h < s.arch.n_head_kv; ++h)
      for (const auto& r : runs) {
        const size_t at = (size_t(h) * n + r.first) * hd;
        ASSERT_EQ(0, std::memcmp(mixed.k(l) + at, r.from->k(l) + at, r.count * hd * 2)) << l << " " << h << " " << r.first;
        ASSERT_EQ(0, std::memcmp(mixed.v(l) + at, r.from->v(l) + at, r.count * hd * 2)) << l << " " << h << " " << r.first;
      }
  EXPECT_NE(0, std::memcmp(one.k(0), lossless_all.k(0), s.kv_elements() * 2));  // the levels do differ
}

TEST(KvzContainer, BytesAreTheSameForAnyThreadCount) {
  const State& s = real_state(150);
  ThreadPool one(1);
  KvzOptions o{.levels = {1, 2, 3, kvz_lossless_level()}, .chunk_tokens = 64};
  const std::vector<uint8_t> serial = encode_kvz(s, o);
  o.threads = &one;
  EXPECT_EQ(encode_kvz(s, o), serial);
  o.threads = &threads();
  EXPECT_EQ(encode_kvz(s, o), serial);
  const std::string path = testing::temp_path("threads.kvz");
  save_kvz(s, path, o);
  std::ifstream in(path, std::ios::binary);
  EXPECT_EQ(std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {}), serial);
  std::filesystem::remove(path);
}

TEST(KvzContainer, FileSourceLoadsWhatMemoryLoads) {
  const State s = tiny_state(7);
  const std::string path = testing::temp_path("file_source.kvz");
  save_kvz(s, path, lossless(3));
  expect_same_state(load_kvz(path), s);
  std::filesystem::remove(path);
  try {
    load_kvz(path);
    ADD_FAILURE() << "loaded a missing file";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NotFound);
    EXPECT_EQ(std::string(e.what()), path + ": cannot open: No such file or directory");
  }
}

// Every byte flip anywhere in a small file (header, tables, index, header checksum, the
// payloads of every level) is refused: a flip in the header whatever the level asked for, a flip in
// a payload when its level is loaded. The file has no padding, so no byte goes unchecked.
TEST(KvzContainer, EveryByteFlipIsDetected) {
  for (bool budgeted : {false, true}) {
    const State s = tiny_state(5, budgeted);
    std::vector<uint8_t> f = encode_kvz(s, testing::kvz_options({1, 2, kvz_lossless_level()}, 2));
    const KvzInfo info = read_kvz_info(memory_source(f.data(), f.size()));
    const uint64_t prefix = info.chunks.front().levels.front().offset;
    // The level whose payload holds each byte (0: the header).
    std::vector<int> owner(f.size(), 0);
    for (const KvzChunk& c : info.chunks)
      for (const KvzChunk::Stored& st : c.levels)
        for (uint64_t i = st.offset; i < st.offset + st.size; ++i) owner[i] = st.level;
    for (int level : info.levels) ASSERT_NO_THROW(load_bytes(f, testing::at_level(level)));
    for (size_t i = 0; i < f.size(); ++i)
      for (const uint8_t flip : {uint8_t(i % 2 ? 0xff : 1u << (i / 2 % 8))}) {  // one bit moving along, or all 8
        const int bit = flip == 0xff ? 8 : int(i / 2 % 8);
        f[i] ^= flip;
        const int level = owner[i] ? owner[i] : info.levels[(i + size_t(bit)) % info.levels.size()];
        bool refused = false;
        try {
          load_bytes(f, testing::at_level(level));
        } catch (const Error& e) {
          refused = true;
          EXPECT_TRUE(e.kind() == ErrorKind::Corruption || (i >= 8 && i < 12 && e.kind() == ErrorKind::NotSupported))
              << i << ": " << e.what();
        }
        EXPECT_TRUE(refused) << "byte " << i << " bit " << bit << " of " << f.size() << " (header " << prefix
                             << (budgeted ? ", budgeted)" : ")");
        f[i] ^= flip;
      }
  }
}

TEST(KvzContainer, TruncationIsCorruption) {
  const State s = tiny_state(5);
  const std::vector<uint8_t> f = encode_kvz(s, testing::kvz_options({}, 2));
  const testing::KvzLayout lay = testing::kvz_layout(f, 3, size_t(codec::built_in_levels() + 1) / 2);
  EXPECT_EQ(std::string(load_error({}).what()), "x.kvz: empty file (not a .kvz state)");
  for (uint64_t n : {uint64_t(3), uint64_t(8), uint64_t(23), uint64_t(24), uint64_t(100), lay.prefix - 1, lay.prefix,
                     uint64_t(f.size() - 1)}) {
    const Error e = load_error(std::vector<uint8_t>(f.begin(), f.begin() + long(n)));
    EXPECT_EQ(e.kind(), ErrorKind::Corruption) << n << ": " << e.what();
    const std::string what = e.what();
    if (n < lay.prefix)
      EXPECT_EQ(what.rfind("x.kvz: truncated file (" + std::to_string(n) + " bytes", 0), 0u) << what;
    else
      EXPECT_NE(what.find(") lies outside the file (" + std::to_string(n) + " bytes)"), std::string::npos) << what;
  }
}

TEST(KvzContainer, BadMagicVersionAndChecksumAreRefused) {
  std::vector<uint8_t> f = encode_kvz(tiny_state(), lossless(2));
  std::vector<uint8_t> g = f;
  g[1] = 'X';
  EXPECT_EQ(std::string(load_error(g).what()), "x.kvz: not a .kvz file (no .kvz magic bytes)");
  g = f;
  kvs::put_u32le(&g[8], 2);
  Error e = load_error(g);
  EXPECT_EQ(e.kind(), ErrorKind::NotSupported);
  EXPECT_EQ(std::string(e.what()), "x.kvz: unsupported .kvz format version 2 (this kvstash reads 1)");
  g = f;
  g[30] ^= 0x20;
  EXPECT_EQ(std::string(load_error(g).what()), "x.kvz: header checksum mismatch (file corrupted)");
  g = f;
  g.back() ^= 1;
  e = load_error(g);
  EXPECT_EQ(e.kind(), ErrorKind::Corruption);
  EXPECT_EQ(std::string(e.what()), "x.kvz: checksum mismatch in chunk 2 level " + std::to_string(kvz_lossless_level()) +
                                       " (file corrupted)");
}

// A crafted index (with the header checksum recomputed, so the index checks themselves run).
TEST(KvzContainer, CraftedIndexIsRefused) {
  const std::vector<uint8_t> f = encode_kvz(tiny_state(5), testing::kvz_options({1, 2}, 2));
  const testing::KvzLayout lay = testing::kvz_layout(f, 3, 2);
  auto craft = [&](uint64_t at, uint64_t value) {
    std::vector<uint8_t> g = f;
    kvs::put_u64le(&g[at], value);
    testing::fix_header_checksum(g);
    return load_error(g);
  };
  const uint64_t off10 = kvs::get_u64le(&f[lay.level_field(1, 0, 0)]);
  const uint64_t size10 = kvs::get_u64le(&f[lay.level_field(1, 0, 1)]);
  Error e = craft(lay.level_field(1, 0, 1), f.size());
  EXPECT_EQ(e.kind(), ErrorKind::Corruption);
  EXPECT_EQ(std::string(e.what()), "x.kvz: chunk 1 level 1: byte range [" + std::to_string(off10) + ", +" +
                                       std::to_string(f.size()) + ") lies outside the file (" +
                                       std::to_string(f.size()) + " bytes)");
  e = craft(lay.level_field(1, 0, 0), uint64_t(1) << 63);
  EXPECT_EQ(std::string(e.what()), "x.kvz: chunk 1 level 1: byte range [9223372036854775808, +" + std::to_string(size10) +
                                       ") lies outside the file (" + std::to_string(f.size()) + " bytes)");
  const uint64_t off01 = kvs::get_u64le(&f[lay.level_field(0, 1, 0)]);
  e = craft(lay.level_field(1, 0, 0), off01);  // chunk 1 level 1 over chunk 0 level 2
  EXPECT_EQ(e.kind(), ErrorKind::Corruption);
  EXPECT_EQ(std::string(e.what()), "x.kvz: chunk 1 level 1: byte range [" + std::to_string(off01) + ", +" +
                                       std::to_string(size10) + ") overlaps the previous chunk (which ends at " +
                                       std::to_string(off10) + ")");
  e = craft(lay.level_field(0, 0, 0), 0);
  EXPECT_EQ(std::string(e.what()), "x.kvz: chunk 0 level 1: byte range [0, +" +
                                       std::to_string(kvs::get_u64le(&f[lay.level_field(0, 0, 1)])) +
                                       ") overlaps the header (which ends at " + std::to_string(lay.prefix) + ")");
  e = craft(lay.level_field(1, 0, 0), off10 + 1);
  EXPECT_EQ(std::string(e.what()), "x.kvz: chunk 1 level 1: byte range [" + std::to_string(off10 + 1) + ", +" +
                                       std::to_string(size10) + ") leaves a gap of unchecked bytes after " +
                                       std::to_string(off10));
  e = craft(lay.chunk_field(1, 0), 3);
  EXPECT_EQ(std::string(e.what()), "x.kvz: chunk 1 covers slots [3, +2), expected [2, +2)");
  // A payload checksum that no longer matches its bytes.
  e = craft(lay.level_field(2, 1, 2), 42);
  EXPECT_EQ(std::string(e.what()), "x.kvz: checksum mismatch in chunk 2 level 2 (file corrupted)");
}

// Values the header checksum cannot vouch for (a writer's bug or a crafted file) still meet
// check_state: Corruption.
TEST(KvzContainer, InvalidStateInTablesIsCorruption) {
  std::vector<uint8_t> f = encode_kvz(tiny_state(5), lossless(2));
  const uint64_t tables = kvz::kFixedBytes + kvs::get_u32le(&f[12]);
  kvs::put_u32le(&f[tables + 4], 16);  // token 1 = n_vocab
  testing::fix_header_checksum(f);
  const Error e = load_error(f);
  EXPECT_EQ(e.kind(), ErrorKind::Corruption);
  EXPECT_EQ(std::string(e.what()), "x.kvz: invalid state: token id 16 at entry 1 is outside the vocabulary of 16");
}

TEST(KvzContainer, LevelNotInTheFileIsInvalidArgument) {
  const std::vector<uint8_t> f = encode_kvz(tiny_state(5), testing::kvz_options({1, kvz_lossless_level()}, 2));
  const std::string stored = "1," + std::to_string(kvz_lossless_level());
  Error e = load_error(f, testing::at_level(2));
  EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(std::string(e.what()), "x.kvz: level 2 is not stored in this file (stored: " + stored + ")");
  e = load_error(f, testing::per_chunk({1, 1}));
  EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(std::string(e.what()), "x.kvz: 2 per-chunk levels for 3 chunks");
  e = load_error(f, testing::per_chunk({1, 3, 1}));
  EXPECT_EQ(std::string(e.what()), "x.kvz: level 3 is not stored in this file (stored: " + stored + ")");
  for (int bad : {0, kvz_lossless_level() + 1}) {
    try {
      encode_kvz(tiny_state(), testing::kvz_options({bad}, 256));
      ADD_FAILURE() << bad;
    } catch (const Error& x) {
      EXPECT_EQ(x.kind(), ErrorKind::InvalidArgument);
      EXPECT_EQ(std::string(x.what()), "kvz: level " + std::to_string(bad) + " does not exist (levels are 1 to " +
                                           std::to_string(kvz_lossless_level()) + ", " +
                                           std::to_string(kvz_lossless_level()) + " lossless)");
    }
  }
}

}  // namespace
}  // namespace kvstash
