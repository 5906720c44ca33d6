// Helpers for the .kvz tests: tiny made-up states (fast to load thousands of times) and the
// offsets of a .kvz file's header fields, for crafting bad files.
#pragma once
#include <xxhash.h>

#include <cstring>
#include <vector>

#include "codec/kvz_format.h"
#include "kvstash/kvz.h"
#include "kvstash/state.h"
#include "state/kvs_format.h"

namespace kvstash::testing {

// A state of a made-up architecture (2 layers, 2 KV heads, head_dim 8, vocab 16): `tokens`
// entries with gaps in their positions, or (budgeted) a stream of 9 tokens kept in 4 slots per
// lane with an h2o book and a summary slot. Values are varied f16 patterns (no NaN or Inf).
inline State tiny_state(int tokens = 5, bool budgeted = false) {
  State s;
  s.arch = {2, 4, 2, 8, 8, 16, 10000.0f, 1.0f};
  for (size_t i = 0; i < s.model_fingerprint.bytes.size(); ++i) s.model_fingerprint.bytes[i] = uint8_t(17 * i + 3);
  s.n_ctx = 64;
  if (budgeted) {
    tokens = 9;
    EvictionBook b;
    b.budget.budget = 3;
    b.budget.interval = 2;
    b.budget.policy = EvictionPolicy::H2O;
    b.budget.summary = SummaryMode::Mean;
    b.has_summary = true;
    const std::vector<std::vector<int32_t>> entries = {{1, 5, -1, 8}, {4, 6, -1, 8}, {0, 2, -1, 8}, {3, 7, -1, 8}};
    for (const auto& e : entries) {
      b.entry.push_back(e);
      b.score.push_back({0.5f, 1.25f, 0.0f, 2.0f});
      b.merged.push_back(6);
    }
    s.book = b;
  }
  for (int i = 0; i < tokens; ++i) {
    s.tokens.push_back((5 * i + 2) % 16);
    s.positions.push_back(budgeted ? i : 2 * i + (i > 1));
  }
  if (tokens > 0)
    for (int i = 0; i < 16; ++i) s.logits.push_back(0.25f * float(i) - 1.5f);
  if (s.kv_entries() > 0) {
    s.allocate_kv();
    uint32_t x = 12345;
    for (int l = 0; l < s.arch.n_layer; ++l)
      for (uint16_t* p : {s.mutable_k(l), s.mutable_v(l)})
        for (size_t i = 0; i < s.kv_elements(); ++i) {
          x = x * 1103515245u + 12345u;
          p[i] = uint16_t(((x >> 16) & 0x83ff) | 0x3800);  // |value| in [0.5, 1), either sign
        }
  }
  return s;
}

// Where a .kvz file's header ends (the first payload byte) and its chunk index begins.
struct KvzLayout {
  uint64_t metadata_bytes = 0, table_bytes = 0, prefix = 0, index = 0;
  size_t n_levels = 0;
  // Offset of the u64 `field` (0 offset, 1 size, 2 checksum) of chunk c's i-th stored level.
  uint64_t level_field(size_t c, size_t i, int field) const {
    return index + c * (kvz::kIndexChunkBytes + n_levels * kvz::kIndexLevelBytes) + kvz::kIndexChunkBytes +
           i * kvz::kIndexLevelBytes + 8 * uint64_t(field);
  }
  uint64_t chunk_field(size_t c, int field) const {
    return index + c * (kvz::kIndexChunkBytes + n_levels * kvz::kIndexLevelBytes) + 8 * uint64_t(field);
  }
};

inline KvzLayout kvz_layout(const std::vector<uint8_t>& f, size_t n_chunks, size_t n_levels) {
  KvzLayout l;
  l.metadata_bytes = kvs::get_u32le(&f[12]);
  l.table_bytes = kvs::get_u64le(&f[16]);
  l.prefix = kvz::kFixedBytes + l.metadata_bytes + l.table_bytes + 8;
  l.n_levels = n_levels;
  l.index = l.prefix - 8 - n_chunks * (kvz::kIndexChunkBytes + n_levels * kvz::kIndexLevelBytes);
  return l;
}

// Choices and options without designated initializers (-Wmissing-field-initializers).
inline LevelChoice at_level(int level) {
  LevelChoice c;
  c.level = level;
  return c;
}
inline LevelChoice per_chunk(std::vector<int> levels) {
  LevelChoice c;
  c.per_chunk = std::move(levels);
  return c;
}
inline KvzOptions kvz_options(std::vector<int> levels, int chunk_tokens, ThreadPool* threads = nullptr) {
  KvzOptions o;
  o.levels = std::move(levels);
  o.chunk_tokens = chunk_tokens;
  o.threads = threads;
  return o;
}

// Recomputes the header checksum after the header was edited, so that the checks behind it run.
inline void fix_header_checksum(std::vector<uint8_t>& f) {
  const uint64_t prefix = kvz::kFixedBytes + kvs::get_u32le(&f[12]) + kvs::get_u64le(&f[16]) + 8;
  kvs::put_u64le(&f[prefix - 8], XXH3_64bits(f.data(), prefix - 8));
}

}  // namespace kvstash::testing
