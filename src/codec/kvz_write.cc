// encode_kvz / save_kvz: the .kvz writer (docs/format-kvz.md). Every (chunk, level) pair is an
// independent job; jobs run in any order on any thread and land in fixed places, so the bytes do
// not depend on the thread count.
#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <nlohmann/json.hpp>

#include "codec/kv_codec.h"
#include "codec/kvz_format.h"
#include "kvstash/error.h"
#include "kvstash/kvz.h"
#include "kvstash/thread_pool.h"
#include "state/check.h"
#include "state/kvs_format.h"
#include "util/atomic_file.h"

namespace kvstash {

int kvz_lossless_level() { return codec::built_in_levels() + 1; }

namespace {

codec::LevelParams params_of(int level) {
  if (level == kvz_lossless_level()) return codec::lossless_level();
  return codec::built_in_level(level);
}

void put32(std::vector<uint8_t>& out, uint32_t v) {
  const size_t at = out.size();
  out.resize(at + 4);
  kvs::put_u32le(&out[at], v);
}
void put64(std::vector<uint8_t>& out, uint64_t v) {
  const size_t at = out.size();
  out.resize(at + 8);
  kvs::put_u64le(&out[at], v);
}

// The stored levels: sorted, duplicates dropped, each an existing level.
std::vector<int> stored_levels(const std::vector<int>& asked) {
  std::vector<int> levels = asked;
  if (levels.empty())  // every other lossy level from the smallest: a few choices, fewer bytes than the .kvs
    for (int l = 1; l <= codec::built_in_levels(); l += 2) levels.push_back(l);
  std::sort(levels.begin(), levels.end());
  levels.erase(std::unique(levels.begin(), levels.end()), levels.end());
  for (int l : levels)
    if (l < 1 || l > kvz_lossless_level())
      throw Error(ErrorKind::InvalidArgument, "kvz: level " + std::to_string(l) + " does not exist (levels are 1 to " +
                                                  std::to_string(kvz_lossless_level()) + ", " +
                                                  std::to_string(kvz_lossless_level()) + " lossless)");
  return levels;
}

}  // namespace

std::vector<uint8_t> encode_kvz(const State& s, const KvzOptions& options) {
  check_state(s, "kvz: cannot compress state", ErrorKind::InvalidArgument);
  if (options.chunk_tokens < 1 || options.chunk_tokens > kvz::kMaxChunkTokens)
    throw Error(ErrorKind::InvalidArgument, "kvz: chunk size " + std::to_string(options.chunk_tokens) +
                                                " is outside 1.." + std::to_string(kvz::kMaxChunkTokens) + " tokens");
  const std::vector<int> levels = stored_levels(options.levels);
  std::vector<codec::LevelParams> params;
  std::vector<std::string> texts;
  for (int l : levels) {
    params.push_back(params_of(l));
    texts.push_back(params.back().text);
  }
  const StateArch& a = s.arch;
  const int64_t slots = s.kv_entries();
  const int64_t n_chunks = kvz::chunk_count(slots, options.chunk_tokens);
  const size_t n_levels = levels.size();

  // Chunk payloads, job j = chunk j / n_levels at level j % n_levels.
  std::vector<std::vector<uint8_t>> payloads(size_t(n_chunks) * n_levels);
  codec::KvIn in;
  in.stride = slots;
  for (int l = 0; l < a.n_layer; ++l) {
    in.k.push_back(s.k(l));
    in.v.push_back(s.v(l));
  }
  auto encode_job = [&](int64_t j) {
    const int64_t c = j / int64_t(n_levels);
    codec::KvIn chunk_in = in;
    chunk_in.first = c * options.chunk_tokens;
    const codec::ChunkShape shape{a.n_layer, a.n_head_kv, a.head_dim,
                                  std::min<int64_t>(options.chunk_tokens, slots - chunk_in.first)};
    payloads[size_t(j)] = codec::encode_chunk(shape, chunk_in, params[size_t(j % int64_t(n_levels))]);
  };
  if (options.threads && options.threads->size() > 1)
    options.threads->parallel_for(int64_t(payloads.size()), [&](int64_t b, int64_t e, int) {
      for (int64_t j = b; j < e; ++j) encode_job(j);
    });
  else
    for (int64_t j = 0; j < int64_t(payloads.size()); ++j) encode_job(j);

  const std::string json =
      nlohmann::json(kvz::metadata(s, options.chunk_tokens, n_chunks, levels, texts)).dump();
  std::vector<uint8_t> tables;
  for (Token t : s.tokens) put32(tables, uint32_t(t));
  for (int32_t p : s.positions) put32(tables, uint32_t(p));
  for (float f : s.logits) put32(tables, std::bit_cast<uint32_t>(f));
  if (s.book) {
    for (const auto& lane : s.book->entry)
      for (int32_t e : lane) put32(tables, uint32_t(e));
    for (const auto& lane : s.book->score)
      for (float f : lane) put32(tables, std::bit_cast<uint32_t>(f));
    for (int64_t m : s.book->merged) put64(tables, uint64_t(m));
  }
  const uint64_t payload_start = kvz::kFixedBytes + json.size() +
                                 kvz::table_sizes(a, uint64_t(s.size()), s.logits.size(), bool(s.book), uint64_t(slots),
                                                  uint64_t(n_chunks), n_levels).total() + 8;
  uint64_t at = payload_start;
  for (int64_t c = 0; c < n_chunks; ++c) {
    put64(tables, uint64_t(c * options.chunk_tokens));
    put64(tables, uint64_t(std::min<int64_t>(options.chunk_tokens, slots - c * options.chunk_tokens)));
    for (size_t l = 0; l < n_levels; ++l) {
      const std::vector<uint8_t>& p = payloads[size_t(c) * n_levels + l];
      put64(tables, at);
      put64(tables, p.size());
      put64(tables, XXH3_64bits(p.data(), p.size()));
      at += p.size();
    }
  }

  std::vector<uint8_t> out(kvz::kMagic, kvz::kMagic + sizeof kvz::kMagic);
  put32(out, kvz::kVersion);
  put32(out, uint32_t(json.size()));
  put64(out, tables.size());
  out.insert(out.end(), json.begin(), json.end());
  out.insert(out.end(), tables.begin(), tables.end());
  put64(out, XXH3_64bits(out.data(), out.size()));
  if (out.size() != payload_start) throw Error(ErrorKind::Internal, "kvz: header size differs from its layout");
  out.reserve(at);
  for (const std::vector<uint8_t>& p : payloads) out.insert(out.end(), p.begin(), p.end());
  return out;
}

KvzOutput::KvzOutput(const std::string& path) : path_(path), file_(std::make_unique<AtomicFile>(path)) {}

KvzOutput::~KvzOutput() = default;

void KvzOutput::commit(const State& state, const KvzOptions& options) {
  if (!file_) throw Error(ErrorKind::Internal, path_ + ": .kvz already committed");
  std::vector<uint8_t> bytes;
  try {
    bytes = encode_kvz(state, options);
  } catch (const Error& e) {
    const std::string what = e.what();
    throw Error(e.kind(), path_ + ": " + (what.rfind("kvz: ", 0) == 0 ? what.substr(5) : what));
  }
  file_->write(bytes.data(), bytes.size());
  file_->commit();
  file_.reset();
}

void save_kvz(const State& state, const std::string& path, const KvzOptions& options) {
  KvzOutput(path).commit(state, options);
}

}  // namespace kvstash
