// The .kvs file on small synthetic states: exact round trip, layout rules, and every way a file can
// be broken (truncated, flipped bytes, another version, not a .kvs file, a failed save).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <algorithm>

#include "kvstash/error.h"
#include "kvstash/state.h"
#include "state/kvs_format.h"

namespace kvstash {
namespace {

namespace fs = std::filesystem;

// Owned K/V storage for the state's shape, filled with random f16 bit patterns.
void fill_random_kv(State& s, std::mt19937& rng) {
  s.allocate_kv();
  for (int l = 0; l < s.arch.n_layer; ++l)
    for (size_t i = 0; i < s.kv_elements(); ++i) {
      s.mutable_k(l)[i] = uint16_t(rng());
      s.mutable_v(l)[i] = uint16_t(rng());
    }
}

// 2 layers, 2 KV heads of 8 values, a vocabulary of 50: a 5-token state is ~2.5 KB.
State make_state(int64_t n, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  State s;
  s.model_fingerprint = Fingerprint::from_hex("0123456789abcdef0123456789abcdef").value();
  s.arch = StateArch{2, 4, 2, 8, 8, 50, 10000.0f, 1.0f};
  s.n_ctx = n + 10;
  int32_t pos = 0;
  for (int64_t i = 0; i < n; ++i) {
    s.tokens.push_back(Token(rng() % 50));
    pos += 1 + int32_t(rng() % 3);  // gaps, as after eviction
    s.positions.push_back(pos);
  }
  if (n > 0)
    for (int i = 0; i < s.arch.n_vocab; ++i) s.logits.push_back(float(int(rng() % 20001) - 10000) / 997.0f);
  fill_random_kv(s, rng);
  return s;
}

void expect_same(const State& a, const State& b) {
  EXPECT_EQ(a.book, b.book);
  EXPECT_EQ(a.kv_entries(), b.kv_entries());
  EXPECT_EQ(a.model_fingerprint, b.model_fingerprint);
  EXPECT_TRUE(a.arch == b.arch);
  EXPECT_EQ(a.cache_type, b.cache_type);
  EXPECT_EQ(a.n_ctx, b.n_ctx);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.positions, b.positions);
  ASSERT_EQ(a.logits.size(), b.logits.size());
  if (!a.logits.empty()) {  // memcmp's pointers must not be null, even for 0 bytes
    EXPECT_EQ(0, std::memcmp(a.logits.data(), b.logits.data(), a.logits.size() * sizeof(float)));
  }
  ASSERT_EQ(a.kv_elements(), b.kv_elements());
  for (int l = 0; l < a.arch.n_layer && a.kv_elements() > 0; ++l) {
    EXPECT_EQ(0, std::memcmp(a.k(l), b.k(l), a.kv_elements() * 2)) << "k." << l;
    EXPECT_EQ(0, std::memcmp(a.v(l), b.v(l), a.kv_elements() * 2)) << "v." << l;
  }
}

// A budgeted state as a Sequence would hold it: `n` tokens processed, `slots` entries per lane
// (4 lanes: 2 layers x 2 KV heads), each lane its own increasing stream indices.
enum class Shape { Summary, Contiguous, SnapOpen, Empty };
State make_budgeted(Shape shape, uint32_t seed = 3) {
  std::mt19937 rng(seed);
  const int64_t n = shape == Shape::Empty ? 0 : shape == Shape::SnapOpen ? 20 : 40;
  State s = make_state(n, seed);
  EvictionBook b;
  b.budget.budget = 12;
  b.budget.interval = 4;
  b.budget.policy = EvictionPolicy::H2O;
  int64_t slots = n;
  if (shape == Shape::Summary) {
    b.budget.summary = SummaryMode::Mean;
    b.budget.normalize = true;
    b.budget.recent = 0.3;
    b.has_summary = true;
    slots = 14;  // 11 kept, the summary at budget - 1 = 11, then 2 appended since
  } else if (shape == Shape::Contiguous) {
    b.budget.policy = EvictionPolicy::Sinks;
    b.budget.sinks = 2;
    b.budget.positions = PositionMode::Contiguous;
    b.pinned = 2;
    slots = 15;
    for (int64_t i = 0; i < n; ++i) s.positions[size_t(i)] = int32_t(i < 16 ? i : 12 + (i - 16) % 4);
  } else if (shape == Shape::SnapOpen) {
    b.budget.policy = EvictionPolicy::SnapKV;  // before its selection: the whole prompt stays
    b.budget.snapkv_window = 4;
    b.budget.snapkv_pool = 3;
  }
  const size_t lanes = 4;
  b.entry.resize(lanes);
  b.score.resize(lanes);
  b.merged.assign(lanes, 0);
  for (size_t l = 0; l < lanes; ++l) {
    std::vector<int32_t> e;
    if (slots == n) {
      for (int32_t i = 0; i < n; ++i) e.push_back(i);
    } else if (shape == Shape::Summary) {
      std::vector<int32_t> pick(36);
      for (int32_t i = 0; i < 36; ++i) pick[size_t(i)] = i;
      std::shuffle(pick.begin(), pick.end(), rng);
      e.assign(pick.begin(), pick.begin() + 11);
      std::sort(e.begin(), e.end());
      e.insert(e.end(), {-1, 38, 39});
      b.merged[l] = int64_t(20 + l);
    } else {  // sinks 0, 1, then the most recent
      e = {0, 1};
      for (int32_t i = int32_t(n - slots + 2); i < n; ++i) e.push_back(i);
    }
    b.entry[l] = e;
    for (size_t i = 0; i < e.size(); ++i) b.score[l].push_back(float(rng() % 1000) / 37.0f);
  }
  s.book = b;
  s.n_ctx = slots + 5;
  fill_random_kv(s, rng);
  return s;
}

class StateFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kvstash_state_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }
  static std::string read(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  static void write(const std::string& p, const std::string& bytes) {
    fs::remove(p);  // a fresh file: ext4 flushes a file truncated and rewritten in place on close
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), std::streamsize(bytes.size()));
  }
  // The error load_state throws for a file holding `bytes` ("" if it loads).
  std::string load_error(const std::string& bytes) {
    const std::string p = path("broken.kvs");
    write(p, bytes);
    try {
      load_state(p);
    } catch (const Error& e) {
      const std::string what = e.what();
      kind_ = e.kind();
      EXPECT_EQ(what.find('\n'), std::string::npos) << "error is not one line: " << what;
      EXPECT_EQ(what.rfind(p + ": ", 0), 0u) << "error does not name the file: " << what;
      return what.substr(p.size() + 2);
    }
    return "";
  }
  static nlohmann::json header(const std::string& bytes) {
    const uint64_t n = kvs::get_u64le(reinterpret_cast<const uint8_t*>(bytes.data()));
    return nlohmann::json::parse(bytes.substr(8, n));
  }
  // bytes with every checksum recomputed, as a crafted file would have them. Checksums are
  // fixed-width hex, so the header keeps its length.
  static std::string with_valid_checksums(std::string bytes) {
    const uint64_t n = kvs::get_u64le(reinterpret_cast<const uint8_t*>(bytes.data()));
    const nlohmann::json h = header(bytes);
    std::map<std::string, std::string> meta = h["__metadata__"].get<std::map<std::string, std::string>>();
    auto replace = [&](const std::string& key, const std::string& value) {
      const std::string from = "\"" + key + "\":\"" + meta[key] + "\"", to = "\"" + key + "\":\"" + value + "\"";
      const size_t at = bytes.find(from);
      ASSERT_NE(at, std::string::npos) << key;
      bytes.replace(at, from.size(), to);
      meta[key] = value;
    };
    for (const auto& [name, t] : h.items()) {
      if (name == "__metadata__" || name.rfind("__pad.", 0) == 0) continue;
      const uint64_t b = t["data_offsets"][0], e = t["data_offsets"][1];
      replace("checksum." + name, kvs::hash_hex64(bytes.data() + 8 + n + b, e - b));
    }
    replace(kvs::kMetadataChecksumKey, kvs::metadata_checksum(meta));
    return bytes;
  }
  // Offset of a tensor's data in the file.
  static size_t data_at(const std::string& bytes, const std::string& tensor) {
    const uint64_t n = kvs::get_u64le(reinterpret_cast<const uint8_t*>(bytes.data()));
    return size_t(8 + n + header(bytes)[tensor]["data_offsets"][0].get<uint64_t>());
  }

  // A safetensors file as any writer may make it: length, JSON header plus `pad` spaces, data.
  static std::string safetensors_file(const std::string& json, size_t pad, const std::string& data) {
    std::string len(8, '\0');
    kvs::put_u64le(reinterpret_cast<uint8_t*>(len.data()), json.size() + pad);
    return len + json + std::string(pad, ' ') + data;
  }
  // A kvstash file as safetensors' own writer rewrites it: tensors reordered (by dtype, then name)
  // back to back, the header padded to 8 bytes only; padding tensors kept or dropped.
  static std::string rewritten(const std::string& bytes, bool keep_padding) {
    const uint64_t n = kvs::get_u64le(reinterpret_cast<const uint8_t*>(bytes.data()));
    const nlohmann::json h = header(bytes);
    std::vector<std::string> names;
    for (const auto& [name, t] : h.items())
      if (name != "__metadata__" && (keep_padding || name.rfind("__pad.", 0) != 0)) names.push_back(name);
    std::sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
      const std::string da = h[a]["dtype"], db = h[b]["dtype"];
      return da != db ? da > db : a < b;
    });
    nlohmann::ordered_json out;
    out["__metadata__"] = h["__metadata__"];
    std::string data;
    for (const std::string& name : names) {
      const uint64_t b = h[name]["data_offsets"][0], e = h[name]["data_offsets"][1];
      out[name] = {{"dtype", h[name]["dtype"]}, {"shape", h[name]["shape"]}, {"data_offsets", {data.size(), data.size() + e - b}}};
      data += bytes.substr(size_t(8 + n + b), size_t(e - b));
    }
    std::string json = out.dump();
    size_t pad = (8 - json.size() % 8) % 8;
    if ((8 + json.size() + pad) % 64 == 0) pad += 8;  // as for most headers: not 64-aligned
    return safetensors_file(json, pad, data);
  }

  std::string dir_;
  ErrorKind kind_ = ErrorKind::Internal;
};

