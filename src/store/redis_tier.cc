// The Redis tier (docs/format-store.md): values at kvstash:v1:chunk:<hex>, read counts in the hash
// kvstash:v1:hits and stored sizes in the hash kvstash:v1:bytes (field <hex> in both). Sizes are
// kept apart because STRLEN would reset the idle time that list() reads as "last used".
#include <hiredis/hiredis.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <set>

#include "kvstash/error.h"
#include "kvstash/store.h"
#include "store/redis_url.h"
#include "store/resp_reader.h"

namespace kvstash {
namespace {

constexpr std::string_view kChunkPrefix = "kvstash:v1:chunk:";
constexpr const char* kChunkPattern = "kvstash:v1:chunk:*";
constexpr const char* kHitsKey = "kvstash:v1:hits";
constexpr const char* kBytesKey = "kvstash:v1:bytes";
constexpr size_t kMaxBatch = 16;  // GETs in flight at once: bounds the replies held in memory

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyFree>;

std::string chunk_name(const StoreKey& k) { return std::string(kChunkPrefix) + k.hex(); }

int64_t unix_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

uint64_t reply_number(const redisReply* r) {
  if (r->type == REDIS_REPLY_INTEGER) return r->integer > 0 ? uint64_t(r->integer) : 0;
  if (r->type == REDIS_REPLY_STRING) return std::strtoull(r->str, nullptr, 10);
  return 0;
}

// hiredis writes with write(2): a server that dies mid-command would kill the whole process with
// SIGPIPE. Ignore it, unless the program installed a handler of its own.
void ignore_sigpipe() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction old {};
    if (sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
  });
}

class RedisTier final : public StoreTier {
 public:
  RedisTier(RedisUrl url, StoreWarn warn)
      : url_(std::move(url)), label_(redis_label(url_)), warn_(std::move(warn)) {}
  ~RedisTier() override { close(); }

  std::string name() const override { return "redis " + label_; }

  std::vector<bool> contains(const std::vector<StoreKey>& keys) override {
    std::vector<bool> out(keys.size(), false);
    if (keys.empty()) return out;
    Session s(*this);
    bool ok = run([&]() -> std::string {
      for (const StoreKey& k : keys) {
        std::string name = chunk_name(k);
        redisAppendCommand(ctx_, "EXISTS %b", name.data(), name.size());
      }
      for (size_t i = 0; i < keys.size(); ++i) {
        Reply r = next_reply();
        if (!r) return ctx_->errstr;
        if (r->type == REDIS_REPLY_ERROR) return r->str;
        out[i] = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
      }
      return {};
    });
    if (!ok) std::fill(out.begin(), out.end(), false);
    return out;
  }

  // Pipelines GETs in batches (1, 2, 4, ... kMaxBatch keys: the first value comes after one round
  // trip). Each batch is read whole under the lock, then handed to on_value without it, so that
  // on_value may call back into this tier (drop a corrupt entry) or wait on another thread that does.
  void get_many(const std::vector<StoreKey>& keys,
                const std::function<bool(size_t, std::optional<std::vector<uint8_t>>)>& on_value) override {
    std::vector<StoreKey> found;  // delivered hits not yet counted in the hits hash
    size_t i = 0, batch = 1;
    bool ok = true;
    while (i < keys.size()) {
      size_t n = std::min(batch, keys.size() - i);
      std::vector<std::optional<std::vector<uint8_t>>> got(n);
      if (ok) {
        Session s(*this);
        ok = run([&]() -> std::string {
          append_hit_counts(found);  // their replies are skipped by next_reply: no round trip of their own
          for (size_t j = 0; j < n; ++j) {
            std::string name = chunk_name(keys[i + j]);
            redisAppendCommand(ctx_, "GET %b", name.data(), name.size());
          }
          return read_values(got);
        });
        found.clear();
        if (!ok) got.assign(n, std::nullopt);
      }
      for (size_t j = 0; j < n; ++j) {
        bool hit = got[j].has_value();
        if (hit) hits_++, bytes_read_ += got[j]->size();
        else misses_++;
        if (!on_value(i + j, std::move(got[j]))) {
          flush_hit_counts(found);
          return;
        }
        if (hit) found.push_back(keys[i + j]);
      }
      i += n;
      batch = std::min(batch * 2, kMaxBatch);
    }
    flush_hit_counts(found);
  }

