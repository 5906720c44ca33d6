// Parsing and validation of OpenAI-style request bodies (/v1/completions, /v1/chat/completions,
// kvstash's /v1/states/{name}). Pure functions: no sockets, no model. Every rejection is an
// HttpError whose one-line message names the offending field, so clients can fix their request.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "kvstash/error.h"
#include "kvstash/tokenizer.h"
#include "kvstash/types.h"

namespace kvstash::server {

// Answered as OpenAI's error object (error_json in openai_response.h).
struct HttpError : std::runtime_error {
  HttpError(int status, std::string type, const std::string& message, std::string param = "",
            std::string code = "");
  int status;
  // "invalid_request_error", "authentication_error", "not_found_error", "server_error",
  // "overloaded_error", ...
  std::string type, param, code;
};

// InvalidArgument, ModelMismatch, ResourceExhausted (context length: the client's prompt),
// NotSupported -> 400; NotFound -> 404; Corruption, IOError, Internal -> 500.
int http_status(ErrorKind kind);
// Status and type from the kind, message e.what(); ResourceExhausted gets code
// "context_length_exceeded" as OpenAI sends it.
HttpError http_error(const Error& e);

struct RequestLimits {
  size_t max_body_bytes = 1 << 20;
  int max_n = 8;
  int64_t max_tokens = 4096;  // largest max_tokens accepted (the server passes its context)
  size_t max_stop = 4;
};

struct CompletionRequest {
  bool chat = false;
  std::string model;              // as sent (may be empty)
  std::string prompt;             // completions: a string or a one-element array of strings
  std::vector<Token> prompt_ids;  // completions: token ids instead (then prompt is empty); >= 0
  bool has_prompt_ids = false;
  // chat: roles system/user/assistant/developer (-> system); content a string or text parts.
  std::vector<ChatMessage> messages;
  // Completions default 16; chat default -1 (until end of generation or full context).
  int64_t max_tokens = 16;
  double temperature = 1.0;
  double top_p = 1.0;
  bool has_seed = false;
  uint64_t seed = 0;  // negative JSON seeds are taken modulo 2^64
  std::vector<std::string> stop;
  int n = 1;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  int logprobs = -1;           // -1: none; else how many top alternatives per token
  std::string state;           // kvstash extension: a saved state to continue
};

// Throws HttpError: 413 when body.size() > limits.max_body_bytes, else 400 naming the field.
CompletionRequest parse_completion_request(std::string_view body, bool chat, const RequestLimits& limits);

// POST /v1/states/{name}: {"prompt": "..."} or {"messages": [...]} (the caller applies the chat
// template).
struct StateRequest {
  std::string prompt;
  std::vector<ChatMessage> messages;
  bool chat = false;
};
StateRequest parse_state_request(std::string_view body, const RequestLimits& limits);

// 1..64 chars of [A-Za-z0-9._-], not starting with '.', no "..": safe as a file name in one
// directory.
bool valid_state_name(std::string_view name);

}  // namespace kvstash::server
