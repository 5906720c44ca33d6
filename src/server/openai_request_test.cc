#include "server/openai_request.h"

#include <gtest/gtest.h>

#include <string>

namespace kvstash::server {
namespace {

const RequestLimits kLimits;

CompletionRequest completion(const std::string& body) { return parse_completion_request(body, false, kLimits); }
CompletionRequest chat(const std::string& body) { return parse_completion_request(body, true, kLimits); }

// The HttpError a parse throws; fails the test when it does not throw one.
HttpError error_of(const std::string& body, bool is_chat, const RequestLimits& limits = kLimits) {
  try {
    parse_completion_request(body, is_chat, limits);
  } catch (const HttpError& e) {
    return e;
  }
  ADD_FAILURE() << "no HttpError for " << body;
  return HttpError(0, "", "");
}

void expect_400(const std::string& body, bool is_chat, const std::string& words, const std::string& param = "") {
  const HttpError e = error_of(body, is_chat);
  EXPECT_EQ(e.status, 400) << body;
  EXPECT_EQ(e.type, "invalid_request_error") << body;
  EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << body << " -> " << e.what();
  if (!param.empty()) {
    EXPECT_EQ(e.param, param) << body;
  }
  EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
}

TEST(ServerRequest, CompletionDefaults) {
  const CompletionRequest r = completion(R"({"prompt": "Hello"})");
  EXPECT_FALSE(r.chat);
  EXPECT_EQ(r.prompt, "Hello");
  EXPECT_FALSE(r.has_prompt_ids);
  EXPECT_EQ(r.model, "");
  EXPECT_EQ(r.max_tokens, 16);
  EXPECT_EQ(r.temperature, 1.0);
  EXPECT_EQ(r.top_p, 1.0);
  EXPECT_FALSE(r.has_seed);
  EXPECT_TRUE(r.stop.empty());
  EXPECT_EQ(r.n, 1);
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.include_usage);
  EXPECT_EQ(r.logprobs, -1);
  EXPECT_EQ(r.state, "");
}

TEST(ServerRequest, ChatDefaults) {
  const CompletionRequest r = chat(R"({"model": "m", "messages": [{"role": "user", "content": "Hi"}]})");
  EXPECT_TRUE(r.chat);
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].role, "user");
  EXPECT_EQ(r.messages[0].content, "Hi");
  EXPECT_EQ(r.max_tokens, -1);
  EXPECT_EQ(r.logprobs, -1);
}

TEST(ServerRequest, PromptForms) {
  EXPECT_EQ(completion(R"({"prompt": ["one"]})").prompt, "one");
  EXPECT_EQ(completion(R"({"prompt": ""})").prompt, "");
  const CompletionRequest ids = completion(R"({"prompt": [1, 2, 3]})");
  EXPECT_TRUE(ids.has_prompt_ids);
  EXPECT_EQ(ids.prompt, "");
  EXPECT_EQ(ids.prompt_ids, (std::vector<Token>{1, 2, 3}));
  const CompletionRequest nested = completion(R"({"prompt": [[7, 0]]})");
  EXPECT_TRUE(nested.has_prompt_ids);
  EXPECT_EQ(nested.prompt_ids, (std::vector<Token>{7, 0}));

  expect_400(R"({"max_tokens": 3})", false, "prompt is required", "prompt");
  expect_400(R"({"prompt": null})", false, "prompt is required");
  expect_400(R"({"prompt": []})", false, "empty");
  expect_400(R"({"prompt": ["a", "b"]})", false, "batched prompts are not supported");
  expect_400(R"({"prompt": [1, -2]})", false, "prompt[1] must be an integer between 0 and 2147483647, got -2");
  expect_400(R"({"prompt": [1, 2147483648]})", false, "prompt[1]");
  expect_400(R"({"prompt": [1, "x"]})", false, "prompt[1]");
  expect_400(R"({"prompt": [1.5]})", false, "prompt[0]");
  expect_400(R"({"prompt": 5})", false, "prompt must be");
  expect_400(R"({"prompt": {"a": 1}})", false, "prompt must be");
}