TEST_F(StateFile, SaveLoadRoundTripIsExact) {
  for (int64_t n : {0, 1, 5, 16, 37}) {
    const State s = make_state(n, uint32_t(n + 1));
    save_state(s, path("s.kvs"));
    const State t = load_state(path("s.kvs"));
    SCOPED_TRACE("tokens " + std::to_string(n));
    expect_same(s, t);
    for (int l = 0; l < t.arch.n_layer && n > 0; ++l) {  // zero-copy views, aligned for SIMD loads
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t.k(l)) % 64, 0u);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t.v(l)) % 64, 0u);
    }
  }
}

TEST_F(StateFile, LoadedStateOutlivesTheFile) {
  const State s = make_state(9);
  save_state(s, path("s.kvs"));
  State t = load_state(path("s.kvs"));
  fs::remove(path("s.kvs"));
  const State copy = t;  // shares the mapping
  t = State();
  expect_same(s, copy);
}

TEST_F(StateFile, HeaderIsPaddedAndEveryTensorIsAligned) {
  const State s = make_state(5);
  save_state(s, path("s.kvs"));
  const std::string bytes = read(path("s.kvs"));
  const uint64_t n = kvs::get_u64le(reinterpret_cast<const uint8_t*>(bytes.data()));
  EXPECT_EQ((8 + n) % 64, 0u);
  const nlohmann::json h = header(bytes);
  EXPECT_EQ(h["__metadata__"]["format"], "kvstash.state");
  EXPECT_EQ(h["__metadata__"]["format_version"], "3");
  EXPECT_EQ(h["__metadata__"]["n_ctx"], "15");
  EXPECT_EQ(h["__metadata__"]["n_tokens"], "5");
  EXPECT_EQ(h["k.1"]["shape"], nlohmann::json({2, 5, 8}));
  EXPECT_EQ(h["tokens"]["dtype"], "I32");
  EXPECT_EQ(h["__pad.tokens"]["shape"], nlohmann::json({44}));  // 20 bytes of tokens + 44 = 64
  uint64_t end = 0;
  for (const auto& [name, t] : h.items()) {
    if (name == "__metadata__") continue;
    if (name.rfind("__pad.", 0) != 0) {
      EXPECT_EQ(t["data_offsets"][0].get<uint64_t>() % 64, 0u) << name;
    }
    end = std::max(end, t["data_offsets"][1].get<uint64_t>());
  }
  EXPECT_EQ(8 + n + end, bytes.size());
}

