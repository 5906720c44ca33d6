#include "server/openai_response.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

namespace kvstash::server {
namespace {

using json = nlohmann::json;

const ResponseMeta kMeta{"cmpl-1", 1700000000, "smol"};

CompletionRequest request(bool chat, int logprobs = -1) {
  CompletionRequest r;
  r.chat = chat;
  r.logprobs = logprobs;
  return r;
}

// The JSON object of one "data: ...\n\n" event.
json event_json(const std::string& ev) {
  EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
  EXPECT_GE(ev.size(), 8u);
  EXPECT_EQ(ev.substr(ev.size() - 2), "\n\n");
  const std::string body = ev.substr(6, ev.size() - 8);
  EXPECT_EQ(body.find('\n'), std::string::npos);  // one line: SSE would split it
  return json::parse(body);
}

TEST(ServerResponse, FinishReason) {
  EXPECT_EQ(finish_reason("stop"), "stop");
  EXPECT_EQ(finish_reason("eos"), "stop");
  EXPECT_EQ(finish_reason("length"), "length");
  EXPECT_EQ(finish_reason("context"), "length");
}

TEST(ServerResponse, TextCompletion) {
  const std::vector<ChoiceResult> choices = {{" world", "length", {}}, {"!", "stop", {}}};
  const json j = json::parse(completion_json(request(false), kMeta, choices, {5, 2, 3}));
  EXPECT_EQ(j["id"], "cmpl-1");
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["created"], 1700000000);
  EXPECT_EQ(j["model"], "smol");
  ASSERT_EQ(j["choices"].size(), 2u);
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_EQ(j["choices"][0]["text"], " world");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(j["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(j["choices"][1]["index"], 1);
  EXPECT_EQ(j["choices"][1]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(j["usage"]["completion_tokens"], 2);
  EXPECT_EQ(j["usage"]["total_tokens"], 7);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
}

TEST(ServerResponse, ChatCompletion) {
  const std::vector<ChoiceResult> choices = {{"Hi there", "stop", {}}};
  const json j = json::parse(completion_json(request(true), kMeta, choices, {10, 3, 0}));
  EXPECT_EQ(j["object"], "chat.completion");
  const json& c = j["choices"][0];
  EXPECT_EQ(c["index"], 0);
  EXPECT_EQ(c["message"]["role"], "assistant");
  EXPECT_EQ(c["message"]["content"], "Hi there");
  EXPECT_EQ(c["finish_reason"], "stop");
  EXPECT_TRUE(c["logprobs"].is_null());
  EXPECT_EQ(j["usage"]["total_tokens"], 13);
}

TEST(ServerResponse, CompletionLogprobs) {
  const std::vector<ChoiceResult> choices = {
      {"ab", "stop", {{"a", -0.5, {{"a", -0.5}, {"b", -1.5}}}, {"b", -std::numeric_limits<double>::infinity(), {}}}}};
  const json j = json::parse(completion_json(request(false, 2), kMeta, choices, {}));
  const json& lp = j["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"], json({"a", "b"}));
  EXPECT_EQ(lp["token_logprobs"][0], -0.5);
  EXPECT_EQ(lp["token_logprobs"][1], -9999.0);  // finite: JSON has no -inf
  EXPECT_EQ(lp["top_logprobs"][0]["b"], -1.5);
  EXPECT_TRUE(lp["top_logprobs"][1].is_object());
  EXPECT_EQ(lp["text_offset"], json({0, 1}));
}

TEST(ServerResponse, ChatLogprobs) {
  const std::vector<ChoiceResult> choices = {{"é", "length", {{"é", -0.25, {{"é", -0.25}, {"e", -2.0}}}}}};
  const json j = json::parse(completion_json(request(true, 1), kMeta, choices, {}));
  const json& content = j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 1u);
  EXPECT_EQ(content[0]["token"], "é");
  EXPECT_EQ(content[0]["logprob"], -0.25);
  EXPECT_EQ(content[0]["bytes"], json({0xC3, 0xA9}));
  ASSERT_EQ(content[0]["top_logprobs"].size(), 2u);
  EXPECT_EQ(content[0]["top_logprobs"][1]["token"], "e");
  EXPECT_EQ(content[0]["top_logprobs"][1]["bytes"], json({'e'}));
}

TEST(ServerResponse, InvalidUtf8) {
  const std::string half = "caf\xC3";  // a token piece ending mid-character
  const std::vector<ChoiceResult> choices = {{half, "length", {{half, -1.0, {{"\xFF", -2.0}}}}}};
  for (bool chat : {false, true}) {
    std::string out;
    ASSERT_NO_THROW(out = completion_json(request(chat, 1), kMeta, choices, {}));
    const json j = json::parse(out);
    const std::string text = chat ? j["choices"][0]["message"]["content"].get<std::string>()
                                  : j["choices"][0]["text"].get<std::string>();
    EXPECT_EQ(text, "caf\xEF\xBF\xBD");  // U+FFFD
    if (chat) {
      EXPECT_EQ(j["choices"][0]["logprobs"]["content"][0]["bytes"], json({'c', 'a', 'f', 0xC3}));
    }
    const TokenLogprob lp{half, -1.0, {}};
    std::string ev;
    ASSERT_NO_THROW(ev = stream_event(request(chat, 0), kMeta, 0, half, &lp, "", false));
    EXPECT_NO_THROW(event_json(ev));
  }
}

TEST(ServerResponse, TextStreamEvent) {
  const TokenLogprob lp{" hi", -0.1, {{" hi", -0.1}}};
  const json j = event_json(stream_event(request(false, 1), kMeta, 1, " hi", &lp, "", false));
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["id"], "cmpl-1");
  ASSERT_EQ(j["choices"].size(), 1u);
  EXPECT_EQ(j["choices"][0]["index"], 1);
  EXPECT_EQ(j["choices"][0]["text"], " hi");
  EXPECT_TRUE(j["choices"][0]["finish_reason"].is_null());
  EXPECT_EQ(j["choices"][0]["logprobs"]["tokens"], json({" hi"}));
  EXPECT_FALSE(j.contains("usage"));
  const json last = event_json(stream_event(request(false), kMeta, 0, "", nullptr, "stop", false));
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(last["choices"][0]["logprobs"].is_null());
}

TEST(ServerResponse, ChatStreamEvents) {
  const CompletionRequest req = request(true);
  const json first = event_json(stream_event(req, kMeta, 0, "", nullptr, "", true));
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"], json({{"role", "assistant"}, {"content", ""}}));
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(first["choices"][0]["logprobs"].is_null());
  const json mid = event_json(stream_event(req, kMeta, 0, "Hel", nullptr, "", false));
  EXPECT_EQ(mid["choices"][0]["delta"], json({{"content", "Hel"}}));
  const json last = event_json(stream_event(req, kMeta, 0, "", nullptr, "length", false));
  EXPECT_EQ(last["choices"][0]["delta"], json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");

  const TokenLogprob lp{"Hel", -0.3, {}};
  const json with_lp = event_json(stream_event(request(true, 0), kMeta, 2, "Hel", &lp, "", false));
  EXPECT_EQ(with_lp["choices"][0]["index"], 2);
  EXPECT_EQ(with_lp["choices"][0]["logprobs"]["content"][0]["token"], "Hel");
}

TEST(ServerResponse, UsageEvent) {
  CompletionRequest req = request(true);
  req.include_usage = true;
  const json chunk = event_json(stream_event(req, kMeta, 0, "x", nullptr, "", false));
  EXPECT_TRUE(chunk.contains("usage"));
  EXPECT_TRUE(chunk["usage"].is_null());
  const json j = event_json(stream_usage_event(req, kMeta, {4, 6, 2}));
  EXPECT_EQ(j["object"], "chat.completion.chunk");
  EXPECT_EQ(j["choices"], json::array());
  EXPECT_EQ(j["usage"]["total_tokens"], 10);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
  EXPECT_EQ(event_json(stream_usage_event(request(false), kMeta, {}))["object"], "text_completion");
  EXPECT_STREQ(kStreamDone, "data: [DONE]\n\n");
}

TEST(ServerResponse, ErrorAndModels) {
  const json e = json::parse(error_json(HttpError(400, "invalid_request_error", "n must be ...", "n")));
  EXPECT_EQ(e["error"]["message"], "n must be ...");
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  EXPECT_EQ(e["error"]["param"], "n");
  EXPECT_TRUE(e["error"]["code"].is_null());
  const json e2 = json::parse(error_json(HttpError(500, "server_error", "bad \xC3")));
  EXPECT_TRUE(e2["error"]["param"].is_null());

  const json m = json::parse(models_json("SmolLM2", 42));
  EXPECT_EQ(m["object"], "list");
  ASSERT_EQ(m["data"].size(), 1u);
  EXPECT_EQ(m["data"][0]["id"], "SmolLM2");
  EXPECT_EQ(m["data"][0]["object"], "model");
  EXPECT_EQ(m["data"][0]["created"], 42);
  EXPECT_EQ(m["data"][0]["owned_by"], "kvstash");
}

}  // namespace
}  // namespace kvstash::server
