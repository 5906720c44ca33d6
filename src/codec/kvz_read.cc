// read_kvz_info / load_kvz: the .kvz reader (docs/format-kvz.md). The header (fixed fields,
// metadata, tables, chunk index) is read in two reads and checked before anything is decoded:
// its checksum, every key, every table size, every byte range of the index, and the state as
// check_state sees it. Chunk bytes are checked against their checksum before they are decoded.
#include <xxhash.h>

#include <bit>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "codec/kvz_chunks.h"
#include "codec/kvz_format.h"
#include "kvstash/error.h"
#include "kvstash/thread_pool.h"
#include "state/check.h"
#include "state/kvs_format.h"
#include "state/kvs_metadata.h"
#include "state/restore_parts.h"
#include "util/quote.h"

namespace kvstash {

namespace {

using Meta = std::map<std::string, std::string>;

class HeaderReader {
 public:
  explicit HeaderReader(const ByteSource& source) : src_(source) {}
  KvzInfo read();

 private:
  [[noreturn]] void fail(const std::string& what, ErrorKind kind = ErrorKind::Corruption) const {
    throw Error(kind, src_.name + ": " + what);
  }
  void read_fixed(uint8_t* fixed);
  Meta parse_metadata(const uint8_t* p, size_t n) const;
  kvs::MetadataValues values(const Meta& m) const {
    return kvs::MetadataValues(m, [this](const std::string& what, ErrorKind kind) { fail(what, kind); });
  }

  const ByteSource& src_;
};

void HeaderReader::read_fixed(uint8_t* fixed) {
  const uint64_t size = src_.size;
  if (size == 0) fail("empty file (not a .kvz state)");
  const size_t have = size_t(std::min<uint64_t>(size, kvz::kFixedBytes));
  src_.read(0, have, fixed);
  if (std::memcmp(fixed, kvz::kMagic, std::min<size_t>(have, sizeof kvz::kMagic)) != 0)
    fail("not a .kvz file (no .kvz magic bytes)");
  if (have < kvz::kFixedBytes)
    fail("truncated file (" + std::to_string(size) + " bytes, shorter than the " +
         std::to_string(kvz::kFixedBytes) + "-byte fixed header)");
  const uint32_t version = kvs::get_u32le(fixed + 8);
  if (version != kvz::kVersion)
    fail("unsupported .kvz format version " + std::to_string(version) + " (this kvstash reads " +
             std::to_string(kvz::kVersion) + ")",
         ErrorKind::NotSupported);
}

Meta HeaderReader::parse_metadata(const uint8_t* p, size_t n) const {
  struct TooDeep {};
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(p, p + n, [](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
      if (depth > 2) throw TooDeep{};
      return true;
    });
  } catch (const TooDeep&) {
    fail("corrupt metadata (JSON nested too deeply)");
  } catch (const nlohmann::json::exception&) {
    fail("corrupt metadata (invalid JSON)");
  }
  if (!j.is_object()) fail("corrupt metadata (not a JSON object)");
  Meta m;
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string()) fail("corrupt metadata (value of " + quote(key, 64) + " is not a string)");
    m[key] = value.get<std::string>();
  }
  return m;
}