  void put(const StoreKey& key, const std::vector<uint8_t>& value) override {
    std::string name = chunk_name(key), hex = key.hex();
    Session s(*this);
    bool ok = run([&]() -> std::string {
      redisAppendCommand(ctx_, "SET %b %b", name.data(), name.size(), value.data(), value.size());
      redisAppendCommand(ctx_, "HSET %s %s %llu", kBytesKey, hex.c_str(), (unsigned long long)value.size());
      return read_replies(2);
    });
    if (ok) bytes_written_ += value.size();
  }

  void drop(const StoreKey& key) override {
    Session s(*this);
    run([&]() -> std::string {
      append_delete(key);
      return read_replies(3);
    });
  }

  TierStats stats() override {
    TierStats t;
    t.tier = name();
    t.hits = hits_, t.misses = misses_;
    t.bytes_read = bytes_read_, t.bytes_written = bytes_written_;
    t.errors = errors_;
    return t;
  }

  std::vector<StoreEntry> list() override {
    Session s(*this);
    std::vector<StoreEntry> out;
    admin([&]() -> std::string {
      out.clear();
      std::set<std::string> seen;  // SCAN may return a key twice
      return scan([&](const std::vector<std::string>& names) -> std::string {
        std::vector<StoreKey> keys;
        for (const std::string& nm : names) {
          auto k = StoreKey::from_hex(std::string_view(nm).substr(kChunkPrefix.size()));
          if (k && seen.insert(nm).second) keys.push_back(*k);
        }
        return describe(keys, out);
      });
    });
    return out;
  }

  uint64_t evict_to(uint64_t max_bytes) override {
    std::vector<StoreEntry> entries = list();
    uint64_t total = 0;
    for (const StoreEntry& e : entries) total += e.bytes;
    std::stable_sort(entries.begin(), entries.end(),
                     [](const StoreEntry& a, const StoreEntry& b) { return a.last_used_ms < b.last_used_ms; });
    std::vector<StoreKey> victims;
    for (size_t i = 0; i < entries.size() && total > max_bytes; ++i) {
      victims.push_back(entries[i].key);
      total -= entries[i].bytes;
    }
    Session s(*this);
    uint64_t removed = 0;
    admin([&]() -> std::string {
      removed = 0;
      for (size_t i = 0; i < victims.size(); i += 1000) {
        size_t n = std::min<size_t>(1000, victims.size() - i);
        std::string why = delete_keys(victims.data() + i, n, removed);
        if (!why.empty()) return why;
      }
      return {};
    });
    return removed;
  }

  uint64_t clear() override {
    Session s(*this);
    uint64_t removed = 0;
    admin([&]() -> std::string {
      removed = 0;
      std::string why = scan([&](const std::vector<std::string>& names) -> std::string {
        for (const std::string& nm : names) redisAppendCommand(ctx_, "DEL %b", nm.data(), nm.size());
        for (size_t i = 0; i < names.size(); ++i) {
          Reply r = next_reply();
          if (!r) return ctx_->errstr;
          if (r->type == REDIS_REPLY_ERROR) return r->str;
          removed += reply_number(r.get());
        }
        return {};
      });
      if (!why.empty()) return why;
      redisAppendCommand(ctx_, "DEL %s %s", kHitsKey, kBytesKey);
      return read_replies(1);
    });
    return removed;
  }

