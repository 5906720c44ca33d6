// Request-parsing fuzzer for kvstash serve. Per input: parse it as a completions body, a chat body
// and a state body. A rejection must be an HttpError (400 or 413, one-line message) whose
// error_json parses back; any other exception traps. An accepted request is answered with a dummy
// result (text cut at an arbitrary byte, so often invalid UTF-8) through completion_json,
// stream_event and stream_usage_event, and every output must parse back as JSON.
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/openai_request.h"
#include "server/openai_response.h"

using namespace kvstash;
using namespace kvstash::server;

namespace {

void expect(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "server_request_fuzz: %s\n", what);
  __builtin_trap();
}

void expect_json(const std::string& s, const char* what) {
  expect(nlohmann::json::accept(s), what);
}

void expect_event(const std::string& ev, const char* what) {
  expect(ev.size() >= 8 && ev.compare(0, 6, "data: ") == 0 && ev.compare(ev.size() - 2, 2, "\n\n") == 0, what);
  const std::string body = ev.substr(6, ev.size() - 8);
  expect(body.find('\n') == std::string::npos, what);
  expect_json(body, what);
}

void check_error(const HttpError& e) {
  expect(e.status == 400 || e.status == 413, "status other than 400/413");
  expect(std::string_view(e.what()).find('\n') == std::string_view::npos, "multi-line error message");
  expect_json(error_json(e), "error_json is not JSON");
}

void answer(const CompletionRequest& req, std::string_view input) {
  // A piece of the request's own text, cut anywhere (maybe mid-character).
  std::string text = req.chat ? req.messages.back().content : req.prompt;
  text = text.substr(0, input.size() % (text.size() + 1));
  TokenLogprob lp{text, -0.5, {}};
  for (int k = 0; k < req.logprobs; ++k) lp.top.push_back({text.substr(0, size_t(k)), -1.0 - k});
  std::vector<ChoiceResult> choices(size_t(req.n), ChoiceResult{text, "length", {lp, lp}});
  const ResponseMeta meta{"cmpl-fuzz", 1, req.model};
  const Usage usage{int64_t(input.size()), 2, 1};
  expect_json(completion_json(req, meta, choices, usage), "completion_json is not JSON");
  expect_event(stream_event(req, meta, 0, text, &lp, "", true), "first stream_event is not JSON");
  expect_event(stream_event(req, meta, req.n - 1, text, nullptr, "stop", false), "last stream_event is not JSON");
  expect_event(stream_usage_event(req, meta, usage), "stream_usage_event is not JSON");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  RequestLimits limits;
  limits.max_body_bytes = 4096;  // reaches the 413 path within libFuzzer's input sizes
  for (bool chat : {false, true}) {
    try {
      const CompletionRequest req = parse_completion_request(body, chat, limits);
      expect(req.chat == chat, "chat flag");
      expect(req.n >= 1 && req.n <= limits.max_n, "n out of range");
      expect(req.max_tokens >= (chat ? -1 : 0) && req.max_tokens <= limits.max_tokens, "max_tokens out of range");
      expect(req.chat ? !req.messages.empty() : true, "chat without messages");
      expect(req.stop.size() <= limits.max_stop, "too many stop strings");
      expect(req.state.empty() || valid_state_name(req.state), "invalid state name accepted");
      for (Token t : req.prompt_ids) expect(t >= 0, "negative token id");
      answer(req, body);
    } catch (const HttpError& e) {
      check_error(e);
    } catch (...) {
      expect(false, "exception other than HttpError from parse_completion_request");
    }
  }
  try {
    const StateRequest req = parse_state_request(body, limits);
    expect(req.chat == !req.messages.empty(), "state request chat flag");
  } catch (const HttpError& e) {
    check_error(e);
  } catch (...) {
    expect(false, "exception other than HttpError from parse_state_request");
  }
  return 0;
}
