// Chunk layout: one byte naming the scheme; u32 LE size of the prelude (what all sections share:
// the lossless scheme's rANS tables, empty otherwise) and the prelude; the byte size of each of the
// 2 * n_layer sections (u32 LE, layer-major: layer 0 K, layer 0 V, layer 1 K, ...); the sections.
#include "codec/kv_codec.h"

#include <numeric>

#include "codec/codec_bytes.h"
#include "codec/level_params.h"
#include "codec/lossless.h"
#include "codec/section.h"
#include "kvstash/error.h"
#include "kvstash/thread_pool.h"

namespace kvstash::codec {

namespace {

void check_shape(const ChunkShape& s) {
  if (s.n_layer < 1 || s.n_layer > 4096 || s.n_head_kv < 1 || s.n_head_kv > 4096 || s.head_dim < 1 ||
      s.head_dim > 4096 || s.count < 0 || s.count > (int64_t(1) << 24))
    throw Error(ErrorKind::InvalidArgument, "codec: bad chunk shape");
}

template <class F>
void for_each_section(int n, ThreadPool* pool, F&& fn) {
  if (pool && pool->size() > 1 && n > 1) {
    pool->parallel_for(n, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) fn(int(i));
    });
  } else {
    for (int i = 0; i < n; ++i) fn(i);
  }
}

// Section i of a chunk (layer i / 2, K for even i, V for odd): SectionIn over KvIn, SectionOut over KvOut.
template <class Section, class Kv>
Section section_of(const ChunkShape& shape, const Kv& kv, int i) {
  Section s;
  s.layer = i / 2;
  s.n_layer = shape.n_layer;
  s.is_v = i % 2;
  s.count = shape.count;
  s.head_dim = shape.head_dim;
  const auto base = s.is_v ? kv.v[size_t(s.layer)] : kv.k[size_t(s.layer)];
  for (int h = 0; h < shape.n_head_kv; ++h) s.head.push_back(base + (int64_t(h) * kv.stride + kv.first) * shape.head_dim);
  return s;
}

}  // namespace

std::vector<uint8_t> encode_chunk(const ChunkShape& shape, const KvIn& in, const LevelParams& level,
                                  ThreadPool* pool) {
  check_shape(shape);
  if (int(in.k.size()) != shape.n_layer || int(in.v.size()) != shape.n_layer)
    throw Error(ErrorKind::InvalidArgument, "codec: KvIn has the wrong number of layers");
  const ParsedLevel lv = parse_level(level.text);
  const int n = 2 * shape.n_layer;
  std::vector<std::vector<uint8_t>> parts(static_cast<size_t>(n));
  std::vector<uint8_t> prelude;
  if (shape.count > 0 && lv.scheme == Scheme::Lossless) {
    // The symbols of every section first, then the tables the sections of a kind share (the
    // prelude), then each section's stream.
    std::vector<LosslessSection> lossless(static_cast<size_t>(n));
    for_each_section(n, pool, [&](int i) { lossless[size_t(i)] = lossless_prepare(section_of<SectionIn>(shape, in, i)); });
    std::vector<RansEncoder> tables[2];
    ByteWriter pw{prelude};
    for (int kind = 0; kind < 2; ++kind) {
      std::vector<uint64_t> counts(size_t(kLosslessContexts) * 256, 0);
      for (int i = kind; i < n; i += 2)
        for (size_t j = 0; j < counts.size(); ++j) counts[j] += lossless[size_t(i)].counts[j];
      for (const auto& f : lossless_tables(counts)) {
        write_freqs(pw, f);
        tables[kind].emplace_back(f);
      }
    }
    for_each_section(n, pool, [&](int i) { lossless_finish(lossless[size_t(i)], tables[i % 2], parts[size_t(i)]); });
  } else if (shape.count > 0) {
    for_each_section(n, pool, [&](int i) {
      const SectionIn s = section_of<SectionIn>(shape, in, i);
      if (lv.scheme == Scheme::Lossy) encode_lossy(lv.lossy, s, parts[size_t(i)]);
      else encode_cachegen(lv.cachegen, s, parts[size_t(i)]);
    });
  }
  std::vector<uint8_t> bytes;
  size_t total = 5 + prelude.size() + 4 * size_t(n);
  for (const auto& p : parts) total += p.size();
  bytes.reserve(total);
  ByteWriter w{bytes};
  w.u8(uint32_t(lv.scheme));
  w.u32(uint32_t(prelude.size()));
  w.bytes(prelude.data(), prelude.size());
  for (const auto& p : parts) w.u32(uint32_t(p.size()));
  for (const auto& p : parts) w.bytes(p.data(), p.size());
  return bytes;
}

void decode_chunk(const ChunkShape& shape, const uint8_t* data, size_t size, const LevelParams& level,
                  const KvOut& out, ThreadPool* pool) {
  check_shape(shape);
  if (int(out.k.size()) != shape.n_layer || int(out.v.size()) != shape.n_layer)
    throw Error(ErrorKind::InvalidArgument, "codec: KvOut has the wrong number of layers");
  const ParsedLevel lv = parse_level(level.text);
  const int n = 2 * shape.n_layer;
  ByteReader r{data, data + size};
  if (r.u8("chunk header") != uint32_t(lv.scheme)) corrupt("chunk was coded by another scheme than its level");
  const size_t prelude_size = r.u32("prelude size");
  ByteReader pr{r.take(prelude_size, "prelude"), nullptr};
  pr.end = pr.p + prelude_size;
  std::vector<RansDecoder> tables[2];
  if (lv.scheme == Scheme::Lossless && shape.count > 0)
    for (int kind = 0; kind < 2; ++kind)
      for (int k = 0; k < kLosslessContexts; ++k) tables[kind].emplace_back(read_freqs(pr, 256));
  if (pr.left()) corrupt("trailing bytes in the prelude");
  std::vector<const uint8_t*> at(static_cast<size_t>(n));
  std::vector<size_t> len(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) len[size_t(i)] = r.u32("section sizes");
  for (int i = 0; i < n; ++i) at[size_t(i)] = r.take(len[size_t(i)], "section");
  if (r.left() != 0) corrupt("trailing bytes after the last section");
  for_each_section(n, pool, [&](int i) {
    const SectionOut s = section_of<SectionOut>(shape, out, i);
    ByteReader sr{at[size_t(i)], at[size_t(i)] + len[size_t(i)]};
    if (shape.count == 0) {
      if (sr.left()) corrupt("bytes in a section of an empty chunk");
      return;
    }
    switch (lv.scheme) {
      case Scheme::Lossless: lossless_decode(sr, tables[i % 2], s); break;
      case Scheme::Lossy: decode_lossy(lv.lossy, sr, s); break;
      case Scheme::CacheGen: decode_cachegen(lv.cachegen, sr, s); break;
    }
    if (sr.left()) corrupt("trailing bytes in a section");
  });
}

}  // namespace kvstash::codec