 private:
  // Holds the connection lock; warnings raised meanwhile go out after it is released, so that the
  // callback may do anything.
  class Session {
   public:
    explicit Session(RedisTier& t) : t_(t), lock_(t.mu_) {}
    ~Session() {
      std::string w = std::move(t_.pending_warning_);
      t_.pending_warning_.clear();
      lock_.unlock();
      if (!w.empty() && t_.warn_) t_.warn_(w);
    }

   private:
    RedisTier& t_;
    std::unique_lock<std::mutex> lock_;
  };

  void close() {
    if (ctx_) redisFree(ctx_);
    ctx_ = nullptr;
    discard_ = 0;
  }

  // Connects, authenticates and selects the database: "" or why not (then no connection).
  std::string open() {
    timeval tv{url_.timeout_ms / 1000, (url_.timeout_ms % 1000) * 1000};
    ctx_ = redisConnectWithTimeout(url_.host.c_str(), url_.port, tv);
    if (!ctx_) return "out of memory";
    std::string why;
    if (ctx_->err) why = ctx_->errstr;
    else if (redisSetTimeout(ctx_, tv) != REDIS_OK) why = "cannot set the timeout";
    if (why.empty() && !url_.password.empty()) {
      if (url_.user.empty()) redisAppendCommand(ctx_, "AUTH %b", url_.password.data(), url_.password.size());
      else redisAppendCommand(ctx_, "AUTH %b %b", url_.user.data(), url_.user.size(), url_.password.data(), url_.password.size());
      why = read_replies(1);
    }
    if (why.empty() && url_.db != 0) {
      redisAppendCommand(ctx_, "SELECT %d", url_.db);
      why = read_replies(1);
    }
    if (!why.empty()) close();
    return why;
  }

  // Runs op on a live connection (op: "" or why it failed). A connection the server closed while
  // idle is replaced at once, quietly; any other failure drops the connection, warns once per
  // outage, and the next attempt to connect waits a second.
  template <class Op>
  bool run(Op&& op) {
    using Clock = std::chrono::steady_clock;
    for (int attempt = 0;; ++attempt) {
      bool reused = ctx_ != nullptr;
      if (!ctx_) {
        if (attempt == 0 && failed_ && Clock::now() - last_failure_ < std::chrono::seconds(1)) {
          errors_++;
          return false;
        }
        if (std::string why = open(); !why.empty()) return fail(why);
      }
      std::string why = op();
      if (why.empty()) {
        failed_ = false;  // reachable again: the next outage warns anew
        return true;
      }
      bool stale = reused && attempt == 0 &&
                   (ctx_->err == REDIS_ERR_EOF ||
                    (ctx_->err == REDIS_ERR_IO && (why == std::strerror(ECONNRESET) || why == std::strerror(EPIPE))));
      if (!stale) return fail(why);
      close();
    }
  }

  bool fail(const std::string& why) {
    close();
    errors_++;
    last_failure_ = std::chrono::steady_clock::now();
    if (!failed_) pending_warning_ = "redis " + label_ + " unreachable (" + why + "); computing without it";
    failed_ = true;
    return false;
  }

  // Admin commands: connect whatever the back-off, throw on failure.
  template <class Op>
  void admin(Op&& op) {
    for (int attempt = 0;; ++attempt) {
      bool reused = ctx_ != nullptr;
      std::string why = ctx_ ? "" : open();
      if (why.empty()) why = op();
      if (why.empty()) return;
      bool retry = reused && attempt == 0 && ctx_ && (ctx_->err == REDIS_ERR_EOF || ctx_->err == REDIS_ERR_IO);
      close();
      if (!retry) throw Error(ErrorKind::IOError, "redis " + redis_label(url_, false) + ": " + why);
    }
  }

  // The next reply, after skipping those nobody waits for (hit counts); null on an I/O failure.
  Reply next_reply() {
    void* r = nullptr;
    for (; discard_ > 0; --discard_) {
      if (redisGetReply(ctx_, &r) != REDIS_OK) return nullptr;
      freeReplyObject(r);
    }
    if (redisGetReply(ctx_, &r) != REDIS_OK) return nullptr;
    return Reply(static_cast<redisReply*>(r));
  }

