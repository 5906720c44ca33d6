// PrefixCache: a sequence's K/V to and from the prefix store, one chunk of tokens per entry. The
// payload of an entry (docs/format-store.md, "Chunk payload") is written and checked here; the
// envelope around it, and where the bytes live, are the store's business.
#include "kvstash/prefix_cache.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>

#include "codec/kv_codec.h"
#include "kvstash/error.h"
#include "kvstash/kvz.h"
#include "kvstash/prefix.h"
#include "state/restore_parts.h"
#include "util/little_endian.h"

namespace kvstash {

namespace {

constexpr char kMagic[4] = {'K', 'V', 'C', 'R'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeader = 40;

codec::LevelParams level_params(int level) {
  return level == kvz_lossless_level() ? codec::lossless_level() : codec::built_in_level(level);
}

}  // namespace

PrefixCache::PrefixCache(ChunkStore& store, Engine& engine, const PrefixCacheOptions& options)
    : store_(store), engine_(engine), options_(options), arch_(state_arch(engine.model().config())) {
  const int bt = engine.kv_pool().shape().block_tokens;
  if (options.chunk_tokens <= 0 || options.chunk_tokens % bt != 0 || options.chunk_tokens > 65536)
    throw Error(ErrorKind::InvalidArgument, "cache chunk of " + std::to_string(options.chunk_tokens) +
                                                " tokens: must be a multiple of the KV block size (" +
                                                std::to_string(bt) + ") up to 65536");
  if (options.codec_level < 0 || options.codec_level > kvz_lossless_level())
    throw Error(ErrorKind::InvalidArgument, "cache codec level " + std::to_string(options.codec_level) +
                                                " does not exist (0: raw f16, 1.." +
                                                std::to_string(kvz_lossless_level()) + ")");
  const StateArch& a = arch_;
  // Everything that changes a chunk's bytes (docs/format-store.md, "Keys").
  seed_text_ = "kvstash prefix store 1\nmodel " + engine.model().fingerprint().hex() + "\narithmetic " +
               std::to_string(kArithmeticVersion) + "\ncache f16\nkeys gguf pair order, after rope\npositions contiguous from 0\nbudget none\nchunk_tokens " +
               std::to_string(options.chunk_tokens) + "\nshape " + std::to_string(a.n_layer) + "x" +
               std::to_string(a.n_head_kv) + "x" + std::to_string(a.head_dim) + "\nvalue " +
               (options.codec_level == 0 ? std::string("raw f16")
                                         : "kvz level " + std::to_string(options.codec_level) + " " +
                                               level_params(options.codec_level).text) +
               "\n";
  seed_ = seed_key(seed_text_);
}

std::vector<StoreKey> PrefixCache::keys(const std::vector<Token>& tokens, size_t n_chunks) const {
  const size_t c = size_t(options_.chunk_tokens);
  std::vector<StoreKey> r;
  StoreKey parent = seed_;
  for (size_t i = 0; i < n_chunks && (i + 1) * c <= tokens.size(); ++i) {
    static_assert(sizeof(Token) == 4, "keys hash token ids as 32-bit little-endian values");
    parent = chain_key(parent, &tokens[i * c], c * sizeof(Token));
    r.push_back(parent);
  }
  return r;
}

bool PrefixCache::check_payload(const uint8_t* p, size_t size, const std::vector<Token>& tokens, int64_t first) const {
  const StateArch& a = arch_;
  const int64_t c = options_.chunk_tokens;
  if (size < kHeader + size_t(c) * 4 || std::memcmp(p, kMagic, 4) != 0) return false;
  if (get_u32le(&p[4]) != kVersion || get_u32le(&p[8]) != uint32_t(options_.codec_level) ||
      get_u32le(&p[12]) != uint32_t(a.n_layer) || get_u32le(&p[16]) != uint32_t(a.n_head_kv) ||
      get_u32le(&p[20]) != uint32_t(a.head_dim) || get_u32le(&p[24]) != uint32_t(c) || get_u64le(&p[32]) != uint64_t(first))
    return false;
  if (std::memcmp(&p[kHeader], &tokens[size_t(first)], size_t(c) * 4) != 0) return false;  // a mis-filed entry
  const size_t raw = 2 * size_t(a.n_layer) * size_t(a.n_head_kv) * size_t(c) * size_t(a.head_dim) * 2;
  return options_.codec_level != 0 || size == kHeader + size_t(c) * 4 + raw;
}

void PrefixCache::install(Sequence& seq, const uint8_t* payload, size_t payload_size, const std::vector<Token>& tokens,
                          int64_t first) {
  const StateArch& a = arch_;
  const int64_t c = options_.chunk_tokens;
  const size_t per = size_t(a.n_head_kv) * size_t(c) * size_t(a.head_dim);  // values in one layer's K
  const uint8_t* data = payload + kHeader + size_t(c) * 4;
  const uint16_t* src = nullptr;
  if (options_.codec_level == 0) {
    src = reinterpret_cast<const uint16_t*>(data);
  } else {  // decode first: a chunk that does not decode leaves seq as it was
    staging_.resize(2 * size_t(a.n_layer) * per);
    codec::KvOut out;
    for (int l = 0; l < a.n_layer; ++l) {
      out.k.push_back(staging_.data() + 2 * size_t(l) * per);
      out.v.push_back(out.k.back() + per);
    }
    out.stride = c;
    const size_t size = payload_size - (kHeader + size_t(c) * 4);
    codec::decode_chunk({a.n_layer, a.n_head_kv, a.head_dim, c}, data, size, level_params(options_.codec_level), out,
                        &engine_.threads());
    src = staging_.data();
  }
  std::vector<const uint16_t*> k, v;
  for (int l = 0; l < a.n_layer; ++l) {
    k.push_back(src + 2 * size_t(l) * per);
    v.push_back(k.back() + per);
  }
  std::vector<int32_t> positions(static_cast<size_t>(c));
  for (int64_t i = 0; i < c; ++i) positions[size_t(i)] = int32_t(first + i);
  seq.append(&tokens[size_t(first)], positions.data(), c);
  restore_slots(seq, first, c, k, v, c, 0);
}

CacheLoad PrefixCache::load(Sequence& seq, const std::vector<Token>& tokens) {
  const auto t0 = std::chrono::steady_clock::now();
  CacheLoad r;
  if (seq.budgeted() || tokens.empty()) return r;
  if (seq.size() > int64_t(tokens.size()) || !std::equal(seq.tokens().begin(), seq.tokens().end(), tokens.begin()))
    throw Error(ErrorKind::InvalidArgument, "prefix cache: the sequence does not hold a prefix of the tokens");
  const int64_t c = options_.chunk_tokens;
  const size_t m = (tokens.size() - 1) / size_t(c);  // chunks that leave a token to compute
  const size_t s0 = size_t(seq.size() / c);           // chunks seq holds whole
  if (int64_t(m) * c <= seq.size()) return r;
  std::vector<StoreKey> all = keys(tokens, m);
  std::vector<StoreKey> want(all.begin() + long(s0), all.end());
  const std::vector<int> where = store_.locate(want);
  if (where.empty() || where[0] < 0) {
    r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return r;
  }
  const size_t used = store_.fetch(want, where, [&](const ChunkStore::Fetched& f) {
    const int64_t first = int64_t(s0 + f.index) * c;
    if (!check_payload(f.payload(), f.payload_size(), tokens, first)) return false;
    if (seq.size() > first) seq.truncate(first);  // the chunk seq holds in part (cut only once one is loaded)
    try {
      install(seq, f.payload(), f.payload_size(), tokens, first);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::Corruption) throw;
      return false;
    }
    const std::string& name = store_.tiers()[size_t(f.tier)]->name();
    if (r.reads.empty() || r.reads.back().tier != name) r.reads.push_back({name, 0, 0});
    ++r.reads.back().chunks;
    r.reads.back().bytes += f.entry.size();
    return true;
  });
  r.cached_tokens = int64_t(used) * c;
  r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::vector<uint8_t> PrefixCache::encode(const std::vector<uint16_t>& kv, const Token* tokens, int64_t first) const {
  const StateArch& a = arch_;
  const int64_t c = options_.chunk_tokens;
  std::vector<uint8_t> p(kHeader + size_t(c) * 4, 0);
  std::memcpy(p.data(), kMagic, 4);
  put_u32le(&p[4], kVersion);
  put_u32le(&p[8], uint32_t(options_.codec_level));
  put_u32le(&p[12], uint32_t(a.n_layer));
  put_u32le(&p[16], uint32_t(a.n_head_kv));
  put_u32le(&p[20], uint32_t(a.head_dim));
  put_u32le(&p[24], uint32_t(c));
  put_u64le(&p[32], uint64_t(first));
  std::memcpy(&p[kHeader], tokens, size_t(c) * 4);
  if (options_.codec_level == 0) {
    const uint8_t* b = reinterpret_cast<const uint8_t*>(kv.data());
    p.insert(p.end(), b, b + kv.size() * 2);
    return p;
  }
  const size_t per = size_t(a.n_head_kv) * size_t(c) * size_t(a.head_dim);
  codec::KvIn in;
  for (int l = 0; l < a.n_layer; ++l) {
    in.k.push_back(kv.data() + 2 * size_t(l) * per);
    in.v.push_back(in.k.back() + per);
  }
  in.stride = c;
  const std::vector<uint8_t> coded =
      codec::encode_chunk({a.n_layer, a.n_head_kv, a.head_dim, c}, in, level_params(options_.codec_level));
  p.insert(p.end(), coded.begin(), coded.end());
  return p;
}

void PrefixCache::save(const Sequence& seq) {
  if (seq.budgeted()) return;
  const int64_t c = options_.chunk_tokens;
  const size_t n = size_t(seq.size() / c);
  // Probed every time: a tier may have lost entries since (eviction, a restarted Redis).
  const std::vector<StoreKey> want = keys(seq.tokens(), n);
  if (want.empty()) return;
  const std::vector<int> where = store_.locate(want);
  const StateArch& a = arch_;
  const size_t hd = size_t(a.head_dim), per = size_t(a.n_head_kv) * size_t(c) * hd;
  const KvPool& pool = seq.pool();
  const int bt = pool.shape().block_tokens;
  for (size_t j = 0; j < want.size(); ++j) {
    if (where[j] == 0) continue;
    // Copied out now: the sequence may change or go once this returns.
    auto kv = std::make_shared<std::vector<uint16_t>>(2 * size_t(a.n_layer) * per);
    const int64_t first = int64_t(j) * c;
    for (int64_t b = 0; b < c / bt; ++b) {
      const int32_t block = seq.block_of(first + b * bt);
      for (int l = 0; l < a.n_layer; ++l)
        for (int h = 0; h < a.n_head_kv; ++h) {
          uint16_t* dk = kv->data() + 2 * size_t(l) * per + (size_t(h) * size_t(c) + size_t(b * bt)) * hd;
          std::memcpy(dk, pool.k(block, l, h), size_t(bt) * hd * 2);
          std::memcpy(dk + per, pool.v(block, l, h), size_t(bt) * hd * 2);
        }
    }
    auto toks = std::make_shared<std::vector<Token>>(seq.tokens().begin() + first, seq.tokens().begin() + first + c);
    store_.put_async(want[j], [this, kv, toks, first] { return encode(*kv, toks->data(), first); }, where[j]);
  }
}

}  // namespace kvstash