TEST_F(StateFile, TruncatedFileIsRejected) {
  save_state(make_state(5), path("s.kvs"));
  const std::string bytes = read(path("s.kvs"));
  EXPECT_EQ(load_error(""), "empty file (not a .kvs state)");
  for (size_t len = 1; len < bytes.size(); ++len) {
    const std::string err = load_error(bytes.substr(0, len));
    EXPECT_EQ(err.rfind("truncated file (", 0), 0u) << "length " << len << ": " << err;
    EXPECT_EQ(kind_, ErrorKind::Corruption);
  }
}

TEST_F(StateFile, FlippedByteInEveryTensorIsDetected) {
  save_state(make_state(5), path("s.kvs"));
  const std::string bytes = read(path("s.kvs"));
  const uint64_t start = 8 + kvs::get_u64le(reinterpret_cast<const uint8_t*>(bytes.data()));
  int tensors = 0;
  const nlohmann::json h = header(bytes);
  for (const auto& [name, t] : h.items()) {
    if (name == "__metadata__") continue;
    const uint64_t b = t["data_offsets"][0], e = t["data_offsets"][1];
    for (uint64_t at : {b, (b + e) / 2, e - 1}) {
      std::string broken = bytes;
      broken[start + at] ^= 0x10;
      const std::string want = name.rfind("__pad.", 0) == 0
                                   ? "nonzero padding in '" + name + "' (file corrupted)"
                                   : "checksum mismatch in tensor '" + name + "' (file corrupted)";
      EXPECT_EQ(load_error(broken), want) << "byte " << at << " of " << name;
      EXPECT_EQ(kind_, ErrorKind::Corruption);
    }
    tensors += name.rfind("__pad.", 0) == 0 ? 0 : 1;
  }
  EXPECT_EQ(tensors, 2 * 2 + 3);  // k/v of 2 layers, logits, tokens, positions
}

TEST_F(StateFile, FlippedByteAnywhereIsDetected) {
  save_state(make_state(3), path("s.kvs"));
  const std::string bytes = read(path("s.kvs"));
  for (uint8_t mask : {0x01, 0x80}) {
    for (size_t at = 0; at < bytes.size(); ++at) {
      std::string broken = bytes;
      broken[at] = char(broken[at] ^ mask);
      EXPECT_NE(load_error(broken), "") << "flip 0x" << std::hex << int(mask) << std::dec << " at byte " << at;
    }
  }
}

// Random damage (bytes overwritten, cut, inserted): always an Error, never a crash or a load.
TEST_F(StateFile, RandomlyDamagedFileIsRejected) {
  save_state(make_state(5), path("s.kvs"));
  const std::string good = read(path("s.kvs"));
  std::mt19937 rng(2024);
  for (int i = 0; i < 1000; ++i) {
    std::string bad = good;
    switch (rng() % 3) {
      case 0:
        for (uint32_t j = 0, n = 1 + rng() % 8; j < n; ++j) bad[rng() % bad.size()] = char(rng());
        break;
      case 1: bad.resize(rng() % bad.size()); break;
      default: bad.insert(rng() % bad.size(), std::string(1 + rng() % 100, char(rng()))); break;
    }
    if (bad == good) continue;
    EXPECT_NE(load_error(bad), "") << "damage #" << i << " went unnoticed";
  }
}

TEST_F(StateFile, WrongVersionIsRejected) {
  save_state(make_state(3), path("s.kvs"));
  std::string bytes = read(path("s.kvs"));
  const std::string v3 = "\"format_version\":\"3\"";
  const size_t at = bytes.find(v3);
  ASSERT_NE(at, std::string::npos);
  bytes[at + v3.size() - 2] = '4';
  EXPECT_EQ(load_error(with_valid_checksums(bytes)), "unsupported .kvs format version '4' (this kvstash reads 2 to 3)");
  EXPECT_EQ(kind_, ErrorKind::NotSupported);
  // Version 1 files carry a fingerprint that missed rms_eps, rope scaling and the vocabulary.
  bytes[at + v3.size() - 2] = '1';
  EXPECT_NE(load_error(with_valid_checksums(bytes)).find("format version 1"), std::string::npos);
  EXPECT_EQ(kind_, ErrorKind::NotSupported);
}

// Version 2 had no budgeted states; an unbudgeted state's version-3 file is its version-2 file
// with another format_version, so this is a version-2 file as the old writer made it.
TEST_F(StateFile, VersionTwoFileStillLoads) {
  for (int64_t n : {0, 4}) {
    const State s = make_state(n, 11);
    save_state(s, path("s.kvs"));
    std::string bytes = read(path("s.kvs"));
    const std::string v3 = "\"format_version\":\"3\"";
    const size_t at = bytes.find(v3);
    ASSERT_NE(at, std::string::npos);
    bytes[at + v3.size() - 2] = '2';
    bytes = with_valid_checksums(bytes);
    ASSERT_EQ(load_error(bytes), "");
    const State t = load_state(path("broken.kvs"));
    expect_same(s, t);
    EXPECT_FALSE(t.book.has_value());
  }
}

