#include "server/openai_response.h"

#include <cmath>

#include <nlohmann/json.hpp>

namespace kvstash::server {

using json = nlohmann::json;

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// JSON has no infinities (nlohmann would write null, which SDKs do not expect for a float); a
// masked token gets OpenAI's floor value instead.
double finite(double lp) { return std::isfinite(lp) ? lp : -9999.0; }

json bytes_of(const std::string& s) {
  json a = json::array();
  for (unsigned char c : s) a.push_back(int(c));
  return a;
}

json chat_logprob(const TokenLogprob& t) {
  json top = json::array();
  for (const TopLogprob& a : t.top)
    top.push_back({{"token", a.token}, {"logprob", finite(a.logprob)}, {"bytes", bytes_of(a.token)}});
  return {{"token", t.token}, {"logprob", finite(t.logprob)}, {"bytes", bytes_of(t.token)}, {"top_logprobs", top}};
}

// Legacy completions' parallel lists; text_offset only where the offsets are known (whole
// responses).
json completion_logprobs(const TokenLogprob* lps, size_t n, bool offsets) {
  json tokens = json::array(), values = json::array(), tops = json::array(), off = json::array();
  size_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    const TokenLogprob& t = lps[i];
    tokens.push_back(t.token);
    values.push_back(finite(t.logprob));
    json m = json::object();
    for (const TopLogprob& a : t.top) m[a.token] = finite(a.logprob);
    tops.push_back(std::move(m));
    off.push_back(at);
    at += t.token.size();
  }
  json out = {{"tokens", tokens}, {"token_logprobs", values}, {"top_logprobs", tops}};
  if (offsets) out["text_offset"] = off;
  return out;
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

json envelope(const ResponseMeta& meta, const char* object) {
  return {{"id", meta.id}, {"object", object}, {"created", meta.created}, {"model", meta.model},
          {"system_fingerprint", "kvstash"}};
}

json reason_or_null(const std::string& r) { return r.empty() ? json(nullptr) : json(r); }

}  // namespace

std::string finish_reason(const std::string& r) {
  if (r == "stop" || r == "eos") return "stop";
  if (r == "length" || r == "context") return "length";
  return r;
}

std::string completion_json(const CompletionRequest& req, const ResponseMeta& meta,
                            const std::vector<ChoiceResult>& choices, const Usage& usage) {
  json j = envelope(meta, req.chat ? "chat.completion" : "text_completion");
  json cs = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceResult& c = choices[i];
    json choice = {{"index", i}, {"finish_reason", reason_or_null(c.finish_reason)}};
    json lp = nullptr;
    if (req.chat) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}, {"refusal", nullptr}};
      if (req.logprobs >= 0) {
        lp = {{"content", json::array()}, {"refusal", nullptr}};
        for (const TokenLogprob& t : c.logprobs) lp["content"].push_back(chat_logprob(t));
      }
    } else {
      choice["text"] = c.text;
      if (req.logprobs >= 0) lp = completion_logprobs(c.logprobs.data(), c.logprobs.size(), true);
    }
    choice["logprobs"] = std::move(lp);
    cs.push_back(std::move(choice));
  }
  j["choices"] = std::move(cs);
  j["usage"] = usage_json(usage);
  return dump(j);
}

std::string stream_event(const CompletionRequest& req, const ResponseMeta& meta, int index, const std::string& text,
                         const TokenLogprob* lp, const std::string& finish_reason, bool role_delta) {
  json j = envelope(meta, req.chat ? "chat.completion.chunk" : "text_completion");
  json choice = {{"index", index}};
  json lpj = nullptr;
  if (req.chat) {
    json delta = json::object();
    if (role_delta) delta["role"] = "assistant";
    if (role_delta || !text.empty()) delta["content"] = text;
    choice["delta"] = std::move(delta);
    if (lp && req.logprobs >= 0) lpj = {{"content", json::array({chat_logprob(*lp)})}, {"refusal", nullptr}};
  } else {
    choice["text"] = text;
    if (lp && req.logprobs >= 0) lpj = completion_logprobs(lp, 1, false);
  }
  choice["logprobs"] = std::move(lpj);
  choice["finish_reason"] = reason_or_null(finish_reason);
  j["choices"] = json::array({std::move(choice)});
  if (req.include_usage) j["usage"] = nullptr;  // as OpenAI: present, null until the last chunk
  return "data: " + dump(j) + "\n\n";
}

std::string stream_usage_event(const CompletionRequest& req, const ResponseMeta& meta, const Usage& usage) {
  json j = envelope(meta, req.chat ? "chat.completion.chunk" : "text_completion");
  j["choices"] = json::array();
  j["usage"] = usage_json(usage);
  return "data: " + dump(j) + "\n\n";
}

std::string error_json(const HttpError& e) {
  auto or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
  json j = {{"error",
             {{"message", e.what()}, {"type", e.type}, {"param", or_null(e.param)}, {"code", or_null(e.code)}}}};
  return dump(j);
}

std::string models_json(const std::string& model_id, int64_t created) {
  json j = {{"object", "list"},
            {"data", json::array({{{"id", model_id}, {"object", "model"}, {"created", created}, {"owned_by", "kvstash"}}})}};
  return dump(j);
}

}  // namespace kvstash::server
