// Two machines sharing a prefix store in Redis: network namespaces A and B, each linked to a
// router namespace R running redis-server (A <-> R on 10.201.1.0/24, B <-> R on 10.201.2.0/24,
// no forwarding, so A and B cannot reach each other). What A's run stores, B's run loads, exactly.
// Needs root (ip netns); skipped, with the reason, where namespaces cannot be made.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <set>
#include <thread>

#include "store_test_util.h"

namespace kvstash {
namespace {

using namespace kvstash::testing;

constexpr int kRedisPort = 6379;  // R's own network: nothing else listens there

// The three namespaces, their links and R's redis-server; all removed at the end, whatever happened.
class NetnsLab {
 public:
  NetnsLab() {
    const std::string id = "kvs" + std::to_string(::getpid());
    r_ = id + "r", a_ = id + "a", b_ = id + "b";
  }
  ~NetnsLab() {
    stop_redis();
    for (const std::string* ns : {&a_, &b_, &r_})
      if (made_.count(*ns)) run_command("ip netns del " + *ns);  // takes its ends of the links along
  }
  NetnsLab(const NetnsLab&) = delete;
  NetnsLab& operator=(const NetnsLab&) = delete;

  // Creates everything; false (with why()) where namespaces cannot be made (not root), and
  // failures after that are test failures.
  bool create() {
    for (const std::string* ns : {&r_, &a_, &b_}) {
      const CommandResult c = run_command("ip netns add " + *ns);
      if (c.exit_code != 0) {
        why_ = "cannot create a network namespace (needs root or CAP_SYS_ADMIN): " + c.out;
        return false;
      }
      made_.insert(*ns);
      sh("ip -n " + *ns + " link set lo up");
    }
    link(a_, "1");
    link(b_, "2");
    sh("ip netns exec " + r_ + " sysctl -qw net.ipv4.ip_forward=0");
    return true;
  }
  const std::string& why() const { return why_; }

  // redis-server in R, as a child of this process; waits until A can PING it.
  void start_redis() {
    redis_pid_ = ::fork();
    ASSERT_GE(redis_pid_, 0);
    if (redis_pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::execlp("ip", "ip", "netns", "exec", r_.c_str(), "redis-server", "--bind", "0.0.0.0", "--port",
               std::to_string(kRedisPort).c_str(), "--save", "", "--appendonly", "no", "--protected-mode", "no",
               "--daemonize", "no", "--dir", "/tmp", "--logfile", "/dev/null", (char*)nullptr);
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (ping(a_, "10.201.1.1") != "PONG") {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "redis-server in " << r_ << " did not answer";
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  void stop_redis() {
    if (redis_pid_ <= 0) return;
    ::kill(redis_pid_, SIGKILL);  // ip netns exec execs redis-server: the same process
    ::waitpid(redis_pid_, nullptr, 0);
    redis_pid_ = -1;
  }

  // redis-cli PING from namespace ns to addr: "PONG", or what went wrong.
  std::string ping(const std::string& ns, const std::string& addr) const {
    CommandResult c = run_command("ip netns exec " + ns + " timeout 3 redis-cli -h " + addr + " -p " +
                                  std::to_string(kRedisPort) + " PING");
    while (!c.out.empty() && std::isspace(uint8_t(c.out.back()))) c.out.pop_back();
    return c.out;
  }
  // Whether ns has a route to addr (no route: no packet can leave for it).
  bool routes_to(const std::string& ns, const std::string& addr) const {
    return run_command("ip -n " + ns + " route get " + addr).exit_code == 0;
  }

  const std::string& a() const { return a_; }
  const std::string& b() const { return b_; }
  std::string exec(const std::string& ns) const { return "ip netns exec " + ns; }
  static std::string url(const std::string& addr) { return "redis://" + addr + ":" + std::to_string(kRedisPort); }

 private:
  // A veth pair between ns (10.201.<net>.2) and R (10.201.<net>.1), made inside the namespaces.
  void link(const std::string& ns, const std::string& net) {
    const std::string mine = ns + "0", routers = ns + "1";  // at most 15 characters: "kvs" + 7-digit pid + 2
    sh("ip -n " + ns + " link add " + mine + " type veth peer name " + routers + " netns " + r_);
    sh("ip -n " + ns + " addr add 10.201." + net + ".2/24 dev " + mine);
    sh("ip -n " + r_ + " addr add 10.201." + net + ".1/24 dev " + routers);
    sh("ip -n " + ns + " link set " + mine + " up");
    sh("ip -n " + r_ + " link set " + routers + " up");
  }
  static void sh(const std::string& cmd) {
    const CommandResult c = run_command(cmd);
    EXPECT_EQ(c.exit_code, 0) << cmd << "\n" << c.out;
  }

  std::string r_, a_, b_, why_;
  std::set<std::string> made_;
  pid_t redis_pid_ = -1;
};

class NetnsStore : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!lab_.create()) GTEST_SKIP() << lab_.why();
    ASSERT_FALSE(HasFailure()) << "the namespaces' links could not be made";
    lab_.start_redis();
  }
  NetnsLab lab_;
};

// The plumbing alone (no kvstash): each side reaches R's address on its own link, nothing else.
TEST_F(NetnsStore, EachMachineReachesRedisOnlyThroughItsOwnLink) {
  EXPECT_EQ(lab_.ping(lab_.a(), "10.201.1.1"), "PONG");
  EXPECT_EQ(lab_.ping(lab_.b(), "10.201.2.1"), "PONG");
  EXPECT_NE(lab_.ping(lab_.a(), "10.201.2.1"), "PONG") << "A reaches R's address on B's link";
  EXPECT_NE(lab_.ping(lab_.b(), "10.201.1.1"), "PONG") << "B reaches R's address on A's link";
  EXPECT_FALSE(lab_.routes_to(lab_.a(), "10.201.2.2")) << "A has a route to B";
  EXPECT_FALSE(lab_.routes_to(lab_.b(), "10.201.1.2")) << "B has a route to A";
}

// Machine A computes and stores; machine B, with the same prompt, loads A's chunks from Redis.
TEST_F(NetnsStore, SecondMachineLoadsTheFirstMachinesChunksFromRedis) {
  const CliRun& plain = uncached_run(prompt_file());
  const CliRun first = cached_run(prompt_file(), "--redis " + NetnsLab::url("10.201.1.1"), kGreedy, kChunk,
                                  lab_.exec(lab_.a()));
  expect_clean_exact(first, plain);
  EXPECT_EQ(first.cached_tokens(), 0);
  const CliRun second = cached_run(prompt_file(), "--redis " + NetnsLab::url("10.201.2.1"), kGreedy, kChunk,
                                   lab_.exec(lab_.b()));
  expect_clean_exact(second, plain);
  EXPECT_EQ(second.cached_tokens(), full_hit_tokens(plain.json["prompt_tokens"]));
  EXPECT_GT(second.bytes_read("redis"), 0u);
}

}  // namespace
}  // namespace kvstash