// Values a crafted file can set while every checksum is right: validation must not rest on them.
TEST_F(StateFile, CraftedValuesWithValidChecksumsAreRejected) {
  save_state(make_state(4), path("s.kvs"));
  const std::string good = read(path("s.kvs"));
  ASSERT_EQ(load_error(with_valid_checksums(good)), "");
  auto crafted = [&](const std::string& tensor, size_t index, uint32_t value) {
    std::string bytes = good;
    kvs::put_u32le(reinterpret_cast<uint8_t*>(&bytes[data_at(bytes, tensor) + 4 * index]), value);
    return load_error(with_valid_checksums(bytes));
  };
  EXPECT_NE(crafted("positions", 3, 2147483647u).find("no room to continue"), std::string::npos);
  EXPECT_EQ(kind_, ErrorKind::Corruption);
  EXPECT_NE(crafted("positions", 0, 0x80000000u).find("positions are not increasing"), std::string::npos);
  EXPECT_NE(crafted("tokens", 1, 50).find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(crafted("logits", 7, 0x7fc00000u).find("not finite"), std::string::npos);  // NaN
  EXPECT_NE(crafted("logits", 0, 0x7f800000u).find("not finite"), std::string::npos);  // +inf
  EXPECT_EQ(kind_, ErrorKind::Corruption);
  // n_ctx below the entry count.
  std::string bytes = good;
  const size_t at = bytes.find("\"n_ctx\":\"14\"");
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 12, "\"n_ctx\":\"03\"");  // 3 < 4 entries (same length: the header keeps its size)
  EXPECT_NE(load_error(with_valid_checksums(bytes)), "");
  EXPECT_EQ(kind_, ErrorKind::Corruption);
}

TEST_F(StateFile, EditedMetadataIsRejected) {
  save_state(make_state(3), path("s.kvs"));
  std::string bytes = read(path("s.kvs"));
  const size_t at = bytes.find("\"rope_base\":\"10000\"");
  ASSERT_NE(at, std::string::npos);
  bytes[at + 17] = '2';  // "20000": a well-formed value, but not the one the checksum covers
  EXPECT_EQ(load_error(bytes), "metadata checksum mismatch (header corrupted)");
}

TEST_F(StateFile, TrailingBytesAreRejected) {
  save_state(make_state(3), path("s.kvs"));
  const std::string err = load_error(read(path("s.kvs")) + "x");
  EXPECT_EQ(err.rfind("1 unexpected bytes after the last tensor", 0), 0u) << err;
}

TEST_F(StateFile, NotAKvsFileIsRejected) {
  using namespace std::string_literals;
  for (const std::string& bytes : {"hello, world\n"s, "GGUF\x03\0\0\0\x01\0\0\0\0\0\0\0"s, "hello"s}) {
    const std::string err = load_error(bytes);
    EXPECT_EQ(err.rfind("not a .kvs file (no safetensors header", 0), 0u) << err;
  }
  // Someone else's safetensors files, cut short (a whole one is named: ForeignSafetensorsFilesAreNamed).
  std::string other = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  std::string len(8, '\0');
  kvs::put_u64le(reinterpret_cast<uint8_t*>(len.data()), other.size());
  EXPECT_EQ(load_error(len + other + "abc"), "not a .kvs file (a safetensors file without kvstash.state metadata)");
  other = R"({"__metadata__":{"format":"pt"}})";
  kvs::put_u64le(reinterpret_cast<uint8_t*>(len.data()), other.size());
  EXPECT_EQ(load_error(len + other + "x"), "not a .kvs file (format 'pt', expected 'kvstash.state')");
  std::string junk(8, '\0');
  kvs::put_u64le(reinterpret_cast<uint8_t*>(junk.data()), 3);
  EXPECT_EQ(load_error(junk + "abc"), "not a .kvs file (no safetensors JSON header)");

  EXPECT_EQ(kind_, ErrorKind::Corruption);
  try {
    load_state(path("missing.kvs"));
    ADD_FAILURE() << "a missing file loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NotFound);
  }
  try {
    load_state(dir_);
    ADD_FAILURE() << "a directory loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(std::string(e.what()), dir_ + ": not a regular file");
  }
}

TEST_F(StateFile, InconsistentStateIsNotSaved) {
  State s = make_state(4);
  s.logits.pop_back();
  EXPECT_THROW(save_state(s, path("s.kvs")), Error);
  s = make_state(4);
  s.positions[2] = s.positions[1];
  EXPECT_THROW(save_state(s, path("s.kvs")), Error);
  s = make_state(4);
  s.tokens.push_back(1);  // K/V no longer match the token count
  s.positions.push_back(1000);
  EXPECT_FALSE(s.has_kv());
  EXPECT_THROW(save_state(s, path("s.kvs")), Error);
  EXPECT_TRUE(fs::is_empty(dir_));
}

// A save that fails part-way (the file-size limit stands in for a full disk) leaves the file
// already there intact and no temp file behind.
TEST_F(StateFile, SaveIsAtomic) {
  const State old_state = make_state(3, 7);
  save_state(old_state, path("s.kvs"));
  const std::string before = read(path("s.kvs"));

  rlimit old_limit;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  sighandler_t old_handler = signal(SIGXFSZ, SIG_IGN);
  rlimit small = old_limit;
  small.rlim_cur = 1000;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string err;
  try {
    save_state(make_state(40, 8), path("s.kvs"));
  } catch (const Error& e) {
    err = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old_limit);
  signal(SIGXFSZ, old_handler);
  EXPECT_NE(err.find("cannot save (writing"), std::string::npos) << err;
  EXPECT_EQ(read(path("s.kvs")), before);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1) << "temp file left";
  expect_same(old_state, load_state(path("s.kvs")));

}