TEST(ServerRequest, ChatContent) {
  const CompletionRequest r = chat(R"({"messages": [
      {"role": "developer", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}]},
      {"role": "assistant", "content": null},
      {"role": "system", "content": "", "name": "x"}]})");
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[0].content, "Be brief.");
  EXPECT_EQ(r.messages[1].content, "Hello, world");
  EXPECT_EQ(r.messages[2].role, "assistant");
  EXPECT_EQ(r.messages[2].content, "");

  expect_400(R"({"prompt": "x"})", true, "messages is required", "messages");
  expect_400(R"({"messages": []})", true, "messages must not be empty");
  expect_400(R"({"messages": "hi"})", true, "messages must be an array");
  expect_400(R"({"messages": ["hi"]})", true, "messages[0] must be an object");
  expect_400(R"({"messages": [{"content": "x"}]})", true, "messages[0].role is required");
  expect_400(R"({"messages": [{"role": "tool", "content": "x"}]})", true, "messages[0].role must be one of");
  expect_400(R"({"messages": [{"role": 3, "content": "x"}]})", true, "messages[0].role must be a string");
  expect_400(R"({"messages": [{"role": "user"}]})", true, "messages[0].content is required");
  expect_400(R"({"messages": [{"role": "user", "content": 5}]})", true, "messages[0].content must be");
  expect_400(R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]})",
             true, "messages[0].content[0].type \"image_url\" is not supported");
  expect_400(R"({"messages": [{"role": "user", "content": [{"type": "text"}]}]})", true,
             "messages[0].content[0].text is required");
  expect_400(R"({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]})", true,
             "messages[0].content[0].text must be a string");
  expect_400(R"({"messages": [{"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]}]})", true,
             "tool_calls is not supported");
}

TEST(ServerRequest, MalformedBodies) {
  for (const char* body : {"", "{", "{\"prompt\": \"x\",}", "nonsense", "{\"prompt\": \"\xff\"}"}) {
    expect_400(body, false, "not valid JSON");
    expect_400(body, true, "not valid JSON");
  }
  expect_400("[]", false, "must be a JSON object");
  expect_400("\"text\"", true, "must be a JSON object");
  expect_400("null", false, "must be a JSON object");
}

TEST(ServerRequest, DeepNesting) {
  // Rejected without recursing through the value (the stack would not hold it).
  const std::string deep = std::string(400000, '[') + std::string(400000, ']');
  expect_400(R"({"prompt": "x", "max_tokens": )" + deep + "}", false, "got an array");
  expect_400(R"({"prompt": "x", "stop": [)" + deep + "]}", false, "stop[0] must be a string, got an array");
  expect_400(R"({"prompt": "x", "response_format": {"a": )" + deep + "}}", false, "got an object");
}

TEST(ServerRequest, BodyTooLarge) {
  RequestLimits small;
  small.max_body_bytes = 16;
  const HttpError e = error_of(R"({"prompt": "a long enough prompt"})", false, small);
  EXPECT_EQ(e.status, 413);
  EXPECT_NE(std::string(e.what()).find("limit of 16"), std::string::npos) << e.what();
  EXPECT_EQ(parse_completion_request(R"({"prompt":"ab"})", false, small).prompt, "ab");  // exactly 15
}

