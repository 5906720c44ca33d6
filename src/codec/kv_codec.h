// The KV chunk codec: one chunk of a state's K/V (a run of slots, every layer and KV head) to
// bytes at one quality level and back. Chunks are independent: a chunk's bytes decode with nothing
// but the chunk shape and the level's parameters. Encoding and decoding use integer arithmetic and
// IEEE f32 operations in a fixed order (no FMA contraction), so the same input gives the same bytes
// and the same f16 values on every CPU and for every thread count.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kvstash {
class ThreadPool;
}

namespace kvstash::codec {

// K/V of one chunk as laid out in a State (or a staging buffer): per layer, K and V of
// [n_head_kv][stride][head_dim] f16 bit patterns; the chunk is slots [first, first + count) of
// every head.
struct ChunkShape {
  int n_layer = 0, n_head_kv = 0, head_dim = 0;
  int64_t count = 0;  // slots in this chunk
};
struct KvIn {
  std::vector<const uint16_t*> k, v;  // n_layer each
  int64_t stride = 0, first = 0;
};
struct KvOut {
  std::vector<uint16_t*> k, v;
  int64_t stride = 0, first = 0;
};

// How one quality level codes K/V. Written into a .kvz header as text (to_string) and read back
// (parse), so a file stays decodable whatever the built-in levels become.
struct LevelParams {
  std::string text;  // the canonical description, e.g. "lossless" or "lossy k=...;v=..."
  bool lossless() const;
  static LevelParams parse(const std::string& text);  // throws Error(Corruption) when malformed
};

// The built-in levels: 1 (smallest) .. built_in_levels() (best lossy quality).
int built_in_levels();
LevelParams built_in_level(int level);  // 1-based; InvalidArgument outside
LevelParams lossless_level();
LevelParams cachegen_level();  // CacheGen's released scheme (the baseline in docs/codec.md)

// Encodes one chunk. pool (may be null) parallelises inside the chunk; the bytes do not depend on it.
std::vector<uint8_t> encode_chunk(const ChunkShape& shape, const KvIn& in, const LevelParams& level,
                                  ThreadPool* pool = nullptr);
// Decodes one chunk into out. Throws Error(Corruption, "...") for bytes that are not a valid chunk of
// this shape and level (a crafted chunk never writes outside out's chunk nor reads outside data).
void decode_chunk(const ChunkShape& shape, const uint8_t* data, size_t size, const LevelParams& level,
                  const KvOut& out, ThreadPool* pool = nullptr);

}  // namespace kvstash::codec