TEST_F(StateFile, BudgetedRoundTripIsExact) {
  for (Shape shape : {Shape::Summary, Shape::Contiguous, Shape::SnapOpen, Shape::Empty}) {
    SCOPED_TRACE("shape " + std::to_string(int(shape)));
    const State s = make_budgeted(shape);
    ASSERT_TRUE(s.book.has_value());
    save_state(s, path("b.kvs"));
    const State t = load_state(path("b.kvs"));
    ASSERT_TRUE(t.book.has_value());
    expect_same(s, t);  // the book (budget settings, entries, scores, merged, flags) included
    EXPECT_EQ(t.book->budget, s.book->budget);
    EXPECT_EQ(t.size(), s.size());
    for (int l = 0; l < t.arch.n_layer && t.kv_entries() > 0; ++l) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t.k(l)) % 64, 0u);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t.v(l)) % 64, 0u);
    }
  }
}

TEST_F(StateFile, BudgetedFileLayout) {
  const State s = make_budgeted(Shape::Summary);
  save_state(s, path("b.kvs"));
  const std::string bytes = read(path("b.kvs"));
  const nlohmann::json h = header(bytes);
  const nlohmann::json& m = h["__metadata__"];
  EXPECT_EQ(m["format_version"], "3");
  EXPECT_EQ(m["n_tokens"], "40");  // the whole stream
  EXPECT_EQ(m["book.slots"], "14");
  EXPECT_EQ(m["budget.policy"], "h2o");
  EXPECT_EQ(m["budget.entries"], "12");
  EXPECT_EQ(m["budget.interval"], "4");
  EXPECT_EQ(m["budget.recent"], "0.3");
  EXPECT_EQ(m["budget.normalize"], "true");
  EXPECT_EQ(m["budget.summary"], "mean");
  EXPECT_EQ(m["budget.positions"], "original");
  EXPECT_EQ(m["book.has_summary"], "true");
  EXPECT_EQ(m["book.selected"], "false");
  EXPECT_EQ(m["book.pinned"], "0");
  EXPECT_EQ(h["k.0"]["shape"], nlohmann::json({2, 14, 8}));
  EXPECT_EQ(h["tokens"]["shape"], nlohmann::json({40}));
  EXPECT_EQ(h["positions"]["shape"], nlohmann::json({40}));
  EXPECT_EQ(h["book.entry"]["dtype"], "I32");
  EXPECT_EQ(h["book.entry"]["shape"], nlohmann::json({2, 2, 14}));
  EXPECT_EQ(h["book.score"]["dtype"], "F32");
  EXPECT_EQ(h["book.score"]["shape"], nlohmann::json({2, 2, 14}));
  EXPECT_EQ(h["book.merged"]["dtype"], "I64");
  EXPECT_EQ(h["book.merged"]["shape"], nlohmann::json({2, 2}));
  // Lane (layer 1, head 0) is lane 2: its entries sit at [1, 0, :].
  const size_t at = data_at(bytes, "book.entry") + 4 * (2 * 14 + 11);
  EXPECT_EQ(kvs::get_u32le(reinterpret_cast<const uint8_t*>(bytes.data() + at)), 0xffffffffu);  // the summary
  EXPECT_EQ(kvs::get_u64le(reinterpret_cast<const uint8_t*>(bytes.data() + data_at(bytes, "book.merged") + 8 * 3)), 23u);
  uint64_t n = kvs::get_u64le(reinterpret_cast<const uint8_t*>(bytes.data())), end = 0;
  for (const auto& [name, t] : h.items()) {
    if (name == "__metadata__") continue;
    if (name.rfind("__pad.", 0) != 0) {
      EXPECT_EQ(t["data_offsets"][0].get<uint64_t>() % 64, 0u) << name;
      EXPECT_TRUE(m.contains("checksum." + name)) << name;
    }
    end = std::max(end, t["data_offsets"][1].get<uint64_t>());
  }
  EXPECT_EQ(8 + n + end, bytes.size());
}

TEST_F(StateFile, DamagedBudgetedFileIsRejected) {
  save_state(make_budgeted(Shape::Summary), path("b.kvs"));
  const std::string bytes = read(path("b.kvs"));
  for (size_t len = 0; len < bytes.size(); len += 7)
    EXPECT_NE(load_error(bytes.substr(0, len)), "") << "length " << len;
  const nlohmann::json h = header(bytes);
  for (const std::string name : {"book.entry", "book.score", "book.merged"}) {
    std::string broken = bytes;
    broken[data_at(bytes, name) + 5] ^= 0x04;
    EXPECT_EQ(load_error(broken), "checksum mismatch in tensor '" + name + "' (file corrupted)");
    EXPECT_EQ(kind_, ErrorKind::Corruption);
  }
  std::string edited = bytes;
  const size_t at = edited.find("\"book.pinned\":\"0\"");
  ASSERT_NE(at, std::string::npos);
  edited[at + 15] = '1';
  EXPECT_EQ(load_error(edited), "metadata checksum mismatch (header corrupted)");
}