TEST(ServerRequest, MaxTokens) {
  EXPECT_EQ(completion(R"({"prompt": "x", "max_tokens": 0})").max_tokens, 0);
  EXPECT_EQ(completion(R"({"prompt": "x", "max_tokens": 4096})").max_tokens, 4096);
  EXPECT_EQ(completion(R"({"prompt": "x", "max_tokens": null})").max_tokens, 16);
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 7})").max_tokens, 7);
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 9})").max_tokens, 9);
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 7, "max_completion_tokens": 9})")
                .max_tokens,
            9);
  expect_400(R"({"prompt": "x", "max_tokens": -3})", false,
             "max_tokens must be an integer between 0 and 4096, got -3", "max_tokens");
  expect_400(R"({"prompt": "x", "max_tokens": 4097})", false, "between 0 and 4096, got 4097");
  expect_400(R"({"prompt": "x", "max_tokens": 18446744073709551615})", false, "max_tokens must be an integer");
  expect_400(R"({"prompt": "x", "max_tokens": 1e30})", false, "max_tokens must be an integer");
  expect_400(R"({"prompt": "x", "max_tokens": 5.5})", false, "got 5.5");
  expect_400(R"({"prompt": "x", "max_tokens": "5"})", false, "got \"5\"");
  expect_400(R"({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": -1})", true,
             "max_completion_tokens must be an integer", "max_completion_tokens");
  RequestLimits ctx;
  ctx.max_tokens = 100;
  EXPECT_EQ(error_of(R"({"prompt": "x", "max_tokens": 101})", false, ctx).status, 400);
}

TEST(ServerRequest, SamplingFields) {
  const CompletionRequest r = completion(
      R"({"prompt": "x", "temperature": 0, "top_p": 0.5, "seed": -1, "stop": ["a", "", "b"], "n": 8,
          "stream": true, "stream_options": {"include_usage": true, "other": 1}, "logprobs": 5})");
  EXPECT_EQ(r.temperature, 0.0);
  EXPECT_EQ(r.top_p, 0.5);
  EXPECT_TRUE(r.has_seed);
  EXPECT_EQ(r.seed, UINT64_MAX);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.n, 8);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.logprobs, 5);
  EXPECT_EQ(completion(R"({"prompt": "x", "seed": 18446744073709551615})").seed, UINT64_MAX);
  EXPECT_EQ(completion(R"({"prompt": "x", "seed": 42})").seed, 42u);
  EXPECT_EQ(completion(R"({"prompt": "x", "stop": "\n"})").stop, (std::vector<std::string>{"\n"}));
  EXPECT_TRUE(completion(R"({"prompt": "x", "stop": ""})").stop.empty());
  EXPECT_EQ(completion(R"({"prompt": "x", "temperature": 2})").temperature, 2.0);

  expect_400(R"({"prompt": "x", "temperature": 2.5})", false, "temperature must be a number in [0, 2], got 2.5");
  expect_400(R"({"prompt": "x", "temperature": -0.1})", false, "temperature");
  expect_400(R"({"prompt": "x", "temperature": "hot"})", false, "temperature");
  expect_400(R"({"prompt": "x", "top_p": 0})", false, "top_p must be a number in (0, 1], got 0");
  expect_400(R"({"prompt": "x", "top_p": 1.01})", false, "top_p");
  expect_400(R"({"prompt": "x", "seed": 1.5})", false, "seed must be an integer");
  expect_400(R"({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]})", false, "stop must hold at most 4");
  expect_400(R"({"prompt": "x", "stop": [1]})", false, "stop[0] must be a string");
  expect_400(R"({"prompt": "x", "stop": 1})", false, "stop must be a string or an array");
  expect_400(R"({"prompt": "x", "n": 0})", false, "n must be an integer between 1 and 8, got 0", "n");
  expect_400(R"({"prompt": "x", "n": 9})", false, "n must be an integer between 1 and 8, got 9");
  expect_400(R"({"prompt": "x", "stream": "yes"})", false, "stream must be a boolean");
  expect_400(R"({"prompt": "x", "stream_options": 1})", false, "stream_options must be an object");
  expect_400(R"({"prompt": "x", "stream_options": {"include_usage": 1}})", false, "include_usage must be a boolean");
}