  // Sends the queued commands, then reads the skipped replies and one GET reply per element of got
  // with RespReader rather than hiredis (see resp_reader.h): "" or why it failed.
  std::string read_values(std::vector<std::optional<std::vector<uint8_t>>>& got) {
    for (int done = 0; !done;)
      if (redisBufferWrite(ctx_, &done) != REDIS_OK) return ctx_->errstr;
    redisReader*& rr = ctx_->reader;
    if (rr->ridx != -1) return "hiredis reader is mid-reply";  // cannot happen: replies are read whole
    RespReader in(ctx_->fd, std::string_view(rr->buf + rr->pos, rr->len - rr->pos));
    if (rr->len > 0) {  // those bytes now belong to `in`: give hiredis an empty reader (0.14 has no reset)
      redisReader* fresh = redisReaderCreate();
      if (!fresh) return "out of memory";
      redisReaderFree(rr);
      rr = fresh;
    }
    for (; discard_ > 0; --discard_)
      if (RespReader::Result r = in.skip(); r.status != RespReader::Status::Ok) return read_failure(r);
    for (auto& v : got)
      if (RespReader::Result r = in.read_value(v); r.status != RespReader::Status::Ok) return read_failure(r);
    std::string_view rest = in.leftover();  // nothing is expected after the last GET; kept for hiredis
    if (!rest.empty() && redisReaderFeed(rr, rest.data(), rest.size()) != REDIS_OK) return "out of memory";
    return {};
  }

  // Records a RespReader failure in the context as hiredis would, so that run() tells a connection
  // closed while idle from other failures.
  std::string read_failure(const RespReader::Result& r) {
    using S = RespReader::Status;
    if (r.status == S::ServerError) return r.why;
    ctx_->err = r.status == S::Eof ? REDIS_ERR_EOF : r.status == S::Io ? REDIS_ERR_IO : REDIS_ERR_PROTOCOL;
    std::snprintf(ctx_->errstr, sizeof ctx_->errstr, "%s", r.why.c_str());
    return r.why;
  }

  // Reads n replies: "" or the first failure.
  std::string read_replies(size_t n) {
    std::string why;
    for (size_t i = 0; i < n; ++i) {
      Reply r = next_reply();
      if (!r) return ctx_->errstr;
      if (r->type == REDIS_REPLY_ERROR && why.empty()) why = r->str;
    }
    return why;
  }

  void append_hit_counts(const std::vector<StoreKey>& keys) {
    for (const StoreKey& k : keys) {
      std::string hex = k.hex();
      redisAppendCommand(ctx_, "HINCRBY %s %s 1", kHitsKey, hex.c_str());
    }
    discard_ += keys.size();
  }

  // Sends the hit counts left over at the end of a get_many without waiting for their replies.
  void flush_hit_counts(const std::vector<StoreKey>& keys) {
    if (keys.empty()) return;
    Session s(*this);
    if (!ctx_) return;
    append_hit_counts(keys);
    for (int done = 0; !done;)
      if (redisBufferWrite(ctx_, &done) != REDIS_OK) {
        fail(ctx_->errstr);
        return;
      }
  }

  void append_delete(const StoreKey& key) {
    std::string name = chunk_name(key), hex = key.hex();
    redisAppendCommand(ctx_, "DEL %b", name.data(), name.size());
    redisAppendCommand(ctx_, "HDEL %s %s", kHitsKey, hex.c_str());
    redisAppendCommand(ctx_, "HDEL %s %s", kBytesKey, hex.c_str());
  }

  // Deletes n keys (one pipeline), adding the count actually removed.
  std::string delete_keys(const StoreKey* keys, size_t n, uint64_t& removed) {
    for (size_t i = 0; i < n; ++i) append_delete(keys[i]);
    for (size_t i = 0; i < n; ++i) {
      Reply r = next_reply();
      if (!r) return ctx_->errstr;
      if (r->type == REDIS_REPLY_ERROR) return r->str;
      removed += reply_number(r.get());
      if (std::string why = read_replies(2); !why.empty()) return why;
    }
    return {};
  }

