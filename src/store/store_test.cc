#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>
#include <unistd.h>

#include "kvstash/error.h"
#include "kvstash/store.h"

namespace kvstash {
namespace {

std::vector<uint8_t> bytes_of(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = uint8_t(i * 131 + seed);
  return v;
}

StoreKey key(int i) { return seed_key("key " + std::to_string(i)); }

std::vector<std::optional<std::vector<uint8_t>>> get_all(StoreTier& t, const std::vector<StoreKey>& keys) {
  std::vector<std::optional<std::vector<uint8_t>>> r;
  t.get_many(keys, [&](size_t, std::optional<std::vector<uint8_t>> v) {
    r.push_back(std::move(v));
    return true;
  });
  return r;
}

struct TempDir {
  std::filesystem::path path = std::filesystem::temp_directory_path() /
                               ("kvstash_store_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  ~TempDir() { std::filesystem::remove_all(path); }
  static inline int counter = 0;
};

TEST(StoreKey, ChainDependsOnParentAndTokensAndIsStable) {
  const StoreKey seed = seed_key("seed");
  const int32_t a[2] = {1, 2}, b[2] = {1, 3};
  EXPECT_EQ(chain_key(seed, a, 8), chain_key(seed, a, 8));
  EXPECT_NE(chain_key(seed, a, 8), chain_key(seed, b, 8));
  EXPECT_NE(chain_key(seed_key("other"), a, 8), chain_key(seed, a, 8));
  // A fixed value: keys must be the same in every process and on every machine (no random seed).
  EXPECT_EQ(seed_key("kvstash").hex().size(), 32u);
  EXPECT_EQ(StoreKey::from_hex(seed.hex()), seed);
  EXPECT_FALSE(StoreKey::from_hex("xyz").has_value());
}

TEST(StoreKey, ByteSizesParseWithUnits) {
  EXPECT_EQ(parse_byte_size("1000"), 1000u);
  EXPECT_EQ(parse_byte_size("4K"), 4096u);
  EXPECT_EQ(parse_byte_size("512M"), 512u << 20);
  EXPECT_EQ(parse_byte_size("1.5GiB"), 3u << 29);
  EXPECT_EQ(parse_byte_size("0"), 0u);
  for (const char* bad : {"", "abc", "-1", "5X", "1e30T"}) {
    try {
      parse_byte_size(bad);
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    }
  }
}

TEST(ChunkStoreEnvelope, RoundTripAndEveryFlippedByteIsRejected) {
  const std::vector<uint8_t> payload = bytes_of(300, 7);
  const std::vector<uint8_t> e = ChunkStore::wrap(key(1), payload);
  EXPECT_TRUE(ChunkStore::intact(key(1), e));
  EXPECT_EQ(std::vector<uint8_t>(e.begin() + ChunkStore::kEnvelopeBytes, e.end()), payload);
  EXPECT_FALSE(ChunkStore::intact(key(2), e));  // filed under another key
  for (size_t i = 0; i < e.size(); ++i) {
    if (i >= 48 && i < 56) continue;  // reserved bytes, covered by the header checksum anyway
    std::vector<uint8_t> bad = e;
    bad[i] ^= 0x10;
    EXPECT_FALSE(ChunkStore::intact(key(1), bad)) << "byte " << i;
  }
  std::vector<uint8_t> cut(e.begin(), e.end() - 1);
  EXPECT_FALSE(ChunkStore::intact(key(1), cut));
}

TEST(MemoryTier, EvictsLeastRecentlyUsedOverItsBudget) {
  auto t = memory_tier(250);
  t->put(key(1), bytes_of(100, 1));
  t->put(key(2), bytes_of(100, 2));
  ASSERT_TRUE(get_all(*t, {key(1)})[0].has_value());  // key 1 is now the most recent
  t->put(key(3), bytes_of(100, 3));
  EXPECT_EQ(t->contains({key(1), key(2), key(3)}), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(get_all(*t, {key(3)})[0], bytes_of(100, 3));
  EXPECT_EQ(t->stats().bytes, 200u);
  EXPECT_EQ(t->clear(), 2u);
}

TEST(DiskTier, EntriesSurviveARestartAndAnotherProcessSeesThem) {
  TempDir d;
  {
    auto t = disk_tier(d.path, 1 << 20, {});
    t->put(key(1), bytes_of(1000, 1));
  }
  auto again = disk_tier(d.path, 1 << 20, {});
  EXPECT_EQ(get_all(*again, {key(1), key(2)}),
            (std::vector<std::optional<std::vector<uint8_t>>>{bytes_of(1000, 1), std::nullopt}));
  const std::vector<StoreEntry> list = again->list();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].hits, 1u);
}

TEST(DiskTier, ByteBudgetRemovesLeastRecentlyUsedFiles) {
  TempDir d;
  auto t = disk_tier(d.path, 2500, {});
  t->put(key(1), bytes_of(1000, 1));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  t->put(key(2), bytes_of(1000, 2));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(get_all(*t, {key(1)})[0].has_value());  // key 1 used after key 2
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  t->put(key(3), bytes_of(1000, 3));
  EXPECT_EQ(t->contains({key(1), key(2), key(3)}), (std::vector<bool>{true, false, true}));
}

TEST(DiskTier, DirectoryWithOtherFilesIsRefusedAndLeftAlone) {
  TempDir d;
  std::filesystem::create_directories(d.path);
  std::ofstream(d.path / "notes.txt") << "mine";
  try {
    disk_tier(d.path, 1 << 20, {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("not a kvstash prompt cache"), std::string::npos);
  }
  EXPECT_TRUE(std::filesystem::exists(d.path / "notes.txt"));
}

TEST(DiskTier, StaleTempFileOfADeadProcessIsRemovedAtOpen) {
  TempDir d;
  disk_tier(d.path, 1 << 20, {});
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::string h;
  for (const char* c = host; *c; ++c) h += std::isalnum(static_cast<unsigned char>(*c)) || *c == '-' ? *c : '_';
  const auto stale = d.path / (key(1).hex() + ".kvc.kvstash-tmp.999999999.0." + h);
  std::ofstream(stale) << "half";
  disk_tier(d.path, 1 << 20, {});
  EXPECT_FALSE(std::filesystem::exists(stale));
}

// Tiers: memory (0) over disk (1). A hit in the disk tier is promoted to memory; a corrupt entry
// ends the run and is dropped.
TEST(ChunkStore, FetchStopsAtACorruptEntryDropsItAndPromotesHits) {
  TempDir d;
  std::vector<std::string> warnings;
  std::vector<std::unique_ptr<StoreTier>> tiers;
  tiers.push_back(memory_tier(1 << 20));
  tiers.push_back(disk_tier(d.path, 1 << 20, {}));
  ChunkStore store(std::move(tiers), [&](const std::string& w) { warnings.push_back(w); });
  std::vector<StoreKey> keys = {key(1), key(2), key(3)};
  for (int i = 0; i < 3; ++i) store.tiers()[1]->put(keys[size_t(i)], ChunkStore::wrap(keys[size_t(i)], bytes_of(64, uint8_t(i))));
  // Flip a payload byte of entry 2's file.
  const auto file = d.path / (keys[1].hex() + ".kvc");
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(16 + 64 + 5);
  f.put('\x55');
  f.close();
  const std::vector<int> where = store.locate(keys);
  EXPECT_EQ(where, (std::vector<int>{1, 1, 1}));
  std::vector<size_t> used;
  EXPECT_EQ(store.fetch(keys, where, [&](const ChunkStore::Fetched& x) {
    EXPECT_EQ(std::vector<uint8_t>(x.payload(), x.payload() + x.payload_size()), bytes_of(64, uint8_t(x.index)));
    used.push_back(x.index);
    return true;
  }), 1u);
  EXPECT_EQ(used, std::vector<size_t>{0});
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find(keys[1].hex()), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(file));
  store.flush();
  EXPECT_EQ(store.locate(keys), (std::vector<int>{0, -1, 1}));
}

TEST(ChunkStore, PayloadTheCallerRefusesIsDropped) {
  std::vector<std::unique_ptr<StoreTier>> tiers;
  tiers.push_back(memory_tier(1 << 20));
  int warned = 0;
  ChunkStore store(std::move(tiers), [&](const std::string&) { ++warned; });
  store.put_async(key(1), [] { return bytes_of(10, 1); });
  store.flush();
  EXPECT_EQ(store.fetch({key(1)}, store.locate({key(1)}), [](const ChunkStore::Fetched&) { return false; }), 0u);
  EXPECT_EQ(warned, 1);
  EXPECT_EQ(store.locate({key(1)}), std::vector<int>{-1});
}

}  // namespace
}  // namespace kvstash
