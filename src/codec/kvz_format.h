// Constants and the layout of the .kvz file (docs/format-kvz.md): change both together, and bump
// kVersion for any change a reader would misread.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kvstash/kvz.h"
#include "kvstash/state.h"

namespace kvstash::kvz {

// "\x89KVZ\r\n\x1a\n": a high byte and line endings, so that text-mode transfers show up (PNG's trick).
inline constexpr uint8_t kMagic[8] = {0x89, 'K', 'V', 'Z', '\r', '\n', 0x1a, '\n'};
inline constexpr char kFormatName[] = "kvstash.kvz";
inline constexpr uint32_t kVersion = 1;
inline constexpr uint64_t kFixedBytes = 24;              // magic, version, M, B
inline constexpr uint64_t kMaxMetadataBytes = 1u << 20;  // a longer metadata object is not ours
inline constexpr int kMaxLevel = 255;                    // level numbers lie in [1, kMaxLevel]
inline constexpr int kMaxChunkTokens = 1 << 20;
inline constexpr uint64_t kIndexChunkBytes = 16;  // u64 first, u64 count
inline constexpr uint64_t kIndexLevelBytes = 24;  // u64 offset, u64 size, u64 checksum

// True when the bytes start with the .kvz magic (needs at least 8 bytes).
bool has_magic(const uint8_t* data, size_t size);

// The state's metadata as .kvs writes it (docs/format-kvs.md, without checksum keys) plus the .kvz
// keys: format, format_version, chunk_tokens, n_chunks, levels and level.<n>.
std::map<std::string, std::string> metadata(const State& s, int chunk_tokens, int64_t n_chunks,
                                            const std::vector<int>& levels,
                                            const std::vector<std::string>& level_params);

// The byte sizes of the tables a header describes (docs/format-kvz.md, "Tables").
struct TableSizes {
  uint64_t tokens = 0, positions = 0, logits = 0, book_entry = 0, book_score = 0, book_merged = 0, index = 0;
  uint64_t total() const { return tokens + positions + logits + book_entry + book_score + book_merged + index; }
};
TableSizes table_sizes(const StateArch& a, uint64_t n_tokens, uint64_t logits_len, bool budgeted, uint64_t slots,
                       uint64_t n_chunks, uint64_t n_levels);

// The chunks of `slots` slots at `chunk_tokens` each (the last may hold fewer).
int64_t chunk_count(int64_t slots, int chunk_tokens);

// "1,2,5" and back (strictly ascending values in [1, kMaxLevel]; false if malformed).
std::string level_list_text(const std::vector<int>& levels);
bool parse_level_list(const std::string& text, std::vector<int>& levels);

// The level of each chunk under `choice` when it does not adapt (per_chunk or one level); throws
// InvalidArgument naming `name` for a level the file does not store or a per_chunk of the wrong length.
std::vector<int> fixed_levels(const KvzInfo& info, const LevelChoice& choice, const std::string& name);
// Checks the choice's levels as fixed_levels does (adaptive choices included).
void check_choice(const KvzInfo& info, const LevelChoice& choice, const std::string& name);

// The adaptive choice (LevelChoice::ttft_target_ms): each chunk at the best stored level at which
// it and every later chunk can still be read by the deadline at the read rate measured so far (the
// header's read included); the smallest when none can, or before anything is measured.
class AdaptivePlanner {
 public:
  AdaptivePlanner(const KvzInfo& info, double target_ms);
  // elapsed_ms: since the load began; read_ms, bytes_read: spent in reads and read so far.
  int level_for(size_t chunk, double elapsed_ms, double read_ms, uint64_t bytes_read) const;

 private:
  const KvzInfo& info_;
  double target_ms_;
  std::vector<std::vector<uint64_t>> after_;  // [j][i]: bytes of chunks i.. at info.levels[j]
};

}  // namespace kvstash::kvz