  // Calls page(names) for each SCAN page of chunk keys.
  template <class Page>
  std::string scan(Page&& page) {
    std::string cursor = "0";
    do {
      redisAppendCommand(ctx_, "SCAN %s MATCH %s COUNT 1000", cursor.c_str(), kChunkPattern);
      Reply r = next_reply();  // not redisCommand: hit counts may be in flight
      if (!r) return ctx_->errstr;
      if (r->type == REDIS_REPLY_ERROR) return r->str;
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
          r->element[1]->type != REDIS_REPLY_ARRAY)
        return "unexpected SCAN reply";
      cursor.assign(r->element[0]->str, r->element[0]->len);
      std::vector<std::string> names;
      const redisReply* arr = r->element[1];
      for (size_t i = 0; i < arr->elements; ++i)
        if (arr->element[i]->type == REDIS_REPLY_STRING) names.emplace_back(arr->element[i]->str, arr->element[i]->len);
      if (std::string why = page(names); !why.empty()) return why;
    } while (cursor != "0");
    return {};
  }

  // Appends an entry for each key still present: idle time first (OBJECT does not touch the key),
  // then hits and size; STRLEN (which touches) only for an entry whose size was not recorded.
  std::string describe(const std::vector<StoreKey>& keys, std::vector<StoreEntry>& out) {
    for (const StoreKey& k : keys) {
      std::string name = chunk_name(k), hex = k.hex();
      redisAppendCommand(ctx_, "OBJECT IDLETIME %b", name.data(), name.size());
      redisAppendCommand(ctx_, "HGET %s %s", kHitsKey, hex.c_str());
      redisAppendCommand(ctx_, "HGET %s %s", kBytesKey, hex.c_str());
    }
    int64_t now = unix_ms();
    std::vector<size_t> unsized;
    for (const StoreKey& k : keys) {
      Reply idle = next_reply(), hits = idle ? next_reply() : nullptr, bytes = hits ? next_reply() : nullptr;
      if (!bytes) return ctx_->errstr;
      if (idle->type == REDIS_REPLY_NIL) continue;  // removed since SCAN
      StoreEntry e;
      e.key = k;
      // An LFU eviction policy makes OBJECT IDLETIME an error: last use unknown.
      if (idle->type == REDIS_REPLY_INTEGER) e.last_used_ms = now - idle->integer * 1000;
      e.hits = reply_number(hits.get());
      if (bytes->type == REDIS_REPLY_STRING) e.bytes = reply_number(bytes.get());
      else unsized.push_back(out.size());
      out.push_back(e);
    }
    for (size_t i : unsized) {
      std::string name = chunk_name(out[i].key);
      redisAppendCommand(ctx_, "STRLEN %b", name.data(), name.size());
    }
    for (size_t i : unsized) {
      Reply r = next_reply();
      if (!r) return ctx_->errstr;
      out[i].bytes = reply_number(r.get());
    }
    return {};
  }

  const RedisUrl url_;
  const std::string label_;
  const StoreWarn warn_;
  std::mutex mu_;  // the connection and the fields below it
  redisContext* ctx_ = nullptr;
  size_t discard_ = 0;  // replies in flight that nobody reads (hit counts)
  bool failed_ = false;  // in an outage (warned)
  std::chrono::steady_clock::time_point last_failure_;
  std::string pending_warning_;
  std::atomic<uint64_t> hits_{0}, misses_{0}, bytes_read_{0}, bytes_written_{0}, errors_{0};
};

}  // namespace

std::unique_ptr<StoreTier> redis_tier(const std::string& url, StoreWarn warn) {
  RedisUrl parsed = parse_redis_url(url);
  ignore_sigpipe();
  return std::make_unique<RedisTier>(std::move(parsed), std::move(warn));
}

}  // namespace kvstash
