// ChunkStore: the tiers stacked fastest first, every value in a checked envelope
// (docs/format-store.md), reads pipelined on a thread of their own, writes in the background.
#include <algorithm>
#include <cstring>
#include <exception>
#include <xxhash.h>

#include "kvstash/error.h"
#include "kvstash/store.h"
#include "util/little_endian.h"

namespace kvstash {

namespace {

constexpr char kMagic[8] = {'K', 'V', 'S', 'T', 'C', 'H', 'N', 'K'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeader = ChunkStore::kEnvelopeBytes;

}  // namespace

std::vector<uint8_t> ChunkStore::wrap(const StoreKey& key, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> e(kHeader + payload.size(), 0);
  std::memcpy(e.data(), kMagic, 8);
  put_u32le(&e[8], kVersion);
  std::memcpy(&e[16], key.bytes.data(), 16);
  put_u64le(&e[32], payload.size());
  put_u64le(&e[40], XXH3_64bits(payload.data(), payload.size()));
  put_u64le(&e[56], XXH3_64bits(e.data(), 56));
  if (!payload.empty()) std::memcpy(&e[kHeader], payload.data(), payload.size());
  return e;
}

bool ChunkStore::intact(const StoreKey& key, const std::vector<uint8_t>& e) {
  if (e.size() < kHeader || std::memcmp(e.data(), kMagic, 8) != 0) return false;
  if (get_u64le(&e[56]) != XXH3_64bits(e.data(), 56)) return false;
  if (get_u32le(&e[8]) != kVersion || std::memcmp(&e[16], key.bytes.data(), 16) != 0) return false;
  const uint64_t size = get_u64le(&e[32]);
  return size == e.size() - kHeader && get_u64le(&e[40]) == XXH3_64bits(e.data() + kHeader, size);
}

struct ChunkStore::Job {
  StoreKey key;
  std::function<std::vector<uint8_t>()> make;  // the payload, or (wrapped) the entry itself
  size_t tiers = 0;                            // writes to tiers [0, tiers)
  bool wrapped = false;
};

ChunkStore::ChunkStore(std::vector<std::unique_ptr<StoreTier>> tiers, StoreWarn warn)
    : tiers_(std::move(tiers)), warn_(std::move(warn)) {
  writer_ = std::thread([this] { writer_loop(); });
}

ChunkStore::~ChunkStore() {
  flush();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  writer_.join();
}

std::vector<int> ChunkStore::locate(const std::vector<StoreKey>& keys) {
  std::vector<int> where(keys.size(), -1);
  for (size_t t = 0; t < tiers_.size(); ++t) {
    const std::vector<bool> has = tiers_[t]->contains(keys);
    for (size_t i = 0; i < keys.size() && i < has.size(); ++i)
      if (where[i] < 0 && has[i]) where[i] = int(t);
  }
  return where;
}

void ChunkStore::drop(int tier, const StoreKey& key, const std::string& why) {
  tiers_[size_t(tier)]->drop(key);
  if (warn_) warn_(tiers_[size_t(tier)]->name() + ": entry " + key.hex() + " " + why + "; dropped, recomputing");
}

size_t ChunkStore::fetch(const std::vector<StoreKey>& keys, const std::vector<int>& where,
                         const std::function<bool(const Fetched&)>& use) {
  size_t n = 0;
  while (n < keys.size() && n < where.size() && where[n] >= 0) ++n;
  if (n == 0) return 0;

  // Up to two items are read ahead; one that is not ok (missing, corrupt) ends the run.
  struct Item {
    Fetched f;
    bool ok = false, corrupt = false;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Item> items;
  bool done = false, stop = false;
  std::thread reader([&] {
    auto push = [&](Item item) {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return items.size() < 2 || stop; });
      if (stop) return false;
      const bool go_on = item.ok;
      items.push_back(std::move(item));
      cv.notify_all();
      return go_on;
    };
    try {
      for (size_t i = 0; i < n;) {
        size_t j = i;  // a run of keys in the same tier
        while (j < n && where[j] == where[i]) ++j;
        const int tier = where[i];
        std::vector<StoreKey> run(keys.begin() + long(i), keys.begin() + long(j));
        bool go_on = true;
        tiers_[size_t(tier)]->get_many(run, [&](size_t k, std::optional<std::vector<uint8_t>> v) {
          Item item;
          item.f.index = i + k;
          item.f.tier = tier;
          if (v) {
            item.ok = intact(keys[i + k], *v);
            item.corrupt = !item.ok;
            item.f.entry = std::move(*v);
          }
          go_on = push(std::move(item));
          return go_on;
        });
        if (!go_on) break;
        i = j;
      }
    } catch (...) {
      // A tier broke its promise not to throw: what was read so far stands.
    }
    std::lock_guard<std::mutex> lock(mu);
    done = true;
    cv.notify_all();
  });

  // However this returns, the reader is stopped (it may wait to push) and joined.
  struct StopReader {
    std::mutex& mu;
    std::condition_variable& cv;
    bool& stop;
    std::thread& reader;
    ~StopReader() {
      {
        std::lock_guard<std::mutex> lock(mu);
        stop = true;
      }
      cv.notify_all();
      reader.join();
    }
  } stop_reader{mu, cv, stop, reader};

  size_t used = 0;
  while (true) {
    Item item;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return !items.empty() || done; });
      if (items.empty()) break;
      item = std::move(items.front());
      items.pop_front();
      cv.notify_all();
    }
    const StoreKey& key = keys[item.f.index];
    if (item.corrupt) drop(item.f.tier, key, "is corrupt (envelope checksum)");
    if (!item.ok) break;
    if (!use(item.f)) {
      drop(item.f.tier, key, "does not hold what its key promises");
      break;
    }
    ++used;
    if (item.f.tier > 0) {  // promote to the faster tiers
      auto entry = std::make_shared<std::vector<uint8_t>>(std::move(item.f.entry));
      queue(std::make_unique<Job>(Job{key, [entry] { return std::move(*entry); }, size_t(item.f.tier), true}));
    }
  }
  return used;
}

void ChunkStore::put_async(const StoreKey& key, std::function<std::vector<uint8_t>()> make, int present_in) {
  const size_t limit = present_in < 0 ? tiers_.size() : std::min(tiers_.size(), size_t(present_in));
  if (limit > 0) queue(std::make_unique<Job>(Job{key, std::move(make), limit, false}));
}

void ChunkStore::queue(std::unique_ptr<Job> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_all();
}

void ChunkStore::flush() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return jobs_.empty() && !busy_; });
}

void ChunkStore::writer_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return !jobs_.empty() || stop_; });
    if (jobs_.empty()) return;
    std::unique_ptr<Job> job = std::move(jobs_.front());
    jobs_.pop_front();
    busy_ = true;
    lock.unlock();
    try {
      const std::vector<uint8_t> entry = job->wrapped ? job->make() : wrap(job->key, job->make());
      for (size_t t = 0; t < job->tiers; ++t) tiers_[t]->put(job->key, entry);
    } catch (const std::exception& e) {
      if (warn_) warn_(std::string("prefix store: cannot store an entry: ") + e.what());
    }
    lock.lock();
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace kvstash
