#include "server/openai_request.h"

#include <cmath>
#include <limits>
#include <utility>

#include <nlohmann/json.hpp>

namespace kvstash::server {

using json = nlohmann::json;

HttpError::HttpError(int status_, std::string type_, const std::string& message, std::string param_,
                     std::string code_)
    : std::runtime_error(message),
      status(status_),
      type(std::move(type_)),
      param(std::move(param_)),
      code(std::move(code_)) {}

int http_status(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::InvalidArgument:
    case ErrorKind::ModelMismatch:
    case ErrorKind::ResourceExhausted:
    case ErrorKind::NotSupported:
      return 400;
    case ErrorKind::NotFound:
      return 404;
    case ErrorKind::Corruption:
    case ErrorKind::IOError:
    case ErrorKind::Internal:
      return 500;
  }
  return 500;
}

HttpError http_error(const Error& e) {
  const int status = http_status(e.kind());
  const char* type = status == 404 ? "not_found_error" : status == 400 ? "invalid_request_error" : "server_error";
  std::string code = e.kind() == ErrorKind::ResourceExhausted ? "context_length_exceeded" : "";
  return HttpError(status, type, e.what(), "", std::move(code));
}

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw HttpError(400, "invalid_request_error", message, param);
}

// A short rendering of the value a client sent, for messages; never throws on bad UTF-8.
// Containers are not dumped: dump recurses, and a 1 MiB body can nest half a million deep.
std::string shown(const json& v) {
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

// null counts as absent: clients (and the SDK) send explicit nulls for unset options.
const json* field(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

int64_t int_in(const json& v, const std::string& name, int64_t lo, int64_t hi) {
  const std::string want = name + " must be an integer between " + std::to_string(lo) + " and " +
                           std::to_string(hi) + ", got " + shown(v);
  if (!v.is_number_integer()) bad(name, want);
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    // nlohmann parses every non-negative integer as unsigned, so the lower bound matters here too.
    if (hi < 0 || u > uint64_t(hi) || (lo > 0 && u < uint64_t(lo))) bad(name, want);
    return int64_t(u);
  }
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) bad(name, want);
  return x;
}

bool boolean(const json& v, const std::string& name) {
  if (!v.is_boolean()) bad(name, name + " must be a boolean, got " + shown(v));
  return v.get<bool>();
}

const std::string& string(const json& v, const std::string& name) {
  if (!v.is_string()) bad(name, name + " must be a string, got " + shown(v));
  return v.get_ref<const std::string&>();
}

json parse_object(std::string_view body, const RequestLimits& limits) {
  if (body.size() > limits.max_body_bytes)
    throw HttpError(413, "invalid_request_error",
                    "request body is " + std::to_string(body.size()) + " bytes, more than the limit of " +
                        std::to_string(limits.max_body_bytes));
  // No exceptions: malformed JSON (including invalid UTF-8 in strings) comes back discarded.
  json j = json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded()) bad("", "the request body is not valid JSON");
  if (!j.is_object()) bad("", "the request body must be a JSON object, got " + shown(j));
  return j;
}

std::string message_content(const json& m, const std::string& where, const std::string& role) {
  auto it = m.find("content");
  if (it == m.end() || it->is_null()) {
    if (role == "assistant") return "";  // OpenAI allows it there (beside tool calls)
    bad(where + ".content", where + ".content is required");
  }
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array())
    bad(where + ".content", where + ".content must be a string or an array of parts, got " + shown(*it));
  std::string text;
  for (size_t k = 0; k < it->size(); ++k) {
    const json& part = (*it)[k];
    const std::string p = where + ".content[" + std::to_string(k) + "]";
    if (!part.is_object()) bad(p, p + " must be an object, got " + shown(part));
    const json* type = field(part, "type");
    if (!type) bad(p + ".type", p + ".type is required");
    const std::string& t = string(*type, p + ".type");
    if (t != "text") bad(p + ".type", p + ".type " + shown(*type) + " is not supported (only \"text\")");
    const json* txt = field(part, "text");
    if (!txt) bad(p + ".text", p + ".text is required");
    text += string(*txt, p + ".text");
  }
  return text;
}

