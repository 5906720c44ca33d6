#include "codec/rans.h"

#include <gtest/gtest.h>

#include <random>

#include "kvstash/error.h"

namespace kvstash::codec {
namespace {

std::vector<uint8_t> round_trip(const std::vector<uint8_t>& sym, int alphabet) {
  std::vector<uint64_t> counts(size_t(alphabet), 0);
  for (uint8_t s : sym) ++counts[s];
  if (sym.empty()) counts[0] = 1;
  const auto freqs = normalize_freqs(counts);
  std::vector<uint8_t> bytes;
  RansEncoder(freqs).encode(sym.data(), sym.size(), bytes);
  std::vector<uint8_t> back(sym.size());
  RansDecoder(freqs).decode(bytes.data(), bytes.size(), back.data(), back.size());
  return back;
}

TEST(Rans, NormalizedFrequenciesSumToScaleAndKeepRareSymbols) {
  std::vector<uint64_t> counts = {1000000, 1, 0, 3, 77};
  const auto f = normalize_freqs(counts);
  EXPECT_EQ(f[0] + f[1] + f[2] + f[3] + f[4], kProbScale);
  EXPECT_EQ(f[1], 1u);
  EXPECT_EQ(f[2], 0u);
  EXPECT_GE(f[3], 1u);
  std::vector<uint64_t> all(256, 1);
  EXPECT_EQ(normalize_freqs(all)[255], 16u);
  EXPECT_THROW(normalize_freqs(std::vector<uint64_t>(4, 0)), Error);
}

TEST(Rans, RoundTripsEdgeCases) {
  EXPECT_EQ(round_trip({}, 1), std::vector<uint8_t>{});
  EXPECT_EQ(round_trip({7}, 8), std::vector<uint8_t>{7});
  const std::vector<uint8_t> same(1001, 3);
  EXPECT_EQ(round_trip(same, 4), same);
  std::mt19937 rng(1);
  std::vector<uint8_t> uni(10007);
  for (auto& s : uni) s = uint8_t(rng());
  EXPECT_EQ(round_trip(uni, 256), uni);
  std::geometric_distribution<int> geo(0.3);
  std::vector<uint8_t> skew(50001);
  for (auto& s : skew) s = uint8_t(std::min(geo(rng), 63));
  EXPECT_EQ(round_trip(skew, 64), skew);
}

TEST(Rans, FrequencyTablesRoundTripWithZeroRuns) {
  std::vector<uint32_t> f(200, 0);
  f[0] = 1000;
  f[1] = 2000;
  f[150] = 1096;  // 148 zeros between: one zero and a run count
  std::vector<uint8_t> bytes;
  ByteWriter w{bytes};
  write_freqs(w, f);
  EXPECT_EQ(bytes.size(), 1u + 2 + 2 + 1 + 2 + 2);  // count, 1000, 2000, 0, run 148 (2 bytes), 1096
  ByteReader r{bytes.data(), bytes.data() + bytes.size()};
  const auto back = read_freqs(r, 256);
  EXPECT_EQ(back, std::vector<uint32_t>(f.begin(), f.begin() + 151));
  EXPECT_EQ(r.left(), 0u);
  // A zero run past the table's end is refused.
  std::vector<uint8_t> bad = {2, 0, 5};
  ByteReader rb{bad.data(), bad.data() + bad.size()};
  EXPECT_THROW(read_freqs(rb, 256), Error);
}

TEST(Rans, SingleSymbolStreamIsJustTheStates) {
  std::vector<uint32_t> f = {0, kProbScale};
  std::vector<uint8_t> sym(5000, 1), bytes;
  RansEncoder(f).encode(sym.data(), sym.size(), bytes);
  EXPECT_EQ(bytes.size(), 16u);
}

TEST(Rans, RefusesBadStreamsAndTables) {
  std::mt19937 rng(2);
  std::vector<uint8_t> sym(3000);
  for (auto& s : sym) s = uint8_t(rng() % 5);
  std::vector<uint64_t> counts(5, 0);
  for (uint8_t s : sym) ++counts[s];
  const auto freqs = normalize_freqs(counts);
  std::vector<uint8_t> bytes;
  RansEncoder(freqs).encode(sym.data(), sym.size(), bytes);
  std::vector<uint8_t> back(sym.size());
  const RansDecoder dec(freqs);
  for (size_t cut : {size_t(0), size_t(3), size_t(16), bytes.size() - 1}) {
    try {
      dec.decode(bytes.data(), cut, back.data(), back.size());
      ADD_FAILURE() << cut;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Corruption);
    }
  }
  std::vector<uint8_t> tab;
  ByteWriter w{tab};
  w.u8(2);
  w.varint(4000);
  w.varint(95);
  w.varint(0);  // sums to 4095
  ByteReader r{tab.data(), tab.data() + tab.size()};
  EXPECT_THROW(read_freqs(r, 256), Error);
  ByteReader r2{tab.data(), tab.data() + tab.size()};
  EXPECT_THROW(read_freqs(r2, 2), Error);
}

}  // namespace
}  // namespace kvstash::codec
