// `kvstash serve` over HTTP on loopback: the OpenAI endpoints, exactness against the CLI, streaming,
// prefix reuse, named states, limits and errors, authentication, disconnects and SIGTERM.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <future>

#include "server_process.h"

namespace kvstash::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string temp_dir(const std::string& name) {
  const std::string d = temp_path(name + "_" + std::to_string(getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// One server for the tests that do not stop it.
ServerProcess& shared_server() {
  static ServerProcess s({"-c", "1024", "--parallel", "4", "--queue", "8", "--state-dir", temp_dir("srv_states"),
                          "--prompt-cache", temp_dir("srv_cache"), "--max-body", "64K"});
  return s;
}

const std::string& prose(size_t bytes) {
  static std::string text = corpus_text();
  static std::map<size_t, std::string> cut;
  auto [it, fresh] = cut.try_emplace(bytes);
  if (fresh) it->second = text.substr(0, bytes);
  return it->second;
}

json completion(const json& body, const std::string& path = "/v1/completions") {
  httplib::Client c = shared_server().client();
  const HttpResult r = post(c, path, body);
  EXPECT_EQ(r.status, 200) << r.body;
  return r.status == 200 ? r.json() : json{};
}

TEST(ServerApi, GreedyCompletionEqualsTheCli) {
  const std::string prompt = "The capital of France is";
  const json r = completion({{"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}});
  const json cli = cli_json("run -p '" + prompt + "' -n 12 --temp 0 -c 1024 --json");
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["choices"][0]["text"], cli["text"]);
  EXPECT_EQ(r["usage"]["prompt_tokens"], cli["prompt_tokens"]);
  EXPECT_EQ(r["usage"]["completion_tokens"], cli["tokens"].size());
  EXPECT_TRUE(r["usage"]["prompt_tokens_details"].contains("cached_tokens"));
}

TEST(ServerApi, ChatStreamEqualsChatWhole) {
  const json msgs = json::array({{{"role", "system"}, {"content", "You are brief."}},
                                 {{"role", "user"}, {"content", "Name three colours."}}});
  const json whole = completion({{"messages", msgs}, {"max_tokens", 24}, {"temperature", 0}}, "/v1/chat/completions");
  EXPECT_EQ(whole["object"], "chat.completion");
  EXPECT_EQ(whole["choices"][0]["message"]["role"], "assistant");
  httplib::Client c = shared_server().client();
  const HttpResult s = post(c, "/v1/chat/completions",
                            json{{"messages", msgs}, {"max_tokens", 24}, {"temperature", 0}, {"stream", true},
                                 {"stream_options", {{"include_usage", true}}}});
  ASSERT_EQ(s.status, 200) << s.body;
  const std::vector<std::string> events = sse_data(s.body);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text, finish;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const json e = json::parse(events[i]);
    if (e["choices"].empty()) {  // the usage chunk
      EXPECT_EQ(e["usage"]["completion_tokens"], whole["usage"]["completion_tokens"]);
      continue;
    }
    EXPECT_EQ(e["object"], "chat.completion.chunk");
    const json& d = e["choices"][0]["delta"];
    if (d.contains("content") && d["content"].is_string()) text += d["content"].get<std::string>();
    if (!e["choices"][0]["finish_reason"].is_null()) finish = e["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(json::parse(events[0])["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(text, whole["choices"][0]["message"]["content"]);
  EXPECT_EQ(finish, whole["choices"][0]["finish_reason"]);
}

TEST(ServerApi, RepeatedPrefixIsReusedAndExact) {
  const std::string prompt = prose(3000);
  const json a = completion({{"prompt", prompt}, {"max_tokens", 8}, {"temperature", 0}});
  const json b = completion({{"prompt", prompt}, {"max_tokens", 8}, {"temperature", 0}});
  EXPECT_EQ(a["choices"][0]["text"], b["choices"][0]["text"]);
  EXPECT_EQ(b["usage"]["prompt_tokens_details"]["cached_tokens"].get<int64_t>(),
            b["usage"]["prompt_tokens"].get<int64_t>() - 1);
  // The same prompt continued: its longest cached prefix is reused, the answer is the fresh one.
  const json c = completion({{"prompt", prompt + " And"}, {"max_tokens", 8}, {"temperature", 0}});
  EXPECT_GT(c["usage"]["prompt_tokens_details"]["cached_tokens"].get<int64_t>(), 500);
  const std::string file = temp_path("srv_prefix_" + std::to_string(getpid()) + ".txt");
  write_file(file, prompt + " And");
  const json fresh = cli_json("run -f " + file + " -n 8 --temp 0 -c 1024 --json");
  EXPECT_EQ(c["choices"][0]["text"], fresh["text"]);
}

TEST(ServerApi, SeededSamplingAndLogprobs) {
  const json body = {{"prompt", "Once upon a time"}, {"max_tokens", 16}, {"temperature", 0.9}, {"seed", 7},
                     {"logprobs", 3}, {"n", 2}};
  const json a = completion(body), b = completion(body);
  ASSERT_EQ(a["choices"].size(), 2u);
  EXPECT_EQ(a["choices"], b["choices"]);
  const json& lp = a["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), lp["token_logprobs"].size());
  ASSERT_EQ(lp["top_logprobs"][0].size(), 3u);
  for (const auto& v : lp["token_logprobs"]) EXPECT_LE(v.get<double>(), 0.0);
}

TEST(ServerApi, StopStringsCutTheText) {
  const json whole = completion({{"prompt", "1, 2, 3, 4,"}, {"max_tokens", 24}, {"temperature", 0}});
  const std::string text = whole["choices"][0]["text"];
  ASSERT_GE(text.size(), 6u);
  const std::string stop = text.substr(3, 2);
  const json cut = completion({{"prompt", "1, 2, 3, 4,"}, {"max_tokens", 24}, {"temperature", 0}, {"stop", stop}});
  EXPECT_EQ(cut["choices"][0]["text"], text.substr(0, text.find(stop)));
  EXPECT_EQ(cut["choices"][0]["finish_reason"], "stop");
}

TEST(ServerApi, ModelsHealthMetrics) {
  httplib::Client c = shared_server().client();
  const HttpResult m = get(c, "/v1/models");
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(m.json()["data"][0]["id"], "SmolLM2-135M-Instruct.Q4_1");
  EXPECT_EQ(get(c, "/health").status, 200);
  completion({{"prompt", "Hello"}, {"max_tokens", 2}});
  const HttpResult metrics = get(c, "/metrics");
  ASSERT_EQ(metrics.status, 200);
  for (const char* name : {"kvstash_requests_total", "kvstash_time_to_first_token_seconds_bucket",
                           "kvstash_kv_blocks_total", "kvstash_requests_active", "kvstash_prompt_cache_hit_ratio",
                           "kvstash_store_bytes"})
    EXPECT_NE(metrics.body.find(name), std::string::npos) << name;
}

TEST(ServerApi, BadRequestsGetOpenAiErrors) {
  httplib::Client c = shared_server().client();
  auto expect = [&](const std::string& body, int status, const std::string& words) {
    const HttpResult r = post(c, "/v1/completions", body);
    EXPECT_EQ(r.status, status) << body << " -> " << r.body;
    if (r.status == 0) return;
    const json e = r.json();
    EXPECT_NE(e["error"]["message"].get<std::string>().find(words), std::string::npos) << r.body;
  };
  expect("{not json", 400, "");
  expect(R"({"prompt": 5})", 400, "prompt");
  expect(R"({"prompt": "x", "max_tokens": -1})", 400, "max_tokens");
  expect(R"({"prompt": "x", "max_tokens": 100000000})", 400, "max_tokens");
  expect(R"({"prompt": "x", "temperature": "hot"})", 400, "temperature");
  expect(R"({"prompt": "x", "n": 0})", 400, "n");
  expect(R"({"prompt": ")" + std::string(70000, 'a') + R"("})", 413, "");
  expect(R"({"prompt": ")" + std::string(50000, 'a') + " " + R"("})", 400, "tokens");
  expect(R"({"prompt": "x", "state": "../etc/passwd"})", 400, "state");
  expect(R"({"prompt": "x", "state": "nothing-here"})", 404, "nothing-here");
  EXPECT_EQ(get(c, "/v1/nothing").status, 404);
  // The server still answers exactly afterwards.
  EXPECT_EQ(completion({{"prompt", "The capital of France is"}, {"max_tokens", 12}, {"temperature", 0}})["choices"][0]["text"],
            cli_json("run -p 'The capital of France is' -n 12 --temp 0 -c 1024 --json")["text"]);
}

TEST(ServerApi, NamedStatesSaveListContinueDelete) {
  httplib::Client c = shared_server().client();
  const std::string book = prose(1500), more = " And the evening";
  HttpResult r = post(c, "/v1/states/genesis", json{{"prompt", book}});
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_GT(r.json()["tokens"].get<int>(), 200);
  r = get(c, "/v1/states");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["data"][0]["name"], "genesis");
  const json from_state = completion({{"prompt", more}, {"state", "genesis"}, {"max_tokens", 10}, {"temperature", 0}});
  const json whole = completion({{"prompt", book + more}, {"max_tokens", 10}, {"temperature", 0}});
  EXPECT_EQ(from_state["choices"][0]["text"], whole["choices"][0]["text"]);
  EXPECT_EQ(from_state["usage"]["prompt_tokens"], whole["usage"]["prompt_tokens"]);
  EXPECT_GT(from_state["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 200);
  for (const char* bad : {"..", ".hidden", "x..y"})
    EXPECT_EQ(post(c, std::string("/v1/states/") + bad, json{{"prompt", "x"}}).status, 400) << bad;
  for (const char* bad : {"a%2Fb", "..%2F..%2Fescaped"})  // decoded to a path with '/': no such route
    EXPECT_EQ(post(c, std::string("/v1/states/") + bad, json{{"prompt", "x"}}).status, 404) << bad;
  EXPECT_FALSE(fs::exists(temp_path("escaped.kvs")));
  auto d = c.Delete("/v1/states/genesis");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, 200);
  EXPECT_EQ(c.Delete("/v1/states/genesis")->status, 404);
  const HttpResult gone = post(c, "/v1/completions", json{{"prompt", "x"}, {"state", "genesis"}});
  EXPECT_EQ(gone.status, 404) << gone.body;
}

TEST(ServerApi, StateFilesThatAreBadOrLeadOutsideChangeNothing) {
  const std::string dir = temp_dir("srv_bad_states");
  ServerProcess s({"-c", "512", "--parallel", "2", "--state-dir", dir});
  httplib::Client c = s.client();
  ASSERT_EQ(post(c, "/v1/states/good", json{{"prompt", prose(800)}}).status, 201);
  const std::string good = read_file(dir + "/good.kvs");
  // Outside the directory, reached by a symlink: never followed.
  const std::string outside = temp_path("srv_outside_" + std::to_string(getpid()) + ".kvs");
  write_file(outside, good);
  fs::create_symlink(outside, dir + "/escape.kvs");
  EXPECT_EQ(post(c, "/v1/completions", json{{"prompt", " x"}, {"state", "escape"}}).status, 404);
  // Corrupt and truncated copies: a 4xx/5xx error, nothing else changes.
  std::string bad = good;
  bad[bad.size() / 2] ^= 0x55;
  write_file(dir + "/corrupt.kvs", bad);
  write_file(dir + "/short.kvs", good.substr(0, good.size() / 3));
  const json want = post(c, "/v1/completions", json{{"prompt", " And"}, {"state", "good"}, {"max_tokens", 8}, {"temperature", 0}}).json();
  for (const char* name : {"corrupt", "short"}) {
    const HttpResult r = post(c, "/v1/completions", json{{"prompt", " And"}, {"state", name}, {"max_tokens", 8}});
    EXPECT_GE(r.status, 400) << name << ": " << r.body;
    EXPECT_TRUE(r.json().contains("error"));
  }
  const json again = post(c, "/v1/completions", json{{"prompt", " And"}, {"state", "good"}, {"max_tokens", 8}, {"temperature", 0}}).json();
  EXPECT_EQ(again["choices"], want["choices"]);
  EXPECT_EQ(read_file(dir + "/good.kvs"), good);
  EXPECT_EQ(read_file(outside), good);
  // Saving over the symlink replaces the link, never the file outside.
  ASSERT_EQ(post(c, "/v1/states/escape", json{{"prompt", "short"}}).status, 201);
  EXPECT_EQ(read_file(outside), good);
  EXPECT_EQ(s.terminate(), 0);
}

TEST(ServerApi, ApiKeyProtectsAllButHealth) {
  ServerProcess s({"-c", "256", "--parallel", "1", "--api-key", "sesame"});
  httplib::Client anon = s.client(), wrong = s.client("open"), right = s.client("sesame");
  EXPECT_EQ(get(anon, "/health").status, 200);
  EXPECT_EQ(get(anon, "/v1/models").status, 401);
  EXPECT_EQ(get(anon, "/metrics").status, 401);
  EXPECT_EQ(post(wrong, "/v1/completions", json{{"prompt", "x"}, {"max_tokens", 1}}).status, 401);
  EXPECT_EQ(post(right, "/v1/completions", json{{"prompt", "x"}, {"max_tokens", 1}}).status, 200);
  EXPECT_EQ(get(right, "/v1/models").status, 200);
}

TEST(ServerApi, FullQueueAnswers503WithRetryAfter) {
  ServerProcess s({"-c", "512", "--parallel", "1", "--queue", "1"});
  std::vector<std::future<HttpResult>> f;
  for (int i = 0; i < 6; ++i)
    f.push_back(std::async(std::launch::async, [&s, i] {
      httplib::Client c = s.client();
      return post(c, "/v1/completions", json{{"prompt", "Count: " + std::to_string(i)}, {"max_tokens", 64}, {"temperature", 0}});
    }));
  int ok = 0, busy = 0;
  for (auto& x : f) {
    const HttpResult r = x.get();
    if (r.status == 200) ++ok;
    if (r.status == 503) {
      ++busy;
      EXPECT_EQ(r.retry_after, "1");
    }
  }
  EXPECT_GE(ok, 2);
  EXPECT_GE(busy, 1);
  EXPECT_EQ(ok + busy, 6);
}

TEST(ServerApi, DisconnectedStreamFreesItsSequence) {
  ServerProcess s({"-c", "2048", "--parallel", "2"});
  {
    httplib::Client c = s.client();
    int chunks = 0;
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.set_header("Content-Type", "application/json");
    // Greedy prose: no end-of-text token for hundreds of tokens (a random seed could end it early).
    req.body = json{{"prompt", corpus_text().substr(0, 300)}, {"max_tokens", 1500}, {"temperature", 0}, {"stream", true}}
                   .dump();
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 5; };  // then go away
    httplib::Response res;
    httplib::Error err;
    c.send(req, res, err);
    EXPECT_GE(chunks, 5);
  }
  httplib::Client m = s.client();
  bool idle = false;
  for (int i = 0; i < 100 && !idle; ++i) {
    idle = get(m, "/metrics").body.find("\nkvstash_requests_active 0\n") != std::string::npos;
    if (!idle) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(idle) << get(m, "/metrics").body;
}

TEST(ServerApi, SigtermDrainsRequestsInFlight) {
  ServerProcess s({"-c", "512", "--parallel", "2"});
  auto running = std::async(std::launch::async, [&s] {
    httplib::Client c = s.client();
    return post(c, "/v1/completions",
                json{{"prompt", "Once"}, {"max_tokens", 200}, {"temperature", 0}, {"stream", true}});
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_EQ(s.terminate(), 0) << s.log();
  const HttpResult r = running.get();
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(sse_data(r.body).back(), "[DONE]");
  EXPECT_NE(s.log().find("stopped"), std::string::npos);
}

TEST(ServerApi, BadFlagsFailAtStart) {
  EXPECT_EQ(cli_error("serve --parallel 0").exit_code, 2);
  EXPECT_EQ(cli_error("serve --max-body 12Q").exit_code, 2);
}

}  // namespace
}  // namespace kvstash::testing