// Books a crafted file can hold while every checksum is right: each is refused with Corruption
// and a line that says what is wrong.
TEST_F(StateFile, CraftedBooksAreRejected) {
  save_state(make_budgeted(Shape::Summary), path("b.kvs"));
  const std::string good = read(path("b.kvs"));
  ASSERT_EQ(load_error(with_valid_checksums(good)), "");
  auto crafted = [&](const std::string& tensor, size_t index, uint32_t value) {
    std::string bytes = good;
    kvs::put_u32le(reinterpret_cast<uint8_t*>(&bytes[data_at(bytes, tensor) + 4 * index]), value);
    const std::string err = load_error(with_valid_checksums(bytes));
    EXPECT_EQ(kind_, ErrorKind::Corruption) << err;
    EXPECT_EQ(err.rfind("invalid state: ", 0), 0u) << err;
    return err;
  };
  auto meta = [&](const std::string& from, const std::string& to) {  // same length: the header keeps its size
    std::string bytes = good;
    const size_t at = bytes.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at == std::string::npos) return std::string();
    EXPECT_EQ(from.size(), to.size());
    bytes.replace(at, from.size(), to);
    const std::string err = load_error(with_valid_checksums(bytes));
    EXPECT_EQ(kind_, ErrorKind::Corruption) << err;
    return err;
  };
  const size_t lane1 = 14;  // lane 1's first slot
  EXPECT_NE(crafted("book.entry", 12, 40).find("holds entry 40, outside [0, 40) in lane 0"), std::string::npos);
  EXPECT_NE(crafted("book.entry", 12, 1u << 31).find("outside [0, 40)"), std::string::npos);
  EXPECT_NE(crafted("book.entry", lane1 + 1, 0).find("entries are not increasing at slot 1 in lane 1"), std::string::npos);
  EXPECT_NE(crafted("book.entry", lane1 + 13, 38).find("not increasing at slot 13"), std::string::npos);
  EXPECT_NE(crafted("book.entry", 3, 0xffffffffu).find("slot 3 holds entry -1"), std::string::npos);  // -1 outside the summary
  EXPECT_NE(crafted("book.entry", 11, 36).find("slot 11 must hold the summary"), std::string::npos);
  EXPECT_NE(crafted("book.score", 5, 0x7fc00000u).find("score of slot 5 is not finite"), std::string::npos);  // NaN
  EXPECT_NE(crafted("book.score", lane1, 0xff800000u).find("not finite in lane 1"), std::string::npos);       // -inf
  // merged: int64 little-endian; the high half made nonzero gives a huge (or negative) count.
  EXPECT_NE(crafted("book.merged", 1, 0x80000000u).find("merged count"), std::string::npos);
  EXPECT_NE(crafted("book.merged", 0, 0).find("merged count 0 in lane 0 (layer 0, KV head 0) with a summary slot"), std::string::npos);
  EXPECT_NE(crafted("book.merged", 2, 30).find("merged count 30"), std::string::npos);  // 40 processed, 13 kept

  // 14 slots per lane, more than budget 2 + interval 4 allow (the other checks follow later).
  EXPECT_NE(meta("\"budget.entries\":\"12\"", "\"budget.entries\":\"02\"").find("more than budget 2 + interval 4"),
            std::string::npos);
  EXPECT_NE(meta("\"budget.interval\":\"4\"", "\"budget.interval\":\"1\"").find("more than budget 12 + interval 1"),
            std::string::npos);
  EXPECT_EQ(meta("\"budget.policy\":\"h2o\"", "\"budget.policy\":\"lru\""),
            "invalid metadata budget.policy 'lru' (expected one of window, sinks, h2o, tova, snapkv, fsdc)");
  EXPECT_EQ(meta("\"budget.summary\":\"mean\"", "\"budget.summary\":\"mode\""),
            "invalid metadata budget.summary 'mode' (expected one of none, sum, mean)");
  EXPECT_NE(meta("\"budget.summary\":\"mean\"", "\"budget.summary\":\"none\"").find("a summary slot where the budget allows none"),
            std::string::npos);
  EXPECT_EQ(meta("\"budget.normalize\":\"true\"", "\"budget.normalize\":\"yes!\""),
            "invalid metadata budget.normalize 'yes!' (expected true or false)");
  EXPECT_NE(meta("\"budget.recent\":\"0.3\"", "\"budget.recent\":\"1.3\"").find("invalid KV budget (--kv-recent"),
            std::string::npos);
  EXPECT_EQ(meta("\"budget.recent\":\"0.3\"", "\"budget.recent\":\"nan\""), "invalid metadata budget.recent 'nan'");
  EXPECT_NE(meta("\"book.pinned\":\"0\"", "\"book.pinned\":\"9\"").find("pinned slot count 9 is not one policy h2o sets"),
            std::string::npos);
  EXPECT_NE(meta("\"book.selected\":\"false\"", "\"book.selected\":\"true!\"").find("expected true or false"),
            std::string::npos);
  EXPECT_NE(meta("\"book.has_summary\":\"true\"", "\"book.has_summary\":\"1234\"").find("book.has_summary"),
            std::string::npos);
  // A missing key of a budgeted state.
  EXPECT_EQ(meta("\"budget.sinks\"", "\"budget.sinkz\""), "missing metadata key 'budget.sinks'");
  // Without budget.policy the file describes an unbudgeted state, whose layout it does not have.
  EXPECT_NE(meta("\"budget.policy\"", "\"budget.polic_\""), "");

  // Contiguous positions are each token's slot when it came: never beyond its index.
  save_state(make_budgeted(Shape::Contiguous), path("c.kvs"));
  std::string bytes = read(path("c.kvs"));
  kvs::put_u32le(reinterpret_cast<uint8_t*>(&bytes[data_at(bytes, "positions") + 4 * 3]), 4);
  EXPECT_NE(load_error(with_valid_checksums(bytes)).find("contiguous position 4 at entry 3"), std::string::npos);
  EXPECT_EQ(kind_, ErrorKind::Corruption);
}

TEST_F(StateFile, InconsistentBookIsNotSaved) {
  auto save_error = [&](const State& s) {
    try {
      save_state(s, path("s.kvs"));
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
      return std::string(e.what());
    }
    return std::string();
  };
  State s = make_budgeted(Shape::Summary);
  s.book->entry[1].pop_back();
  EXPECT_NE(save_error(s).find("lanes differ in length"), std::string::npos);
  s = make_budgeted(Shape::Summary);
  s.book->merged.pop_back();
  EXPECT_NE(save_error(s).find("lanes (layers x KV heads)"), std::string::npos);
  s = make_budgeted(Shape::Summary);
  s.book->budget.budget = 0;
  EXPECT_NE(save_error(s).find("invalid KV budget (--kv-budget"), std::string::npos);
  s = make_budgeted(Shape::Summary);
  s.book->selected = true;
  EXPECT_NE(save_error(s).find("policy other than snapkv"), std::string::npos);
  s = make_budgeted(Shape::SnapOpen);
  s.book->selected = true;  // after the selection, 20 slots are more than 12 + 4
  EXPECT_NE(save_error(s).find("more than budget 12 + interval 4"), std::string::npos);
  s = make_budgeted(Shape::Contiguous);
  s.book->pinned = 13;
  EXPECT_NE(save_error(s).find("pinned slot count 13"), std::string::npos);
  s = make_budgeted(Shape::Contiguous);
  s.book->budget.budget = 16;  // 15 slots, but an eviction would have left 16
  s.book->budget.sinks = 2;
  EXPECT_NE(save_error(s).find("fewer than the 16 an eviction leaves"), std::string::npos);
  s = make_budgeted(Shape::Summary);
  s.n_ctx = 13;  // fewer than the 14 slots
  EXPECT_NE(save_error(s).find("context of 13 tokens for 14 entries"), std::string::npos);
  s = make_budgeted(Shape::Summary);
  s.n_ctx = 20;  // fewer than the 40 tokens processed, more than the slots: fine
  EXPECT_EQ(save_error(s), "");
  EXPECT_EQ(load_state(path("s.kvs")).n_ctx, 20);
}

