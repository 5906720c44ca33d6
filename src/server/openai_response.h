// OpenAI-shaped response bodies and server-sent events, as the openai SDKs read them. Text may
// hold invalid UTF-8 (a token piece can end mid-character): it is written with U+FFFD in its
// place rather than throwing.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "server/openai_request.h"

namespace kvstash::server {

struct TopLogprob {
  std::string token;
  double logprob;
};
struct TokenLogprob {
  std::string token;
  double logprob;
  std::vector<TopLogprob> top;
};
struct ChoiceResult {
  std::string text;
  std::string finish_reason;  // "stop" | "length"
  std::vector<TokenLogprob> logprobs;
};
struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
};
struct ResponseMeta {
  std::string id;
  int64_t created = 0;
  std::string model;
};

// "stop"/"eos" -> "stop"; "length"/"context" -> "length" (GenerateResult::stop_reason values);
// anything else passes through.
std::string finish_reason(const std::string& kvstash_stop_reason);

// A whole (non-stream) response: "text_completion" or "chat.completion" after req.chat.
std::string completion_json(const CompletionRequest& req, const ResponseMeta& meta,
                            const std::vector<ChoiceResult>& choices, const Usage& usage);

// One event "data: {...}\n\n" of a stream. role_delta: the first chunk of a chat choice (carries
// delta.role "assistant"). An empty finish_reason is written as null; lp may be null.
std::string stream_event(const CompletionRequest& req, const ResponseMeta& meta, int index, const std::string& text,
                         const TokenLogprob* lp, const std::string& finish_reason, bool role_delta);

// With include_usage: the last chunk, with "choices": [] and the usage object.
std::string stream_usage_event(const CompletionRequest& req, const ResponseMeta& meta, const Usage& usage);

inline constexpr const char* kStreamDone = "data: [DONE]\n\n";

// {"error":{"message","type","param","code"}}, param and code null when empty.
std::string error_json(const HttpError& e);

// GET /v1/models: one model.
std::string models_json(const std::string& model_id, int64_t created);

}  // namespace kvstash::server