TEST(ServerRequest, Logprobs) {
  EXPECT_EQ(completion(R"({"prompt": "x", "logprobs": 0})").logprobs, 0);
  EXPECT_EQ(completion(R"({"prompt": "x", "logprobs": null})").logprobs, -1);
  expect_400(R"({"prompt": "x", "logprobs": 6})", false, "logprobs must be an integer between 0 and 5");
  expect_400(R"({"prompt": "x", "logprobs": true})", false, "logprobs must be an integer");

  const std::string m = R"("messages": [{"role": "user", "content": "x"}])";
  EXPECT_EQ(chat("{" + m + R"(, "logprobs": true})").logprobs, 0);
  EXPECT_EQ(chat("{" + m + R"(, "logprobs": true, "top_logprobs": 20})").logprobs, 20);
  EXPECT_EQ(chat("{" + m + R"(, "logprobs": false})").logprobs, -1);
  expect_400("{" + m + R"(, "top_logprobs": 2})", true, "top_logprobs needs logprobs", "top_logprobs");
  expect_400("{" + m + R"(, "logprobs": false, "top_logprobs": 2})", true, "top_logprobs needs logprobs");
  expect_400("{" + m + R"(, "logprobs": true, "top_logprobs": 21})", true, "between 0 and 20");
  expect_400("{" + m + R"(, "logprobs": 3})", true, "logprobs must be a boolean");
}

TEST(ServerRequest, UnsupportedFields) {
  // Neutral values pass, as do fields we ignore.
  EXPECT_NO_THROW(completion(R"({"prompt": "x", "presence_penalty": 0, "frequency_penalty": 0.0, "best_of": 1,
      "echo": false, "logit_bias": {}, "suffix": "", "user": "u", "metadata": {"a": "b"}, "store": false,
      "service_tier": "auto", "some_extension": [1, 2]})"));
  EXPECT_NO_THROW(chat(R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "text"},
      "tools": [], "tool_choice": "none", "functions": null, "parallel_tool_calls": true, "logit_bias": null})"));

  expect_400(R"({"prompt": "x", "presence_penalty": 0.5})", false, "presence_penalty is not supported", "presence_penalty");
  expect_400(R"({"prompt": "x", "frequency_penalty": -1})", false, "frequency_penalty is not supported");
  expect_400(R"({"prompt": "x", "frequency_penalty": "a"})", false, "frequency_penalty must be a number");
  expect_400(R"({"prompt": "x", "best_of": 2})", false, "best_of is not supported");
  expect_400(R"({"prompt": "x", "echo": true})", false, "echo is not supported");
  expect_400(R"({"prompt": "x", "logit_bias": {"50256": -100}})", false, "logit_bias is not supported");
  expect_400(R"({"prompt": "x", "suffix": "end"})", false, "suffix is not supported");
  const std::string m = R"("messages": [{"role": "user", "content": "x"}])";
  expect_400("{" + m + R"(, "response_format": {"type": "json_object"}})", true, "response_format is not supported (only {\"type\":\"text\"}), got type \"json_object\"");
  expect_400("{" + m + R"(, "tools": [{"type": "function", "function": {"name": "f"}}]})", true,
             "tools is not supported", "tools");
  expect_400("{" + m + R"(, "tool_choice": "required"})", true, "tool_choice is not supported");
  expect_400("{" + m + R"(, "functions": [{"name": "f"}]})", true, "functions is not supported");
}

TEST(ServerRequest, ModelAndState) {
  EXPECT_EQ(completion(R"({"prompt": "x", "model": "smol", "state": "chat-1.v2"})").state, "chat-1.v2");
  EXPECT_EQ(completion(R"({"prompt": "x", "model": "smol"})").model, "smol");
  expect_400(R"({"prompt": "x", "model": 3})", false, "model must be a string", "model");
  expect_400(R"({"prompt": "x", "state": "../x"})", false, "state must be", "state");
  expect_400(R"({"prompt": "x", "state": 7})", false, "state must be a string");
}