std::vector<ChatMessage> parse_messages(const json& v) {
  if (!v.is_array()) bad("messages", "messages must be an array, got " + shown(v));
  if (v.empty()) bad("messages", "messages must not be empty");
  std::vector<ChatMessage> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const json& m = v[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad(where, where + " must be an object, got " + shown(m));
    const json* role = field(m, "role");
    if (!role) bad(where + ".role", where + ".role is required");
    std::string r = string(*role, where + ".role");
    if (r == "developer") r = "system";  // the newer name; chat templates know "system"
    if (r != "system" && r != "user" && r != "assistant")
      bad(where + ".role", where + ".role must be one of system, developer, user, assistant, got " + shown(*role));
    if (const json* calls = field(m, "tool_calls"); calls && !calls->empty())
      bad(where + ".tool_calls", where + ".tool_calls is not supported");
    if (field(m, "function_call")) bad(where + ".function_call", where + ".function_call is not supported");
    out.push_back({std::move(r), message_content(m, where, *role)});
  }
  return out;
}

void parse_prompt(const json& v, CompletionRequest& req) {
  if (v.is_string()) {
    req.prompt = v.get<std::string>();
    return;
  }
  if (!v.is_array())
    bad("prompt", "prompt must be a string, an array of one string or an array of token ids, got " + shown(v));
  if (v.empty()) bad("prompt", "prompt must not be an empty array");
  const json* ids = &v;
  if (v[0].is_string() || v[0].is_array()) {
    if (v.size() != 1) bad("prompt", "prompt must hold one prompt: batched prompts are not supported");
    if (v[0].is_string()) {
      req.prompt = v[0].get<std::string>();
      return;
    }
    ids = &v[0];  // [[ids]]: one tokenized prompt
    if (ids->empty()) bad("prompt", "prompt must not be an empty array");
  }
  req.prompt_ids.reserve(ids->size());
  for (size_t i = 0; i < ids->size(); ++i)
    req.prompt_ids.push_back(Token(int_in((*ids)[i], "prompt[" + std::to_string(i) + "]", 0,
                                          std::numeric_limits<Token>::max())));
  req.has_prompt_ids = true;
}

double number_in(const json& v, const std::string& name, double lo, double hi, bool lo_open) {
  const bool ok = v.is_number() && (lo_open ? v.get<double>() > lo : v.get<double>() >= lo) && v.get<double>() <= hi;
  if (!ok) {
    auto fmt = [](double x) {
      std::string s = std::to_string(x);
      while (s.back() == '0') s.pop_back();
      if (s.back() == '.') s.pop_back();
      return s;
    };
    bad(name, name + " must be a number " + (lo_open ? "in (" : "in [") + fmt(lo) + ", " + fmt(hi) + "], got " + shown(v));
  }
  return v.get<double>();
}

// Options whose neutral value is all we run: anything else is refused rather than silently
// ignored, so a client never gets output that does not honour what it asked.
// Rejected when not neutral: presence_penalty, frequency_penalty (0), best_of (1), echo (false),
// logit_bias (empty), suffix (""), response_format ({"type":"text"}), tools, functions (empty),
// tool_choice, function_call ("none"/"auto"). In messages: tool_calls, function_call, the "tool"
// and "function" roles, and content parts other than "text".
void check_neutral(const json& j) {
  for (const char* name : {"presence_penalty", "frequency_penalty"})
    if (const json* v = field(j, name)) {
      if (!v->is_number()) bad(name, std::string(name) + " must be a number, got " + shown(*v));
      if (v->get<double>() != 0) bad(name, std::string(name) + " is not supported (only 0), got " + shown(*v));
    }
  if (const json* v = field(j, "best_of"); v && !(v->is_number_integer() && v->get<int64_t>() == 1))
    bad("best_of", "best_of is not supported (only 1), got " + shown(*v));
  if (const json* v = field(j, "echo"); v && boolean(*v, "echo"))
    bad("echo", "echo is not supported (only false)");
  if (const json* v = field(j, "logit_bias"); v && !(v->is_object() && v->empty()))
    bad("logit_bias", "logit_bias is not supported (only {}), got " + shown(*v));
  if (const json* v = field(j, "suffix"); v && !(v->is_string() && v->get_ref<const std::string&>().empty()))
    bad("suffix", "suffix is not supported (only \"\"), got " + shown(*v));
  if (const json* v = field(j, "response_format")) {
    const json* type = v->is_object() ? field(*v, "type") : nullptr;
    if (!type || *type != "text")
      bad("response_format", "response_format is not supported (only {\"type\":\"text\"}), got " +
                                 (type ? "type " + shown(*type) : shown(*v)));
  }
  for (const char* name : {"tools", "functions"})
    if (const json* v = field(j, name); v && !(v->is_array() && v->empty()))
      bad(name, std::string(name) + " is not supported, got " + shown(*v));
  for (const char* name : {"tool_choice", "function_call"})
    if (const json* v = field(j, name); v && !(*v == "none" || *v == "auto"))
      bad(name, std::string(name) + " is not supported (only \"none\" or \"auto\"), got " + shown(*v));
}

}  // namespace

