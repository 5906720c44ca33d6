// Reading and decoding one stored chunk of a validated .kvz (shared by load_kvz and stream_kvz).
#pragma once
#include <cstdint>
#include <vector>

#include "codec/kv_codec.h"
#include "kvstash/kvz.h"

namespace kvstash::kvz {

// The stored copy of chunk `chunk` at `level` (which the index lists).
const KvzChunk::Stored& stored(const KvzInfo& info, size_t chunk, int level);
// Reads its bytes and checks their checksum (Corruption "<name>: checksum mismatch in chunk ...").
std::vector<uint8_t> read_chunk(const ByteSource& source, const KvzInfo& info, size_t chunk, int level);
// Decodes them into out (slots [out.first, out.first + count) of each head); Corruption names the
// source, the chunk and the level.
void decode_chunk(const ByteSource& source, const KvzInfo& info, size_t chunk, int level,
                  const std::vector<uint8_t>& bytes, const codec::KvOut& out, ThreadPool* threads = nullptr);

}  // namespace kvstash::kvz
