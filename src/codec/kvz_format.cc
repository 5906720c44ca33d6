#include "codec/kvz_format.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "kvstash/error.h"
#include "state/kvs_format.h"
#include "state/kvs_metadata.h"

namespace kvstash::kvz {

bool has_magic(const uint8_t* data, size_t size) {
  return size >= sizeof kMagic && std::memcmp(data, kMagic, sizeof kMagic) == 0;
}

std::map<std::string, std::string> metadata(const State& s, int chunk_tokens, int64_t n_chunks,
                                            const std::vector<int>& levels,
                                            const std::vector<std::string>& level_params) {
  std::map<std::string, std::string> meta = kvs::state_metadata(s);
  meta["format"] = kFormatName;
  meta["format_version"] = std::to_string(kVersion);
  meta["chunk_tokens"] = std::to_string(chunk_tokens);
  meta["n_chunks"] = std::to_string(n_chunks);
  meta["levels"] = level_list_text(levels);
  for (size_t i = 0; i < levels.size(); ++i) meta["level." + std::to_string(levels[i])] = level_params[i];
  return meta;
}

TableSizes table_sizes(const StateArch& a, uint64_t n_tokens, uint64_t logits_len, bool budgeted, uint64_t slots,
                       uint64_t n_chunks, uint64_t n_levels) {
  // Callers bound every factor (dimensions below 2^16, tokens below 2^30, chunks and levels small),
  // so no product overflows 64 bits.
  const uint64_t lanes = uint64_t(a.n_layer) * uint64_t(a.n_head_kv);
  TableSizes t;
  t.tokens = 4 * n_tokens;
  t.positions = 4 * n_tokens;
  t.logits = 4 * logits_len;
  if (budgeted) {
    t.book_entry = 4 * lanes * slots;
    t.book_score = 4 * lanes * slots;
    t.book_merged = 8 * lanes;
  }
  t.index = n_chunks * (kIndexChunkBytes + n_levels * kIndexLevelBytes);
  return t;
}

int64_t chunk_count(int64_t slots, int chunk_tokens) { return (slots + chunk_tokens - 1) / chunk_tokens; }

namespace {
bool parse_levels_into(const std::string& text, std::vector<int>& levels) {
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    int v = 0;
    const auto r = std::from_chars(p, end, v);
    if (r.ec != std::errc() || *p == '0' || *p == '-' || *p == '+' || v < 1 || v > kMaxLevel) return false;
    if (!levels.empty() && v <= levels.back()) return false;
    levels.push_back(v);
    p = r.ptr;
    if (p == end) break;
    if (*p != ',' || p + 1 == end) return false;
    ++p;
  }
  return !levels.empty();
}
}  // namespace

std::string level_list_text(const std::vector<int>& levels) {
  std::string s;
  for (int l : levels) s += (s.empty() ? "" : ",") + std::to_string(l);
  return s;
}

bool parse_level_list(const std::string& text, std::vector<int>& levels) {
  levels.clear();
  const bool ok = parse_levels_into(text, levels);
  if (!ok) levels.clear();  // nothing half-parsed for a caller that ignores the result
  return ok;
}

namespace {
void check_stored(const KvzInfo& info, int level, const std::string& name) {
  if (!std::binary_search(info.levels.begin(), info.levels.end(), level))
    throw Error(ErrorKind::InvalidArgument, name + ": level " + std::to_string(level) +
                                                " is not stored in this file (stored: " +
                                                level_list_text(info.levels) + ")");
}
}  // namespace

void check_choice(const KvzInfo& info, const LevelChoice& choice, const std::string& name) {
  if (!choice.per_chunk.empty()) {
    if (choice.per_chunk.size() != info.chunks.size())
      throw Error(ErrorKind::InvalidArgument, name + ": " + std::to_string(choice.per_chunk.size()) +
                                                  " per-chunk levels for " + std::to_string(info.chunks.size()) +
                                                  " chunks");
    for (int l : choice.per_chunk) check_stored(info, l, name);
  } else if (choice.level != 0) {
    check_stored(info, choice.level, name);
  }
  if (!(choice.ttft_target_ms >= 0))
    throw Error(ErrorKind::InvalidArgument, name + ": the time-to-first-token target must be >= 0 ms");
}

std::vector<int> fixed_levels(const KvzInfo& info, const LevelChoice& choice, const std::string& name) {
  check_choice(info, choice, name);
  if (!choice.per_chunk.empty()) return choice.per_chunk;
  const int level = choice.level != 0 ? choice.level : (info.levels.empty() ? 0 : info.levels.back());
  return std::vector<int>(info.chunks.size(), level);
}

AdaptivePlanner::AdaptivePlanner(const KvzInfo& info, double target_ms) : info_(info), target_ms_(target_ms) {
  const size_t n = info.chunks.size();
  after_.assign(info.levels.size(), std::vector<uint64_t>(n + 1, 0));
  for (size_t j = 0; j < info.levels.size(); ++j)
    for (size_t i = n; i-- > 0;) {
      const std::vector<KvzChunk::Stored>& st = info.chunks[i].levels;
      uint64_t size = st.empty() ? 0 : st.front().size;  // a level the chunk lacks: its smallest
      for (const KvzChunk::Stored& x : st)
        if (x.level == info.levels[j]) size = x.size;
      after_[j][i] = after_[j][i + 1] + size;
    }
}

int AdaptivePlanner::level_for(size_t chunk, double elapsed_ms, double read_ms, uint64_t bytes_read) const {
  const std::vector<KvzChunk::Stored>& stored = info_.chunks[chunk].levels;
  if (bytes_read == 0 || read_ms <= 0) return stored.front().level;  // nothing measured yet: the smallest
  const double bytes_per_ms = double(bytes_read) / std::max(read_ms, 1e-6);
  const double budget = (target_ms_ - elapsed_ms) * bytes_per_ms;  // bytes readable before the deadline
  // The best level that this chunk and every later one can be read at by the deadline: an even
  // quality over the state, re-planned at every chunk as the measured rate moves.
  for (size_t j = info_.levels.size(); j-- > 0;)
    if (double(after_[j][chunk]) <= budget)
      for (const KvzChunk::Stored& x : stored)
        if (x.level == info_.levels[j]) return x.level;
  return stored.front().level;
}

}  // namespace kvstash::kvz
