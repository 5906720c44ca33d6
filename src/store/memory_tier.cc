// The memory tier: an LRU map with a byte budget, for one process (a server, a Python session).
#include <chrono>
#include <list>
#include <unordered_map>

#include "kvstash/store.h"

namespace kvstash {

namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class MemoryTier final : public StoreTier {
 public:
  explicit MemoryTier(uint64_t max_bytes) : max_(max_bytes) {}
  std::string name() const override { return "memory"; }

  std::vector<bool> contains(const std::vector<StoreKey>& keys) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<bool> r;
    for (const StoreKey& k : keys) r.push_back(index_.count(k) != 0);
    return r;
  }

  void get_many(const std::vector<StoreKey>& keys,
                const std::function<bool(size_t, std::optional<std::vector<uint8_t>>)>& on_value) override {
    for (size_t i = 0; i < keys.size(); ++i) {
      std::optional<std::vector<uint8_t>> v;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = index_.find(keys[i]);
        if (it == index_.end()) {
          ++stats_.misses;
        } else {
          lru_.splice(lru_.begin(), lru_, it->second);  // most recently used first
          Item& item = *it->second;
          ++item.entry.hits;
          item.entry.last_used_ms = now_ms();
          ++stats_.hits;
          stats_.bytes_read += item.value.size();
          v = item.value;
        }
      }
      if (!on_value(i, std::move(v))) return;
    }
  }

  void put(const StoreKey& key, const std::vector<uint8_t>& value) override {
    if (value.size() > max_) return;
    std::lock_guard<std::mutex> lock(mu_);
    remove(key);
    lru_.push_front(Item{StoreEntry{key, value.size(), 0, now_ms()}, value});
    index_[key] = lru_.begin();
    bytes_ += value.size();
    stats_.bytes_written += value.size();
    evict_locked(max_);
  }

  void drop(const StoreKey& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (remove(key)) ++stats_.errors;
  }

  TierStats stats() override {
    std::lock_guard<std::mutex> lock(mu_);
    TierStats s = stats_;
    s.tier = name();
    s.entries = index_.size();
    s.bytes = bytes_;
    return s;
  }

  std::vector<StoreEntry> list() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<StoreEntry> r;
    for (const Item& i : lru_) r.push_back(i.entry);
    return r;
  }
  uint64_t evict_to(uint64_t max_bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    return evict_locked(max_bytes);
  }

 private:
  struct Item {
    StoreEntry entry;
    std::vector<uint8_t> value;
  };
  bool remove(const StoreKey& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    bytes_ -= it->second->value.size();
    lru_.erase(it->second);
    index_.erase(it);
    return true;
  }
  uint64_t evict_locked(uint64_t max_bytes) {
    uint64_t n = 0;
    while (bytes_ > max_bytes && !lru_.empty()) {
      remove(lru_.back().entry.key);
      ++n;
    }
    return n;
  }

  const uint64_t max_;
  std::mutex mu_;
  std::list<Item> lru_;
  std::unordered_map<StoreKey, std::list<Item>::iterator, StoreKeyHash> index_;
  uint64_t bytes_ = 0;
  TierStats stats_;
};

}  // namespace

std::unique_ptr<StoreTier> memory_tier(uint64_t max_bytes) { return std::make_unique<MemoryTier>(max_bytes); }

}  // namespace kvstash
