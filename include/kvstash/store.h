// The prefix store: where the bytes of cached KV chunks live (docs/format-store.md). A tier is a
// plain key -> bytes map (memory, a disk directory, Redis); ChunkStore stacks tiers fastest first,
// wraps every value in a checked envelope, finds the longest run of keys present, promotes hits to
// faster tiers and writes through to every tier. The store knows nothing of tensors: what a value
// holds is the session's business.
#pragma once
#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace kvstash {

struct StoreKey {
  std::array<uint8_t, 16> bytes{};  // an xxh3-128 digest, canonical (big-endian) order
  std::string hex() const;          // 32 lowercase hex digits
  static std::optional<StoreKey> from_hex(std::string_view s);
  bool operator==(const StoreKey&) const = default;
};
struct StoreKeyHash {
  size_t operator()(const StoreKey& k) const;
};
// xxh3-128 of `parent`'s 16 bytes followed by `data`: one link of a key chain.
StoreKey chain_key(const StoreKey& parent, const void* data, size_t size);
// xxh3-128 of a string: the seed of a chain.
StoreKey seed_key(std::string_view text);

// Problems a tier meets and survives (unreachable server, full disk) are reported here, one line
// each, without "warning:" (the caller adds its prefix).
using StoreWarn = std::function<void(const std::string&)>;

struct StoreEntry {
  StoreKey key;
  uint64_t bytes = 0;         // stored size (envelope included)
  uint64_t hits = 0;          // reads that found it (advisory: concurrent increments may be lost)
  int64_t last_used_ms = 0;   // unix time of its last write or hit; 0 where the tier cannot tell
};

struct TierStats {
  std::string tier;
  uint64_t entries = 0, bytes = 0;       // what the tier holds now (as far as it can tell)
  uint64_t hits = 0, misses = 0;         // this process's reads
  uint64_t bytes_read = 0, bytes_written = 0;
  uint64_t errors = 0;                   // failed operations (unreachable, I/O) and corrupt entries dropped
};

// A tier. Every method is thread-safe and never throws for the tier's own failures (an unreachable
// server, an I/O error): it reports them through the warn callback it was made with and answers as a
// miss. The admin methods (list, evict_to, clear) throw Error instead, for a command to report.
class StoreTier {
 public:
  virtual ~StoreTier() = default;
  virtual std::string name() const = 0;  // "memory", "disk <dir>", "redis <host:port/db>"
  // Which of the keys are present (one round trip where the tier is remote).
  virtual std::vector<bool> contains(const std::vector<StoreKey>& keys) = 0;
  // Reads keys in order, calling on_value(i, bytes) as each arrives (nullopt: absent or failed);
  // stops early when on_value returns false. Remote tiers pipeline the requests.
  virtual void get_many(const std::vector<StoreKey>& keys,
                        const std::function<bool(size_t, std::optional<std::vector<uint8_t>>)>& on_value) = 0;
  virtual void put(const StoreKey& key, const std::vector<uint8_t>& value) = 0;
  virtual void drop(const StoreKey& key) = 0;  // a corrupt entry (absent: no-op)
  virtual TierStats stats() = 0;

  // Admin (throw Error): every entry; evicts least recently used entries until at most max_bytes
  // remain (returns the count removed); removes every entry (returns the count).
  virtual std::vector<StoreEntry> list() = 0;
  virtual uint64_t evict_to(uint64_t max_bytes) = 0;
  virtual uint64_t clear() { return evict_to(0); }
};

// An LRU map in this process, at most max_bytes of values.
std::unique_ptr<StoreTier> memory_tier(uint64_t max_bytes);
// Files in `dir` (created if missing), at most max_bytes in all (least recently used removed first;
// several processes may share the directory). Throws Error if dir cannot be created or is not a
// kvstash store directory; a read-only directory is accepted (reads work, writes warn).
std::unique_ptr<StoreTier> disk_tier(const std::string& dir, uint64_t max_bytes, StoreWarn warn);
// A Redis server: redis://[[user]:password@]host[:port][/db][?timeout_ms=N] (port 6379, db 0,
// timeout 1000 ms). Throws InvalidArgument for a malformed URL; an unreachable server is a warning
// and a miss, retried at most once a second.
std::unique_ptr<StoreTier> redis_tier(const std::string& url, StoreWarn warn);

// Sizes such as 512M, 8G, 1.5GiB, 1000000 (InvalidArgument otherwise).
uint64_t parse_byte_size(const std::string& text);

// Tiers, fastest first, with checked envelopes and a background writer.
class ChunkStore {
 public:
  ChunkStore(std::vector<std::unique_ptr<StoreTier>> tiers, StoreWarn warn);
  ~ChunkStore();  // flushes
  ChunkStore(const ChunkStore&) = delete;
  ChunkStore& operator=(const ChunkStore&) = delete;

  bool empty() const { return tiers_.empty(); }
  const std::vector<std::unique_ptr<StoreTier>>& tiers() const { return tiers_; }

  // Where each key is: per key, the fastest tier holding it (-1: none). One probe per tier.
  std::vector<int> locate(const std::vector<StoreKey>& keys);

  struct Fetched {
    size_t index = 0;  // into keys
    int tier = 0;
    std::vector<uint8_t> entry;  // the envelope, checksums verified
    const uint8_t* payload() const { return entry.data() + kEnvelopeBytes; }
    size_t payload_size() const { return entry.size() - kEnvelopeBytes; }
  };
  // Reads keys[0..n) (n = the leading keys `where` places in some tier) in order from the tiers
  // `where` names, on a thread of its own, handing each verified payload to `use` on the calling
  // thread while the next one is read. Stops at the first key that is missing or whose envelope is
  // corrupt (dropped from its tier, with a warning), or when `use` returns false (the caller found
  // the payload itself wrong: it is dropped too). Each payload used is promoted, in the background,
  // to the faster tiers. Returns how many keys were used.
  size_t fetch(const std::vector<StoreKey>& keys, const std::vector<int>& where,
               const std::function<bool(const Fetched&)>& use);

  // Writes the payload (made by `make` on the writer thread) to every tier faster than
  // `present_in` (-1 or tiers().size(): to all), in the background.
  void put_async(const StoreKey& key, std::function<std::vector<uint8_t>()> make, int present_in = -1);
  void flush();  // waits until every queued write is done

  // The envelope around a payload; whether an entry is an intact envelope filed under `key`.
  static constexpr size_t kEnvelopeBytes = 64;  // the header before the payload
  static std::vector<uint8_t> wrap(const StoreKey& key, const std::vector<uint8_t>& payload);
  static bool intact(const StoreKey& key, const std::vector<uint8_t>& entry);

 private:
  void drop(int tier, const StoreKey& key, const std::string& why);
  void writer_loop();
  std::vector<std::unique_ptr<StoreTier>> tiers_;
  StoreWarn warn_;
  struct Job;
  void queue(std::unique_ptr<Job> job);
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> jobs_;
  bool busy_ = false, stop_ = false;
  std::thread writer_;
};

}  // namespace kvstash