CompletionRequest parse_completion_request(std::string_view body, bool chat, const RequestLimits& limits) {
  const json j = parse_object(body, limits);
  CompletionRequest req;
  req.chat = chat;
  if (const json* v = field(j, "model")) req.model = string(*v, "model");

  if (chat) {
    const json* m = field(j, "messages");
    if (!m) bad("messages", "messages is required");
    req.messages = parse_messages(*m);
  } else {
    const json* p = field(j, "prompt");
    if (!p) bad("prompt", "prompt is required");
    parse_prompt(*p, req);
  }

  req.max_tokens = chat ? -1 : 16;
  // Chat's newer name wins over the deprecated one when both are sent.
  const char* mt_name = "max_tokens";
  const json* mt = field(j, "max_tokens");
  if (chat)
    if (const json* v = field(j, "max_completion_tokens")) mt = v, mt_name = "max_completion_tokens";
  if (mt) req.max_tokens = int_in(*mt, mt_name, 0, limits.max_tokens);

  if (const json* v = field(j, "temperature")) req.temperature = number_in(*v, "temperature", 0, 2, false);
  if (const json* v = field(j, "top_p")) req.top_p = number_in(*v, "top_p", 0, 1, true);
  if (const json* v = field(j, "seed")) {
    if (!v->is_number_integer()) bad("seed", "seed must be an integer, got " + shown(*v));
    req.seed = v->is_number_unsigned() ? v->get<uint64_t>() : uint64_t(v->get<int64_t>());
    req.has_seed = true;
  }
  if (const json* v = field(j, "stop")) {
    if (v->is_string()) {
      if (!v->get_ref<const std::string&>().empty()) req.stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      if (v->size() > limits.max_stop)
        bad("stop", "stop must hold at most " + std::to_string(limits.max_stop) + " strings, got " +
                        std::to_string(v->size()));
      for (size_t i = 0; i < v->size(); ++i) {
        const std::string& s = string((*v)[i], "stop[" + std::to_string(i) + "]");
        if (!s.empty()) req.stop.push_back(s);
      }
    } else {
      bad("stop", "stop must be a string or an array of strings, got " + shown(*v));
    }
  }
  if (const json* v = field(j, "n")) req.n = int(int_in(*v, "n", 1, limits.max_n));
  if (const json* v = field(j, "stream")) req.stream = boolean(*v, "stream");
  if (const json* v = field(j, "stream_options")) {
    if (!v->is_object()) bad("stream_options", "stream_options must be an object, got " + shown(*v));
    if (const json* u = field(*v, "include_usage")) req.include_usage = boolean(*u, "stream_options.include_usage");
  }

  if (chat) {
    const json* lp = field(j, "logprobs");
    const bool want = lp && boolean(*lp, "logprobs");
    const json* top = field(j, "top_logprobs");
    if (top && !want) bad("top_logprobs", "top_logprobs needs logprobs set to true");
    if (want) req.logprobs = top ? int(int_in(*top, "top_logprobs", 0, 20)) : 0;
  } else if (const json* lp = field(j, "logprobs")) {
    req.logprobs = int(int_in(*lp, "logprobs", 0, 5));
  }

  check_neutral(j);

  if (const json* v = field(j, "state")) {
    const std::string& s = string(*v, "state");
    if (!valid_state_name(s))
      bad("state", "state must be 1 to 64 characters of A-Z a-z 0-9 . _ - not starting with '.', got " + shown(*v));
    req.state = s;
  }
  // Ignored: user, metadata, store, service_tier, parallel_tool_calls, the rest of
  // stream_options, and any field we do not know (clients send extras).
  return req;
}

StateRequest parse_state_request(std::string_view body, const RequestLimits& limits) {
  const json j = parse_object(body, limits);
  StateRequest req;
  const json* p = field(j, "prompt");
  const json* m = field(j, "messages");
  if (p && m) bad("prompt", "send either prompt or messages, not both");
  if (p) {
    req.prompt = string(*p, "prompt");
  } else if (m) {
    req.messages = parse_messages(*m);
    req.chat = true;
  } else {
    bad("prompt", "prompt or messages is required");
  }
  return req;
}

bool valid_state_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || name[0] == '.') return false;
  if (name.find("..") != std::string_view::npos) return false;
  for (char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace kvstash::server
