// The Redis tier against a real redis-server (tests/redis_server.h): nothing mocked.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "kvstash/error.h"
#include "kvstash/store.h"
#include "redis_server.h"
#include "store/redis_url.h"

namespace kvstash {
namespace {

using testing::RedisServer;
using Clock = std::chrono::steady_clock;

StoreKey key_of(int i) { return seed_key("redis-test-" + std::to_string(i)); }

std::vector<uint8_t> value_of(int i, size_t n = 100) {
  std::vector<uint8_t> v(n);
  for (size_t j = 0; j < n; ++j) v[j] = uint8_t((j * 31 + size_t(i)) % 251);  // zero bytes included
  return v;
}

// Collects warnings (thread-safe).
struct Warnings {
  std::mutex mu;
  std::vector<std::string> lines;
  StoreWarn fn() {
    return [this](const std::string& s) {
      std::lock_guard<std::mutex> l(mu);
      lines.push_back(s);
    };
  }
  size_t count() {
    std::lock_guard<std::mutex> l(mu);
    return lines.size();
  }
};

// Every value get_many delivers, by index (nullopt: absent).
std::vector<std::optional<std::vector<uint8_t>>> get_all(StoreTier& t, const std::vector<StoreKey>& keys) {
  std::vector<std::optional<std::vector<uint8_t>>> out(keys.size());
  std::vector<bool> seen(keys.size(), false);
  t.get_many(keys, [&](size_t i, std::optional<std::vector<uint8_t>> v) {
    EXPECT_FALSE(seen[i]);
    seen[i] = true;
    out[i] = std::move(v);
    return true;
  });
  return out;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

TEST(RedisUrl, WellFormedUrlsParseToTheirParts) {
  struct Case {
    const char* url;
    std::string host, user, password;
    int port, db, timeout_ms;
  };
  const Case cases[] = {
      {"redis://localhost", "localhost", "", "", 6379, 0, 1000},
      {"redis://10.0.0.5:6380/2?timeout_ms=250", "10.0.0.5", "", "", 6380, 2, 250},
      {"redis://:secret@h/", "h", "", "secret", 6379, 0, 1000},
      {"redis://alice:s%40c%3Aret@h:1/15", "h", "alice", "s@c:ret", 1, 15, 1000},
      {"redis://[::1]:7000/1", "::1", "", "", 7000, 1, 1000},
      {"redis://h?timeout_ms=5&", "h", "", "", 6379, 0, 5},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.url);
    RedisUrl r = parse_redis_url(c.url);
    EXPECT_EQ(r.host, c.host);
    EXPECT_EQ(r.user, c.user);
    EXPECT_EQ(r.password, c.password);
    EXPECT_EQ(r.port, c.port);
    EXPECT_EQ(r.db, c.db);
    EXPECT_EQ(r.timeout_ms, c.timeout_ms);
  }
  EXPECT_EQ(redis_label(parse_redis_url("redis://[::1]:7000/1")), "[::1]:7000/1");
}

TEST(RedisUrl, MalformedUrlsAreRejected) {
  const char* bad[] = {"http://h",          "redis:/h",           "rediss://h",         "redis://",
                       "redis://:6379",     "redis://h:0",        "redis://h:65536",    "redis://h:abc",
                       "redis://h:",        "redis://h:+1",       "redis://h/x",        "redis://h/-1",
                       "redis://h/1/2",     "redis://h?foo=1",    "redis://h?timeout_ms=0",
                       "redis://h?timeout_ms=abc", "redis://h?timeout_ms", "redis://secret@h",
                       "redis://:@h",       "redis://:p%4@h",     "redis://[::1",       "redis://h#x"};
  for (const char* url : bad) {
    SCOPED_TRACE(url);
    try {
      parse_redis_url(url);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find(std::string("redis URL '") + url + "': "), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(redis_tier("redis://h:99999", nullptr), Error);
}

TEST(RedisTier, NameIsHostPortDb) {
  EXPECT_EQ(redis_tier("redis://127.0.0.1:6390/3", nullptr)->name(), "redis 127.0.0.1:6390/3");
  EXPECT_EQ(redis_tier("redis://127.0.0.1:6390/3", nullptr)->stats().tier, "redis 127.0.0.1:6390/3");
}

TEST(RedisTier, BinaryValuesRoundTrip) {
  RedisServer server;
  Warnings w;
  auto t = redis_tier(server.url(), w.fn());
  std::vector<StoreKey> keys = {key_of(0), key_of(1), key_of(2), key_of(3)};
  std::vector<uint8_t> zeros(1000, 0), big = value_of(7, 6 << 20), empty;
  t->put(keys[0], zeros);
  t->put(keys[1], big);
  t->put(keys[3], empty);
  EXPECT_EQ(t->contains(keys), (std::vector<bool>{true, true, false, true}));
  auto got = get_all(*t, keys);
  ASSERT_TRUE(got[0] && got[1] && got[3]);
  EXPECT_EQ(*got[0], zeros);
  EXPECT_EQ(*got[1], big);
  EXPECT_FALSE(got[2]);
  EXPECT_TRUE(got[3]->empty());
  TierStats s = t->stats();
  EXPECT_EQ(s.hits, 3u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.bytes_read, zeros.size() + big.size());
  EXPECT_EQ(s.bytes_written, zeros.size() + big.size());
  EXPECT_EQ(s.errors, 0u);
  EXPECT_EQ(w.count(), 0u);

  t->drop(keys[1]);
  t->drop(keys[2]);  // absent: no-op
  EXPECT_EQ(t->contains(keys), (std::vector<bool>{true, false, false, true}));
  EXPECT_TRUE(t->contains({}).empty());
}

TEST(RedisTier, PipelinedGetKeepsOrderAndSurvivesEarlyStop) {
  RedisServer server;
  auto t = redis_tier(server.url(), nullptr);
  std::vector<StoreKey> keys;
  for (int i = 0; i < 50; ++i) {  // several batches
    keys.push_back(key_of(i));
    if (i % 7 != 3) t->put(keys.back(), value_of(i, 10 + size_t(i)));
  }
  std::vector<size_t> order;
  t->get_many(keys, [&](size_t i, std::optional<std::vector<uint8_t>> v) {
    order.push_back(i);
    EXPECT_EQ(v.has_value(), i % 7 != 3) << i;
    if (v) {
      EXPECT_EQ(*v, value_of(int(i), 10 + i)) << i;
    }
    return true;
  });
  ASSERT_EQ(order.size(), keys.size());
  for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(order[i], i);

  // Stop in the middle of a batch: the rest of its replies must not leak into the next call.
  for (size_t stop : {0u, 5u, 20u}) {
    size_t calls = 0;
    t->get_many(keys, [&](size_t i, std::optional<std::vector<uint8_t>>) {
      ++calls;
      return i < stop;
    });
    EXPECT_EQ(calls, stop + 1);
    EXPECT_EQ(t->contains({keys[3], keys[4]}), (std::vector<bool>{false, true}));
    auto got = get_all(*t, {keys[10], keys[11]});
    EXPECT_FALSE(got[0]);
    ASSERT_TRUE(got[1]);
    EXPECT_EQ(*got[1], value_of(11, 21));
  }
}

TEST(RedisTier, OnValueMayCallBackIntoTheTier) {
  RedisServer server;
  auto t = redis_tier(server.url(), nullptr);
  std::vector<StoreKey> keys = {key_of(0), key_of(1), key_of(2)};
  for (int i = 0; i < 3; ++i) t->put(keys[size_t(i)], value_of(i));
  t->get_many(keys, [&](size_t i, std::optional<std::vector<uint8_t>>) {
    t->drop(keys[i]);  // as a store does with a corrupt entry
    return true;
  });
  EXPECT_EQ(t->contains(keys), (std::vector<bool>{false, false, false}));
}

TEST(RedisTier, PasswordIsSentAndWrongPasswordIsAWarnedMiss) {
  RedisServer server("s3cret");
  Warnings ok_w;
  auto ok = redis_tier(server.url(), ok_w.fn());
  ok->put(key_of(1), value_of(1));
  EXPECT_EQ(ok->contains({key_of(1)}), std::vector<bool>{true});
  EXPECT_EQ(ok_w.count(), 0u);
  // The default user by name (Redis 6 ACL form).
  auto named = redis_tier("redis://default:s3cret@127.0.0.1:" + std::to_string(server.port()), nullptr);
  EXPECT_EQ(named->contains({key_of(1)}), std::vector<bool>{true});

  for (std::string url : {"redis://:wrong@127.0.0.1:" + std::to_string(server.port()),
                          "redis://127.0.0.1:" + std::to_string(server.port())}) {
    SCOPED_TRACE(url);
    Warnings w;
    auto bad = redis_tier(url, w.fn());
    EXPECT_EQ(bad->contains({key_of(1)}), std::vector<bool>{false});
    EXPECT_FALSE(get_all(*bad, {key_of(1)})[0]);
    bad->put(key_of(2), value_of(2));
    ASSERT_EQ(w.count(), 1u);
    EXPECT_NE(w.lines[0].find("unreachable"), std::string::npos) << w.lines[0];
    EXPECT_GE(bad->stats().errors, 1u);
  }
  EXPECT_EQ(ok->contains({key_of(2)}), std::vector<bool>{false});
}

TEST(RedisTier, DatabasesAreIsolated) {
  RedisServer server;
  auto one = redis_tier(server.url(1), nullptr), two = redis_tier(server.url(2), nullptr);
  one->put(key_of(1), value_of(1));
  two->put(key_of(2), value_of(2));
  EXPECT_EQ(one->contains({key_of(1), key_of(2)}), (std::vector<bool>{true, false}));
  EXPECT_EQ(two->contains({key_of(1), key_of(2)}), (std::vector<bool>{false, true}));
  EXPECT_EQ(one->clear(), 1u);
  EXPECT_EQ(two->contains({key_of(2)}), std::vector<bool>{true});
}

TEST(RedisTier, UnreachableServerWarnsOnceAndMisses) {
  int port = testing::free_loopback_port();  // nothing listens there
  Warnings w;
  auto t = redis_tier("redis://127.0.0.1:" + std::to_string(port) + "?timeout_ms=300", w.fn());
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 3; ++i) {
      auto t0 = Clock::now();
      EXPECT_EQ(t->contains({key_of(1), key_of(2)}), (std::vector<bool>{false, false}));
      size_t calls = 0;
      t->get_many({key_of(1), key_of(2)}, [&](size_t, std::optional<std::vector<uint8_t>> v) {
        EXPECT_FALSE(v);
        ++calls;
        return true;
      });
      EXPECT_EQ(calls, 2u);
      t->put(key_of(1), value_of(1));
      t->drop(key_of(1));
      EXPECT_LT(seconds_since(t0), 1.0);
    }
    if (round == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // a retry is due
  }
  ASSERT_EQ(w.count(), 1u);
  EXPECT_NE(w.lines[0].find("redis 127.0.0.1:" + std::to_string(port) + "/0 unreachable ("), std::string::npos)
      << w.lines[0];
  EXPECT_NE(w.lines[0].find("computing without it"), std::string::npos);
  EXPECT_GE(t->stats().errors, 2u);
  try {
    t->list();
    ADD_FAILURE() << "list() of an unreachable server returned";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::IOError);
    EXPECT_NE(std::string(e.what()).find("redis 127.0.0.1:" + std::to_string(port) + ": "), std::string::npos);
  }
  EXPECT_THROW(t->clear(), Error);
  EXPECT_THROW(t->evict_to(0), Error);
}

TEST(RedisTier, SilentServerTimesOut) {
  // Accepts connections (the kernel does) but never answers.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(fd, 16), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  Warnings w;
  auto t = redis_tier("redis://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "?timeout_ms=200", w.fn());
  auto t0 = Clock::now();
  EXPECT_EQ(t->contains({key_of(1)}), std::vector<bool>{false});
  EXPECT_LT(seconds_since(t0), 1.0);
  EXPECT_GE(seconds_since(t0), 0.15);
  t0 = Clock::now();
  EXPECT_FALSE(get_all(*t, {key_of(1)})[0]);  // within the back-off: no wait at all
  EXPECT_LT(seconds_since(t0), 0.1);
  EXPECT_EQ(w.count(), 1u);
  close(fd);
}

TEST(RedisTier, KilledServerIsSurvivedAndReconnected) {
  RedisServer server;
  Warnings w;
  auto t = redis_tier(server.url(), w.fn());
  t->put(key_of(1), value_of(1));
  EXPECT_EQ(t->contains({key_of(1)}), std::vector<bool>{true});

  server.kill();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(t->contains({key_of(1)}), std::vector<bool>{false});
    EXPECT_FALSE(get_all(*t, {key_of(1)})[0]);
    t->put(key_of(2), value_of(2, 1 << 20));  // a write large enough to meet the closed socket
  }
  EXPECT_EQ(w.count(), 1u);
  EXPECT_GE(t->stats().errors, 1u);

  server.restart();  // same port, empty (no persistence)
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  t->put(key_of(3), value_of(3));
  EXPECT_EQ(t->contains({key_of(1), key_of(3)}), (std::vector<bool>{false, true}));
  auto got = get_all(*t, {key_of(3)});
  ASSERT_TRUE(got[0]);
  EXPECT_EQ(*got[0], value_of(3));
  EXPECT_EQ(w.count(), 1u);

  // A second outage warns again.
  server.kill();
  EXPECT_EQ(t->contains({key_of(3)}), std::vector<bool>{false});
  EXPECT_EQ(w.count(), 2u);
}

TEST(RedisTier, ConnectionClosedWhileIdleReconnectsQuietly) {
  RedisServer server;
  {  // the server drops clients idle for a second (as some deployments do)
    redisContext* c = redisConnect("127.0.0.1", server.port());
    ASSERT_TRUE(c && !c->err);
    freeReplyObject(redisCommand(c, "CONFIG SET timeout 1"));
    redisFree(c);
  }
  Warnings w;
  auto t = redis_tier(server.url(), w.fn());
  t->put(key_of(1), value_of(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(2600));
  EXPECT_EQ(t->contains({key_of(1)}), std::vector<bool>{true});  // reconnected at once, quietly
  EXPECT_EQ(w.count(), 0u);
  EXPECT_EQ(t->stats().errors, 0u);
}

TEST(RedisTier, AdminListEvictClearCountAndOrder) {
  RedisServer server;
  auto t = redis_tier(server.url(), nullptr);
  StoreKey a = key_of(1), b = key_of(2), c = key_of(3);
  t->put(a, value_of(1, 100));
  t->put(b, value_of(2, 200));
  t->put(c, value_of(3, 300));
  get_all(*t, {a, b, a, c, key_of(4)});  // hits: a 2, b 1, c 1
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // Redis keeps idle time in seconds
  get_all(*t, {a, c});                                            // b is now the least recently used

  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
  for (int pass = 0; pass < 2; ++pass) {  // listing must not refresh what it lists
    SCOPED_TRACE(pass);
    std::vector<StoreEntry> list = t->list();
    ASSERT_EQ(list.size(), 3u);
    std::map<std::string, StoreEntry> by;
    for (const StoreEntry& e : list) by[e.key.hex()] = e;
    const StoreEntry &ea = by[a.hex()], &eb = by[b.hex()], &ec = by[c.hex()];
    EXPECT_EQ(ea.bytes, 100u);
    EXPECT_EQ(eb.bytes, 200u);
    EXPECT_EQ(ec.bytes, 300u);
    EXPECT_EQ(ea.hits, 3u);
    EXPECT_EQ(eb.hits, 1u);
    EXPECT_EQ(ec.hits, 2u);
    EXPECT_GE(ea.last_used_ms, now - 1500);
    EXPECT_LE(ea.last_used_ms, now + 1500);
    EXPECT_LT(eb.last_used_ms, ea.last_used_ms);
    EXPECT_LT(eb.last_used_ms, ec.last_used_ms);
  }
  EXPECT_EQ(t->evict_to(600), 0u);
  EXPECT_EQ(t->evict_to(450), 1u);  // b goes: least recently used
  EXPECT_EQ(t->contains({a, b, c}), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(t->clear(), 2u);
  EXPECT_EQ(t->contains({a, c}), (std::vector<bool>{false, false}));
  EXPECT_TRUE(t->list().empty());
  // Hit counts went with the entries.
  t->put(a, value_of(1, 100));
  EXPECT_EQ(t->list().at(0).hits, 0u);
}

TEST(RedisTier, ConcurrentCallersShareTheConnection) {
  RedisServer server;
  auto t = redis_tier(server.url(), nullptr);
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int th = 0; th < 4; ++th)
    threads.emplace_back([&, th] {
      for (int i = 0; i < 50; ++i) {
        int id = th * 1000 + i;
        t->put(key_of(id), value_of(id, 50 + size_t(i)));
        auto got = get_all(*t, {key_of(id)});
        if (!got[0] || *got[0] != value_of(id, 50 + size_t(i))) bad++;
        if (t->contains({key_of(id)}) != std::vector<bool>{true}) bad++;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(t->stats().errors, 0u);
}

}  // namespace
}  // namespace kvstash