ErrorKind output_error(const std::string& p) {
  try {
    StateOutput out(p);
  } catch (const Error& e) {
    return e.kind();
  }
  return ErrorKind::Internal;
}

// StateOutput checks the target before any work: it creates the temp file at once.
TEST_F(StateFile, UnwritableOutputFailsBeforeTheWork) {
  fs::create_directory(path("d.kvs"));
  EXPECT_EQ(output_error(path("d.kvs")), ErrorKind::InvalidArgument);
  EXPECT_EQ(output_error(path("nowhere/s.kvs")), ErrorKind::NotFound);
  write(path("file"), "x");
  EXPECT_EQ(output_error(path("file/s.kvs")), ErrorKind::IOError);  // not a directory
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 2) << "temp file left";
  {
    StateOutput out(path("s.kvs"));
    EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 3) << "no temp file";
  }  // not committed: the temp file goes with it
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 2) << "temp file left";
  EXPECT_FALSE(fs::exists(path("s.kvs")));
}

// A process killed by SIGINT or SIGTERM while a temp file is open leaves nothing behind; a temp
// file of a process that died without a signal (SIGKILL) is removed by the next save there.
TEST_F(StateFile, InterruptedSaveLeavesNoTempFile) {
  for (int sig : {SIGINT, SIGTERM, SIGKILL}) {
    SCOPED_TRACE(sig);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      StateOutput out(path("s.kvs"));
      raise(sig);
      _exit(0);  // not reached
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status));
    EXPECT_EQ(WTERMSIG(status), sig);
    const auto entries = std::distance(fs::directory_iterator(dir_), fs::directory_iterator());
    EXPECT_EQ(entries, sig == SIGKILL ? 1 : 0);
  }
  // Another host's temp file in a shared directory: its process cannot be checked from here.
  write(path("u.kvs.kvstash-tmp.4194303.0.another-host"), "x");
  save_state(make_state(2), path("t.kvs"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 2) << "stale temp file kept";
  EXPECT_TRUE(fs::exists(path("u.kvs.kvstash-tmp.4194303.0.another-host")));
}

// Keys saved in Hugging Face's order: the file holds hf[i] = k[2i], hf[i + d/2] = k[2i + 1] per head
// vector (checksums of those bytes), V as it is, and every reader gives back the original bits.
TEST_F(StateFile, HuggingFaceKeyOrderRoundTripIsExact) {
  const StateSaveOptions hf{KeyOrder::HuggingFace};
  std::vector<State> states;
  for (int64_t n : {0, 1, 5, 37}) states.push_back(make_state(n, uint32_t(n + 7)));
  for (Shape shape : {Shape::Summary, Shape::Contiguous, Shape::Empty}) states.push_back(make_budgeted(shape));
  for (size_t i = 0; i < states.size(); ++i) {
    SCOPED_TRACE("state " + std::to_string(i));
    const State& s = states[i];
    save_state(s, path("hf.kvs"), hf);
    const std::string bytes = read(path("hf.kvs"));
    EXPECT_EQ(header(bytes)["__metadata__"]["key_order"], "hf");
    const size_t d = size_t(s.arch.head_dim), rows = s.kv_elements() / d;
    for (int l = 0; l < s.arch.n_layer; ++l) {
      const auto* k = reinterpret_cast<const uint16_t*>(bytes.data() + data_at(bytes, "k." + std::to_string(l)));
      for (size_t r = 0; r < rows; ++r)
        for (size_t j = 0; j < d / 2; ++j) {
          ASSERT_EQ(k[r * d + j], s.k(l)[r * d + 2 * j]) << "k." << l << " row " << r << " value " << j;
          ASSERT_EQ(k[r * d + j + d / 2], s.k(l)[r * d + 2 * j + 1]) << "k." << l << " row " << r << " value " << j;
        }
      if (rows > 0) {
        EXPECT_EQ(0, std::memcmp(bytes.data() + data_at(bytes, "v." + std::to_string(l)), s.v(l), s.kv_elements() * 2));
      }
    }
    const State t = load_state(path("hf.kvs"));
    expect_same(s, t);
    for (int l = 0; l < t.arch.n_layer && rows > 0; ++l) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t.k(l)) % 64, 0u);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t.v(l)) % 64, 0u);
    }
    // The owned keys outlive the file, like the mapped values.
    State copy = t;
    fs::remove(path("hf.kvs"));
    expect_same(s, copy);
  }
}

TEST_F(StateFile, HuggingFaceKeyOrderFileIsCheckedLikeAnother) {
  save_state(make_state(5), path("hf.kvs"), StateSaveOptions{KeyOrder::HuggingFace});
  const std::string bytes = read(path("hf.kvs"));
  std::string broken = bytes;
  broken[data_at(bytes, "k.1") + 3] ^= 0x20;
  EXPECT_EQ(load_error(broken), "checksum mismatch in tensor 'k.1' (file corrupted)");
  EXPECT_EQ(kind_, ErrorKind::Corruption);
  for (size_t len : {size_t(1), bytes.size() / 2, bytes.size() - 1}) {
    EXPECT_EQ(load_error(bytes.substr(0, len)).rfind("truncated file (", 0), 0u) << len;
  }
  // Another order name, with valid checksums: NotSupported, naming the orders this kvstash reads.
  std::string other = bytes;
  const size_t at = other.find("\"key_order\":\"hf\"");
  ASSERT_NE(at, std::string::npos);
  other.replace(at, 16, "\"key_order\":\"xy\"");
  EXPECT_EQ(load_error(with_valid_checksums(other)), "unsupported key_order 'xy' (this kvstash reads 'gguf' and 'hf')");
  EXPECT_EQ(kind_, ErrorKind::NotSupported);
}