KvzInfo HeaderReader::read() {
  uint8_t fixed[kvz::kFixedBytes];
  read_fixed(fixed);
  const uint64_t size = src_.size;
  const uint64_t m_len = kvs::get_u32le(fixed + 12), t_len = kvs::get_u64le(fixed + 16);
  if (m_len < 2 || m_len > kvz::kMaxMetadataBytes)
    fail("corrupt header (metadata length " + std::to_string(m_len) + " is implausible)");
  if (t_len > size || kvz::kFixedBytes + m_len + 8 > size - t_len)
    fail("truncated file (" + std::to_string(size) + " bytes; its header alone needs " +
         (t_len > size ? std::string("more") : std::to_string(kvz::kFixedBytes + m_len + t_len + 8)) + ")");
  const uint64_t prefix = kvz::kFixedBytes + m_len + t_len + 8;
  std::vector<uint8_t> head(size_t(prefix - 8) + 8);
  std::memcpy(head.data(), fixed, kvz::kFixedBytes);
  src_.read(kvz::kFixedBytes, prefix - kvz::kFixedBytes, head.data() + kvz::kFixedBytes);
  if (XXH3_64bits(head.data(), size_t(prefix - 8)) != kvs::get_u64le(head.data() + prefix - 8))
    fail("header checksum mismatch (file corrupted)");

  const Meta m = parse_metadata(head.data() + kvz::kFixedBytes, size_t(m_len));
  if (values(m).string_value("format") != kvz::kFormatName)
    fail("not a .kvz file (format " + quote(m.at("format"), 64) + ", expected '" + kvz::kFormatName + "')");
  if (values(m).string_value("format_version") != std::to_string(kvz::kVersion))
    fail("format_version " + quote(m.at("format_version"), 64) + " differs from the file's version " +
         std::to_string(kvz::kVersion));

  KvzInfo info;
  info.file_size = size;
  State& s = info.meta;
  const StateArch& a = s.arch;
  const bool budgeted = m.count(kvs::kBudgetPolicy) > 0;
  const kvs::MetadataValues::Sizes sizes = values(m).read_state(s, budgeted);
  const int64_t n_tokens = sizes.n_tokens;
  const uint64_t slots = sizes.slots;
  if (a.n_layer == 0 || a.n_head_kv == 0 || a.head_dim == 0) fail("invalid architecture (a zero dimension)");

  info.chunk_tokens = int(values(m).int_value("chunk_tokens", kvz::kMaxChunkTokens));
  if (info.chunk_tokens == 0) fail("invalid metadata chunk_tokens '0'");
  const int64_t n_chunks = values(m).int_value("n_chunks", KvPool::kMaxTokens);
  if (n_chunks != kvz::chunk_count(int64_t(slots), info.chunk_tokens))
    fail("n_chunks " + std::to_string(n_chunks) + " does not cover " + std::to_string(slots) + " slots in chunks of " +
         std::to_string(info.chunk_tokens));
  const std::string& level_text = values(m).string_value("levels");
  if (!kvz::parse_level_list(level_text, info.levels))
    fail("invalid metadata levels " + quote(level_text, 64) + " (expected ascending numbers 1 to " +
         std::to_string(kvz::kMaxLevel) + ")");
  for (int l : info.levels) {
    const std::string& text = values(m).string_value("level." + std::to_string(l));
    try {
      codec::LevelParams::parse(text);
    } catch (const Error& e) {
      fail("invalid parameters of level " + std::to_string(l) + ": " + e.what());
    }
    info.level_params.push_back(text);
  }

  const uint64_t logits_len = n_tokens > 0 ? uint64_t(a.n_vocab) : 0;
  const kvz::TableSizes t = kvz::table_sizes(a, uint64_t(n_tokens), logits_len, budgeted, slots, uint64_t(n_chunks),
                                             info.levels.size());
  if (t.total() != t_len)
    fail("tables hold " + std::to_string(t_len) + " bytes, the metadata describes " + std::to_string(t.total()));

  const uint8_t* p = head.data() + kvz::kFixedBytes + m_len;
  auto u32 = [&]() { const uint32_t v = kvs::get_u32le(p); p += 4; return v; };
  auto u64 = [&]() { const uint64_t v = kvs::get_u64le(p); p += 8; return v; };
  s.tokens.resize(size_t(n_tokens));
  s.positions.resize(size_t(n_tokens));
  s.logits.resize(size_t(logits_len));
  for (Token& x : s.tokens) x = Token(u32());
  for (int32_t& x : s.positions) x = int32_t(u32());
  for (float& x : s.logits) x = std::bit_cast<float>(u32());
  if (budgeted) {
    const size_t lanes = size_t(a.n_layer) * size_t(a.n_head_kv);
    EvictionBook& b = *s.book;
    b.entry.assign(lanes, std::vector<int32_t>(size_t(slots)));
    b.score.assign(lanes, std::vector<float>(size_t(slots)));
    b.merged.assign(lanes, 0);
    for (auto& lane : b.entry)
      for (int32_t& x : lane) x = int32_t(u32());
    for (auto& lane : b.score)
      for (float& x : lane) x = std::bit_cast<float>(u32());
    for (int64_t& x : b.merged) x = int64_t(u64());
  }
  // The index: chunks in slot order, payloads back to back from the end of the header to the end
  // of the file, so no two ranges overlap and no byte goes unchecked.
  uint64_t at = prefix;
  for (int64_t c = 0; c < n_chunks; ++c) {
    KvzChunk chunk;
    chunk.first = int64_t(u64());
    chunk.count = int64_t(u64());
    const int64_t want_first = c * info.chunk_tokens;
    const int64_t want_count = std::min<int64_t>(info.chunk_tokens, int64_t(slots) - want_first);
    if (chunk.first != want_first || chunk.count != want_count)
      fail("chunk " + std::to_string(c) + " covers slots [" + std::to_string(uint64_t(chunk.first)) + ", +" +
           std::to_string(uint64_t(chunk.count)) + "), expected [" + std::to_string(want_first) + ", +" +
           std::to_string(want_count) + ")");
    for (int level : info.levels) {
      KvzChunk::Stored st{level, u64(), u64(), u64()};
      const std::string what = "chunk " + std::to_string(c) + " level " + std::to_string(level) + ": byte range [" +
                               std::to_string(st.offset) + ", +" + std::to_string(st.size) + ")";
      if (st.offset > size || st.size > size - st.offset)
        fail(what + " lies outside the file (" + std::to_string(size) + " bytes)");
      if (st.offset < at)
        fail(what + " overlaps " + (at == prefix ? std::string("the header") : std::string("the previous chunk")) +
             " (which ends at " + std::to_string(at) + ")");
      if (st.offset > at) fail(what + " leaves a gap of unchecked bytes after " + std::to_string(at));
      at = st.offset + st.size;
      chunk.levels.push_back(st);
    }
    info.chunks.push_back(std::move(chunk));
  }
  if (at != size) fail(std::to_string(size - at) + " unexpected bytes after the last chunk (expected " + std::to_string(at) + " bytes)");
  check_state_meta(s, src_.name + ": invalid state", ErrorKind::Corruption);
  return info;
}

}  // namespace