TEST(ServerRequest, StateRequest) {
  const StateRequest p = parse_state_request(R"({"prompt": "You are a pirate."})", kLimits);
  EXPECT_FALSE(p.chat);
  EXPECT_EQ(p.prompt, "You are a pirate.");
  const StateRequest c = parse_state_request(R"({"messages": [{"role": "system", "content": "Be brief."}]})", kLimits);
  EXPECT_TRUE(c.chat);
  ASSERT_EQ(c.messages.size(), 1u);
  EXPECT_EQ(c.messages[0].content, "Be brief.");

  auto state_error = [](const std::string& body) {
    try {
      parse_state_request(body, kLimits);
    } catch (const HttpError& e) {
      return e;
    }
    ADD_FAILURE() << body;
    return HttpError(0, "", "");
  };
  EXPECT_EQ(state_error("{}").status, 400);
  EXPECT_NE(std::string(state_error("{}").what()).find("prompt or messages is required"), std::string::npos);
  EXPECT_NE(std::string(state_error(R"({"prompt": "a", "messages": []})").what()).find("not both"), std::string::npos);
  EXPECT_NE(std::string(state_error(R"({"prompt": 1})").what()).find("prompt must be a string"), std::string::npos);
  EXPECT_NE(std::string(state_error(R"({"messages": []})").what()).find("must not be empty"), std::string::npos);
  EXPECT_NE(std::string(state_error("{oops").what()).find("not valid JSON"), std::string::npos);
  RequestLimits small;
  small.max_body_bytes = 4;
  try {
    parse_state_request(R"({"prompt": "x"})", small);
    ADD_FAILURE();
  } catch (const HttpError& e) {
    EXPECT_EQ(e.status, 413);
  }
}

TEST(ServerRequest, StateNames) {
  for (const char* ok : {"a", "chat-1", "A.b_c-9", "v1.2", "-x", "_", "name."}) EXPECT_TRUE(valid_state_name(ok)) << ok;
  EXPECT_TRUE(valid_state_name(std::string(64, 'z')));
  for (const char* bad : {"", "../x", "a/b", ".hidden", "..", "a..b", "a b", "a\\b", "tab\t", "é"})
    EXPECT_FALSE(valid_state_name(bad)) << bad;
  EXPECT_FALSE(valid_state_name(std::string(65, 'z')));
  EXPECT_FALSE(valid_state_name(std::string_view("a\0b", 3)));
}

TEST(ServerRequest, ErrorKinds) {
  EXPECT_EQ(http_status(ErrorKind::InvalidArgument), 400);
  EXPECT_EQ(http_status(ErrorKind::NotFound), 404);
  EXPECT_EQ(http_status(ErrorKind::ModelMismatch), 400);
  EXPECT_EQ(http_status(ErrorKind::ResourceExhausted), 400);
  EXPECT_EQ(http_status(ErrorKind::NotSupported), 400);
  EXPECT_EQ(http_status(ErrorKind::Corruption), 500);
  EXPECT_EQ(http_status(ErrorKind::IOError), 500);
  EXPECT_EQ(http_status(ErrorKind::Internal), 500);
  const HttpError nf = http_error(Error(ErrorKind::NotFound, "no state named x"));
  EXPECT_EQ(nf.status, 404);
  EXPECT_EQ(nf.type, "not_found_error");
  EXPECT_STREQ(nf.what(), "no state named x");
  const HttpError ctx = http_error(Error(ErrorKind::ResourceExhausted, "prompt of 9000 tokens exceeds the context"));
  EXPECT_EQ(ctx.status, 400);
  EXPECT_EQ(ctx.type, "invalid_request_error");
  EXPECT_EQ(ctx.code, "context_length_exceeded");
  EXPECT_EQ(http_error(Error(ErrorKind::IOError, "disk")).type, "server_error");
}

}  // namespace
}  // namespace kvstash::server
