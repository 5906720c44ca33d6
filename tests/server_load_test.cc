// `kvstash serve` under load and faults (bounded in count and time): answers do not depend on what
// runs beside them, and Redis dying mid-run fails no request.
#include <gtest/gtest.h>

#include <atomic>
#include <future>

#include "server_process.h"

namespace kvstash::testing {
namespace {

using nlohmann::json;

// The answer's text and token log-probabilities (bitwise: JSON prints doubles exactly).
std::string answer(const HttpResult& r) {
  if (r.status != 200) return "HTTP " + std::to_string(r.status) + ": " + r.body;
  const json j = r.json();
  const json& c = j["choices"][0];
  return (c.contains("message") ? c["message"]["content"] : c["text"]).dump() + c["logprobs"].dump();
}

json chat_request(const std::string& system, int i, int max_tokens) {
  return {{"messages", json::array({{{"role", "system"}, {"content", system}},
                                    {{"role", "user"}, {"content", "Question " + std::to_string(i) + ": what follows?"}}})},
          {"max_tokens", max_tokens},
          {"temperature", 0.8},
          {"seed", 1000 + i},
          {"logprobs", true},
          {"top_logprobs", 2}};
}

TEST(ServerLoad, SameBitsAloneAndAmongSevenOthers) {
  ServerProcess s({"-c", "1024", "--parallel", "8"});
  httplib::Client c = s.client();
  const json probe = {{"prompt", corpus_text().substr(0, 600)}, {"max_tokens", 24}, {"temperature", 0.9},
                      {"seed", 42}, {"logprobs", 2}};
  const std::string alone = answer(post(c, "/v1/completions", probe));
  std::vector<std::future<HttpResult>> others;
  for (int i = 0; i < 7; ++i)  // other lengths and contents, prefilling and decoding beside the probe
    others.push_back(std::async(std::launch::async, [&s, i] {
      httplib::Client o = s.client();
      return post(o, "/v1/completions",
                  json{{"prompt", corpus_text().substr(size_t(i) * 700, 100 + size_t(i) * 150)},
                       {"max_tokens", 40}, {"temperature", 0.7}, {"seed", i}});
    }));
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  // Not from the pool: the probe's cached prefix would make it a different (shorter) pass.
  const std::string among = answer(post(c, "/v1/completions", probe));
  for (auto& f : others) EXPECT_EQ(f.get().status, 200);
  EXPECT_EQ(among, alone);
}

TEST(ServerLoad, SixteenClientsFiftyRequestsEachSameAsAlone) {
  constexpr int kClients = 16, kRequests = 50, kDistinct = 50;
  ServerProcess s({"-c", "1280", "--parallel", "16", "--queue", "64"});
  const std::string system = corpus_text().substr(0, 4400);  // about 1,000 tokens
  std::vector<std::string> want(kDistinct);
  {
    httplib::Client c = s.client();
    const HttpResult first = post(c, "/v1/chat/completions", chat_request(system, 0, 8));
    ASSERT_EQ(first.status, 200) << first.body;
    EXPECT_GT(first.json()["usage"]["prompt_tokens"].get<int>(), 900);
    for (int i = 0; i < kDistinct; ++i) want[size_t(i)] = answer(post(c, "/v1/chat/completions", chat_request(system, i, 8)));
  }
  std::atomic<int> failed{0}, differing{0}, cached{0};
  std::vector<std::thread> clients;
  for (int k = 0; k < kClients; ++k)
    clients.emplace_back([&, k] {
      httplib::Client c = s.client();
      for (int j = 0; j < kRequests; ++j) {
        const int i = (k * 7 + j) % kDistinct;
        const HttpResult r = post(c, "/v1/chat/completions", chat_request(system, i, 8));
        if (r.status != 200) {
          ++failed;
          continue;
        }
        if (answer(r) != want[size_t(i)]) ++differing;
        if (r.json()["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>() > 900) ++cached;
      }
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(differing, 0);
  EXPECT_GT(cached, kClients * kRequests / 2);  // the system prompt is read once, then forked
}

TEST(ServerLoad, RedisKilledMidRunFailsNoRequest) {
  RedisServer redis;
  // A small pool: finished prefixes leave it quickly, so requests reach the store.
  ServerProcess s({"-c", "1024", "--parallel", "4", "--kv-pool", "4352", "--redis", redis.url(),
                   "--cache-chunk-tokens", "64"});
  constexpr int kDistinct = 12;
  auto request = [](int i) {
    return json{{"prompt", corpus_text().substr(size_t(i % 4) * 900, 1200) + " Question " + std::to_string(i)},
                {"max_tokens", 6}, {"temperature", 0}};
  };
  std::vector<std::string> want(kDistinct);
  {
    httplib::Client c = s.client();
    for (int i = 0; i < kDistinct; ++i) want[size_t(i)] = answer(post(c, "/v1/completions", request(i)));
  }
  std::atomic<int> done{0}, failed{0}, differing{0};
  std::vector<std::thread> clients;
  for (int k = 0; k < 6; ++k)
    clients.emplace_back([&, k] {
      httplib::Client c = s.client();
      for (int j = 0; j < 20; ++j) {
        const int i = (k * 5 + j) % kDistinct;
        const HttpResult r = post(c, "/v1/completions", request(i));
        if (r.status != 200) ++failed;
        else if (answer(r) != want[size_t(i)]) ++differing;
        ++done;
      }
    });
  while (done < 30) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  redis.kill();
  while (done < 80) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  redis.restart();
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(differing, 0);
  EXPECT_EQ(s.terminate(), 0);
}

// The official `openai` Python package against the server, streaming and not (tests/server_openai.py).
TEST(ServerLoad, OpenAiPythonClient) {
  const char* py = std::getenv("KVSTASH_TEST_PYTHON");
  ASSERT_TRUE(py && *py) << "KVSTASH_TEST_PYTHON must name a python with the openai package (scripts/test.sh)";
  ServerProcess s({"-c", "1024", "--parallel", "2", "--api-key", "test-key"});
  const CommandResult r = run_command(std::string(py) + " " + KVSTASH_SOURCE_DIR "/tests/server_openai.py http://127.0.0.1:" +
                                      std::to_string(s.port()) + "/v1 test-key");
  EXPECT_EQ(r.exit_code, 0) << r.out;
}

}  // namespace
}  // namespace kvstash::testing