TEST_F(StateFile, HuggingFaceKeyOrderNeedsAnEvenHeadDim) {
  State s;
  s.model_fingerprint = Fingerprint::from_hex("0123456789abcdef0123456789abcdef").value();
  s.arch = StateArch{1, 2, 1, 7, 6, 10, 10000.0f, 1.0f};
  s.n_ctx = 4;
  s.tokens = {1, 2};
  s.positions = {0, 1};
  s.logits.assign(10, 0.5f);
  std::mt19937 rng(5);
  fill_random_kv(s, rng);
  try {
    save_state(s, path("odd.kvs"), StateSaveOptions{KeyOrder::HuggingFace});
    ADD_FAILURE() << "saved";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(std::string(e.what()), path("odd.kvs") + ": cannot save keys in Hugging Face order with an odd head_dim (7)");
  }
  EXPECT_FALSE(fs::exists(path("odd.kvs")));
  // A crafted file claiming it: refused, not misread.
  save_state(s, path("odd.kvs"));
  std::string bytes = read(path("odd.kvs"));
  const size_t at = bytes.find("\"key_order\":\"gguf\"");
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 18, "\"key_order\":\"hf\"  ");  // JSON whitespace keeps the header's length
  EXPECT_EQ(load_error(with_valid_checksums(bytes)), "invalid metadata key_order 'hf' with an odd head_dim 7");
  EXPECT_EQ(kind_, ErrorKind::Corruption);
}

// Whole safetensors files that other tools wrote are named as such (NotSupported), whatever their
// header's length; cut ones are still truncated or not a .kvs file (Corruption).
TEST_F(StateFile, ForeignSafetensorsFilesAreNamed) {
  const std::string hint = "; kvstash needs its metadata, tensor order and 64-byte alignment: docs/format-kvs.md)";
  const std::string w = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string cases[][2] = {
      {"{" + w + "}", "no __metadata__ 'format': 'kvstash.state'"},
      {R"({"__metadata__":{"producer":"numpy"},)" + w + "}", "no __metadata__ 'format': 'kvstash.state'"},
      {R"({"__metadata__":{"format":"pt"},)" + w + "}", "__metadata__ 'format' is 'pt', not 'kvstash.state'"},
  };
  for (const auto& [json, what] : cases)
    for (size_t pad : {0, 1, 5, 7, 60, 200}) {
      const std::string bytes = safetensors_file(json, pad, "abcdefgh");
      EXPECT_EQ(load_error(bytes), "a safetensors file, but not a kvstash state (" + what + hint) << json << " + " << pad;
      EXPECT_EQ(kind_, ErrorKind::NotSupported);
      for (size_t len = 1; len < bytes.size(); ++len) {
        const std::string err = load_error(bytes.substr(0, len));
        EXPECT_TRUE(err.rfind("truncated file (", 0) == 0 || err.rfind("not a .kvs file (", 0) == 0) << len << ": " << err;
        EXPECT_EQ(kind_, ErrorKind::Corruption) << len << ": " << err;
      }
    }
}

// A kvstash file rewritten by safetensors' own writer (metadata and tensors kept, order, alignment
// and padding lost) is named as that, not as a truncated or corrupt file.
TEST_F(StateFile, RewrittenKvstashFileIsNamed) {
  const std::string prefix = "a safetensors file with kvstash.state metadata and tensors, but not kvstash's layout (";
  for (const State& s : {make_state(5), make_budgeted(Shape::Summary)}) {
    save_state(s, path("s.kvs"));
    const std::string good = read(path("s.kvs"));
    for (bool keep_padding : {false, true}) {
      SCOPED_TRACE(keep_padding ? "padding kept" : "padding dropped");
      const std::string bytes = rewritten(good, keep_padding);
      const std::string err = load_error(bytes);
      EXPECT_EQ(err.rfind(prefix, 0), 0u) << err;
      EXPECT_NE(err.find("): rewritten by another tool? kvstash reads only its own tensor order, padding and 64-byte "
                         "alignment: docs/format-kvs.md"), std::string::npos) << err;
      EXPECT_EQ(kind_, ErrorKind::NotSupported);
      for (size_t len : {bytes.size() - 1, bytes.size() - 700}) {  // cut: damage again
        EXPECT_EQ(load_error(bytes.substr(0, len)).rfind("truncated file (", 0), 0u) << len;
        EXPECT_EQ(kind_, ErrorKind::Corruption);
      }
    }
  }
}

// A file that says it is a kvstash state but has no metadata checksum (hand-made from a real one:
// the checksum removed, the header padded again).
TEST_F(StateFile, MissingMetadataChecksumIsNamed) {
  save_state(make_state(4), path("s.kvs"));
  const std::string good = read(path("s.kvs"));
  const uint64_t n = kvs::get_u64le(reinterpret_cast<const uint8_t*>(good.data()));
  nlohmann::ordered_json h = nlohmann::ordered_json::parse(good.substr(8, size_t(n)));
  ASSERT_EQ(h["__metadata__"].erase(kvs::kMetadataChecksumKey), 1u);
  const std::string json = h.dump();
  const std::string bytes = safetensors_file(json, (64 - (8 + json.size()) % 64) % 64, good.substr(size_t(8 + n)));
  EXPECT_EQ(load_error(bytes),
            "metadata checksum missing (checksum.metadata): the file was not written by kvstash or its metadata was "
            "edited (docs/format-kvs.md, \"Checksums\")");
  EXPECT_EQ(kind_, ErrorKind::Corruption);
}

}  // namespace
}  // namespace kvstash
