// .kvz: a state compressed by the KV codec (docs/format-kvz.md). The state's metadata (fingerprint,
// arch, tokens, positions, logits, book) followed by chunks of a fixed slot count, each stored at
// one or more quality levels side by side, so a loader picks a level per chunk. Levels are numbered
// globally: 1 (smallest) .. kvz_lossless_level() - 1 are the codec's lossy levels, and
// kvz_lossless_level() is the exact f16 round trip.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kvstash/engine.h"
#include "kvstash/state.h"

namespace kvstash {

class ThreadPool;
class AtomicFile;

int kvz_lossless_level();  // the highest level number: lossless

struct KvzOptions {
  std::vector<int> levels;  // level numbers to store (any order; duplicates ignored); empty: every other lossy level (1, 3, 5, ...)
  int chunk_tokens = 256;   // slots per chunk (the last chunk may hold fewer)
  ThreadPool* threads = nullptr;  // parallel encoding; the bytes are the same for any thread count
};
// A .kvz file about to be written, like StateOutput: the temp file is created at construction (so
// an unwritable target fails before any work) and commit() compresses the state, writes, fsyncs and
// renames it over `path`; until then `path` is untouched, and an uncommitted temp file is removed.
class KvzOutput {
 public:
  explicit KvzOutput(const std::string& path);
  ~KvzOutput();
  KvzOutput(const KvzOutput&) = delete;
  KvzOutput& operator=(const KvzOutput&) = delete;
  const std::string& path() const { return path_; }
  void commit(const State& state, const KvzOptions& options = {});  // once

 private:
  std::string path_;
  std::unique_ptr<AtomicFile> file_;
};
// Compresses the state and writes it atomically (as save_state: an existing file is replaced only
// once the new one is complete). InvalidArgument for a level that does not exist.
void save_kvz(const State& state, const std::string& path, const KvzOptions& options = {});
// The same file's bytes in memory.
std::vector<uint8_t> encode_kvz(const State& state, const KvzOptions& options = {});

// Random-access bytes: a file, memory, a store. read(offset, size, dst) fills dst or throws Error;
// stream_kvz calls it from a thread of its own (one call at a time).
struct ByteSource {
  std::string name;  // for messages ("<name>: <what is wrong>")
  uint64_t size = 0;
  std::function<void(uint64_t offset, uint64_t size, uint8_t* dst)> read;
};
ByteSource file_source(const std::string& path);                      // NotFound/IOError
ByteSource memory_source(const uint8_t* data, size_t size, std::string name = "memory");
// Whether the source starts with the .kvz magic bytes (a .kvs file never does).
bool is_kvz(const ByteSource& source);
bool is_kvz_file(const std::string& path);  // false for a file that cannot be opened or is too short

struct KvzChunk {
  int64_t first = 0, count = 0;  // slots
  struct Stored { int level; uint64_t offset, size, checksum; };  // checksum: xxh3-64 of the bytes
  std::vector<Stored> levels;    // ascending level
};
// A validated header and chunk index; `meta` is the state without K/V storage.
struct KvzInfo {
  State meta;
  uint64_t file_size = 0;
  int chunk_tokens = 0;
  std::vector<int> levels;                 // stored levels, ascending
  std::vector<std::string> level_params;   // the codec's description of each
  std::vector<KvzChunk> chunks;
};
KvzInfo read_kvz_info(const ByteSource& source);

// The level each chunk is loaded at.
struct LevelChoice {
  int level = 0;               // 0: the best stored level; else a stored level (InvalidArgument if absent)
  std::vector<int> per_chunk;  // non-empty: one stored level per chunk (overrides level)
  // > 0: adaptive (CacheGen's adaptation): each chunk at the best stored level at which it and every
  // later chunk can still be read within this many milliseconds at the read rate measured so far.
  double ttft_target_ms = 0;
};

// Reads and decodes the whole state (K/V owned by the result). Corruption etc. as load_state.
State load_kvz(const ByteSource& source, const LevelChoice& choice = {}, ThreadPool* threads = nullptr);
State load_kvz(const std::string& path, const LevelChoice& choice = {}, ThreadPool* threads = nullptr);

struct StreamStats {
  std::vector<int> chunk_levels;  // the level each chunk was loaded at
  uint64_t bytes_read = 0;
  double ms = 0;                  // from the call to the last chunk installed
};
// Streams a .kvz into a new sequence of `engine`: chunk i + 1 is read and decoded on another thread
// while chunk i is installed into the KV pool. Validates header and index against the engine's
// model first (as restore does); on any error nothing is left allocated and no existing sequence is
// touched. The result continues exactly as restore(load_kvz(source, choice)) would.
struct StreamedState {
  State meta;  // tokens, positions, logits, book (no K/V)
  Sequence seq;
  StreamStats stats;
};
StreamedState stream_kvz(Engine& engine, const ByteSource& source, const LevelChoice& choice = {});

}  // namespace kvstash