namespace kvz {

const KvzChunk::Stored& stored(const KvzInfo& info, size_t chunk, int level) {
  for (const KvzChunk::Stored& st : info.chunks.at(chunk).levels)
    if (st.level == level) return st;
  throw Error(ErrorKind::InvalidArgument, "level " + std::to_string(level) + " is not stored");
}

std::vector<uint8_t> read_chunk(const ByteSource& source, const KvzInfo& info, size_t chunk, int level) {
  const KvzChunk::Stored& st = stored(info, chunk, level);
  std::vector<uint8_t> bytes(size_t(st.size));
  source.read(st.offset, st.size, bytes.data());
  if (XXH3_64bits(bytes.data(), bytes.size()) != st.checksum)
    throw Error(ErrorKind::Corruption, source.name + ": checksum mismatch in chunk " + std::to_string(chunk) +
                                           " level " + std::to_string(level) + " (file corrupted)");
  return bytes;
}

void decode_chunk(const ByteSource& source, const KvzInfo& info, size_t chunk, int level,
                  const std::vector<uint8_t>& bytes, const codec::KvOut& out, ThreadPool* threads) {
  const KvzChunk& c = info.chunks[chunk];
  const StateArch& a = info.meta.arch;
  size_t li = 0;
  while (info.levels[li] != level) ++li;
  try {
    codec::decode_chunk(codec::ChunkShape{a.n_layer, a.n_head_kv, a.head_dim, c.count}, bytes.data(), bytes.size(),
                        codec::LevelParams::parse(info.level_params[li]), out, threads);
  } catch (const Error& e) {
    throw Error(e.kind(), source.name + ": chunk " + std::to_string(chunk) + " level " + std::to_string(level) +
                              ": " + e.what());
  }
}

}  // namespace kvz

KvzInfo read_kvz_info(const ByteSource& source) { return HeaderReader(source).read(); }

State load_kvz(const ByteSource& source, const LevelChoice& choice, ThreadPool* threads) {
  const auto t0 = std::chrono::steady_clock::now();
  const KvzInfo info = read_kvz_info(source);
  const size_t n = info.chunks.size();
  std::vector<int> levels;
  std::vector<std::vector<uint8_t>> bytes(n);
  if (choice.ttft_target_ms > 0 && choice.per_chunk.empty()) {
    kvz::check_choice(info, choice, source.name);
    const kvz::AdaptivePlanner plan(info, choice.ttft_target_ms);
    // The header's read is the first measure of the link (it includes parsing: conservative).
    double read_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    uint64_t read_bytes = n == 0 ? 0 : info.chunks[0].levels[0].offset;
    for (size_t c = 0; c < n; ++c) {
      const auto r0 = std::chrono::steady_clock::now();
      levels.push_back(plan.level_for(c, std::chrono::duration<double, std::milli>(r0 - t0).count(), read_ms, read_bytes));
      bytes[c] = kvz::read_chunk(source, info, c, levels.back());
      read_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - r0).count();
      read_bytes += bytes[c].size();
    }
  } else {
    levels = kvz::fixed_levels(info, choice, source.name);
    for (size_t c = 0; c < n; ++c) bytes[c] = kvz::read_chunk(source, info, c, levels[c]);
  }
  State s = info.meta;
  if (s.kv_entries() > 0) s.allocate_kv();
  codec::KvOut out;
  out.stride = s.kv_entries();
  for (int l = 0; l < s.arch.n_layer && s.has_kv(); ++l) {
    out.k.push_back(s.mutable_k(l));
    out.v.push_back(s.mutable_v(l));
  }
  auto decode = [&](int64_t c) {
    codec::KvOut o = out;
    o.first = info.chunks[size_t(c)].first;
    kvz::decode_chunk(source, info, size_t(c), levels[size_t(c)], bytes[size_t(c)], o);
  };
  if (threads && threads->size() > 1)
    threads->parallel_for(int64_t(n), [&](int64_t b, int64_t e, int) {
      for (int64_t c = b; c < e; ++c) decode(c);
    });
  else
    for (size_t c = 0; c < n; ++c) decode(int64_t(c));
  return s;
}

State load_kvz(const std::string& path, const LevelChoice& choice, ThreadPool* threads) {
  return load_kvz(file_source(path), choice, threads);
}

}  // namespace kvstash
