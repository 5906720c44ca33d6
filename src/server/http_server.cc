// The HTTP side of `kvstash serve`: routes, authentication, OpenAI request/response mapping and
// streaming. Requests become scheduler jobs; this file never touches the engine itself.
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "kvstash/error.h"
#include "kvstash/prefix.h"
#include "kvstash/server.h"
#include "kvstash/tokenizer.h"
#include "server/metrics.h"
#include "server/named_states.h"
#include "server/openai_request.h"
#include "server/openai_response.h"
#include "server/scheduler.h"

namespace kvstash {

namespace server {
namespace {

int g_signal_pipe[2] = {-1, -1};
void on_signal(int) {
  const char c = 1;
  [[maybe_unused]] ssize_t n = write(g_signal_pipe[1], &c, 1);
}

bool same_key(const std::string& a, const std::string& b) {  // constant time in the key's length
  unsigned char diff = a.size() != b.size();
  for (size_t i = 0; i < a.size(); ++i) diff |= uint8_t(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

void send_error(httplib::Response& res, const HttpError& e) {
  res.status = e.status;
  if (e.status == 503) res.set_header("Retry-After", "1");
  if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer");
  res.set_content(error_json(e), "application/json");
}

uint64_t random_u64() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

std::string random_id(const char* prefix) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%016llx", prefix, static_cast<unsigned long long>(random_u64()));
  return buf;
}

HttpError job_error(const Job& job) { return http_error(Error(job.error_kind, job.error)); }

class Server {
 public:
  Server(Engine& engine, const ServerOptions& o, PrefixCache* cache, ChunkStore* store)
      : engine_(engine),
        o_(o),
        store_(store),
        states_(o.state_dir),
        scheduler_(engine, SchedulerOptions{.parallel = o.parallel,
                                            .queue_limit = o.queue_limit,
                                            .prefill_chunk = o.prefill_chunk,
                                            .cache = cache}),
        tmpl_(detect_chat_template(engine.model().gguf())),
        created_(int64_t(std::time(nullptr))) {
    limits_.max_body_bytes = o.max_body_bytes;
    limits_.max_tokens = engine.n_ctx();
    max_prompt_ = o.max_prompt_tokens > 0 ? std::min(o.max_prompt_tokens, engine.n_ctx()) : engine.n_ctx();
    routes();
  }

  void run() {
    const int port = o_.port == 0 ? http_.bind_to_any_port(o_.host) : (http_.bind_to_port(o_.host, o_.port) ? o_.port : -1);
    if (port < 0)
      throw Error(ErrorKind::IOError, "cannot listen on " + o_.host + ":" + std::to_string(o_.port) +
                                          " (address in use or not available)");
    if (pipe2(g_signal_pipe, O_CLOEXEC) != 0) throw Error(ErrorKind::IOError, "pipe failed");
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    std::thread listener([&] { http_.listen_after_bind(); });
    std::fprintf(stderr, "kvstash serve: listening on http://%s:%d (model %s, %d parallel)\n", o_.host.c_str(), port,
                 o_.model_id.c_str(), o_.parallel);
    char c;
    while (read(g_signal_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
    const Scheduler::Load l = scheduler_.load();
    std::fprintf(stderr, "kvstash serve: draining %lld running and %lld queued requests\n",
                 static_cast<long long>(l.active), static_cast<long long>(l.queued));
    scheduler_.drain();
    http_.stop();
    listener.join();
    std::fprintf(stderr, "kvstash serve: stopped\n");
  }

 private:
  using Req = httplib::Request;
  using Res = httplib::Response;

  void routes() {
    // Streaming responses hold a thread each: enough for every running and queued request.
    const int threads = o_.parallel + o_.queue_limit + 8;
    http_.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
    http_.set_payload_max_length(o_.max_body_bytes);
    http_.set_pre_routing_handler([this](const Req& req, Res& res) {
      if (o_.api_key.empty() || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
      const std::string auth = req.get_header_value("Authorization");
      if (auth.rfind("Bearer ", 0) == 0 && same_key(auth.substr(7), o_.api_key))
        return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, HttpError(401, "invalid_request_error", "invalid or missing API key (Authorization: Bearer ...)",
                                "", "invalid_api_key"));
      metrics_.request_done("auth", 401);
      return httplib::Server::HandlerResponse::Handled;
    });
    http_.set_error_handler([](const Req&, Res& res) {
      if (!res.body.empty()) return;
      if (res.status == 413)
        send_error(res, HttpError(413, "invalid_request_error", "request body too large"));
      else if (res.status == 404)
        send_error(res, HttpError(404, "not_found_error", "no such endpoint"));
      else if (res.status >= 400)
        send_error(res, HttpError(res.status, "invalid_request_error", "bad request"));
    });
    http_.set_exception_handler([](const Req&, Res& res, std::exception_ptr) {
      send_error(res, HttpError(500, "server_error", "internal error"));
    });
    http_.Get("/health", [this](const Req&, Res& res) {
      res.set_content(R"({"status":"ok"})", "application/json");
      metrics_.request_done("health", 200);
    });
    http_.Get("/v1/models", [this](const Req&, Res& res) {
      res.set_content(models_json(o_.model_id, created_), "application/json");
      metrics_.request_done("models", 200);
    });
    http_.Get("/metrics", [this](const Req&, Res& res) {
      res.set_content(metrics_.render(gauges()), "text/plain; version=0.0.4");
    });
    http_.Post("/v1/completions", [this](const Req& req, Res& res) { completion(req, res, false); });
    http_.Post("/v1/chat/completions", [this](const Req& req, Res& res) { completion(req, res, true); });
    http_.Get("/v1/states", [this](const Req&, Res& res) { guarded("states", res, [&] { list_states(res); }); });
    http_.Post(R"(/v1/states/([^/]+))", [this](const Req& req, Res& res) {
      guarded("states", res, [&] { save_named(req.matches[1], req.body, res); });
    });
    http_.Delete(R"(/v1/states/([^/]+))", [this](const Req& req, Res& res) {
      guarded("states", res, [&] {
        need_states();
        states_.remove(req.matches[1]);
        res.set_content(nlohmann::json{{"name", std::string(req.matches[1])}, {"deleted", true}}.dump(),
                        "application/json");
      });
    });
  }

  template <class F>
  void guarded(const std::string& endpoint, Res& res, F&& f) {
    try {
      f();
    } catch (const HttpError& e) {
      send_error(res, e);
    } catch (const Error& e) {
      send_error(res, http_error(e));
    }
    metrics_.request_done(endpoint, res.status == -1 ? 200 : res.status);
  }

  Gauges gauges() const {
    const Scheduler::Load l = scheduler_.load();
    Gauges g{l.active, l.queued, l.kv_blocks_used, l.kv_blocks_total, {}};
    if (store_)
      for (const auto& tier : store_->tiers()) {
        const TierStats s = tier->stats();
        g.tiers.push_back({s.tier, s.bytes, s.entries});
      }
    return g;
  }

  void need_states() const {
    if (!states_.enabled())
      throw HttpError(404, "not_found_error", "named states are off: start the server with --state-dir DIR");
  }

  void list_states(Res& res) {
    need_states();
    nlohmann::json data = nlohmann::json::array();
    for (const NamedState& s : states_.list())
      data.push_back({{"name", s.name}, {"object", "state"}, {"bytes", s.bytes}, {"created", s.modified}});
    res.set_content(nlohmann::json{{"object", "list"}, {"data", data}}.dump(), "application/json");
  }

  std::string chat_text(const std::vector<ChatMessage>& messages, bool generation_prompt) const {
    return format_chat(tmpl_, messages, generation_prompt);
  }

  std::vector<Token> tokens_of(const std::string& text) const {
    std::vector<Token> t = prompt_tokens(engine_.model().tokenizer(), text);
    check_length(t.size());
    return t;
  }
  void check_length(size_t n) const {
    if (int64_t(n) > max_prompt_)
      throw HttpError(400, "invalid_request_error",
                      "the prompt has " + std::to_string(n) + " tokens; at most " + std::to_string(max_prompt_) +
                          " are accepted",
                      "prompt", "context_length_exceeded");
  }

  void save_named(const std::string& name, const std::string& body, Res& res) {
    need_states();
    const StateRequest sr = parse_state_request(body, limits_);
    JobSpec spec;
    spec.tokens = tokens_of(sr.chat ? chat_text(sr.messages, false) : sr.prompt);
    spec.max_tokens = 0;
    spec.save_path = states_.path_for_save(name);
    const std::shared_ptr<Job> job = scheduler_.submit(std::move(spec));
    std::vector<Piece> pieces;
    while (job->next(pieces)) {
    }
    if (job->failed) throw Error(job->error_kind, job->error);
    metrics_.add_tokens(job->prompt_tokens, 0, job->cached_tokens);
    res.status = 201;
    res.set_content(nlohmann::json{{"name", name},
                                   {"object", "state"},
                                   {"tokens", job->prompt_tokens},
                                   {"cached_tokens", job->cached_tokens}}
                        .dump(),
                    "application/json");
  }

  TokenLogprob logprob_of(const TokenInfo& info) const {
    const Tokenizer& tok = engine_.model().tokenizer();
    TokenLogprob lp{tok.token_bytes(info.id, true), info.logprob, {}};
    for (const auto& [id, v] : info.top) lp.top.push_back({tok.token_bytes(id, true), v});
    return lp;
  }

  std::vector<std::shared_ptr<Job>> submit(const CompletionRequest& req) {
    JobSpec spec;
    if (!req.state.empty()) {
      need_states();
      spec.state_path = states_.path_to_load(req.state);
      spec.prompt_text = req.chat ? chat_text(req.messages, true) : req.prompt;
      if (req.has_prompt_ids) throw HttpError(400, "invalid_request_error", "a state continues text, not token ids", "prompt");
    } else if (req.chat) {
      spec.tokens = tokens_of(chat_text(req.messages, true));
    } else if (req.has_prompt_ids) {
      spec.tokens = req.prompt_ids;
      check_length(spec.tokens.size());
    } else {
      spec.tokens = tokens_of(req.prompt);
    }
    spec.max_tokens = req.max_tokens;
    spec.stop = req.stop;
    spec.logprobs = req.logprobs;
    spec.sampling = SamplingParams{.temperature = float(req.temperature), .top_k = 0, .top_p = float(req.top_p),
                                   .min_p = 0, .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0};
    std::vector<std::shared_ptr<Job>> jobs;
    try {
      for (int i = 0; i < req.n; ++i) {
        JobSpec s = spec;
        s.sampling.seed = req.has_seed ? req.seed + uint64_t(i) : random_u64();
        jobs.push_back(scheduler_.submit(std::move(s)));
      }
    } catch (...) {
      for (auto& j : jobs) j->cancel();
      throw;
    }
    return jobs;
  }

  void record(const Job& j) {
    if (j.failed) return;
    metrics_.add_tokens(j.prompt_tokens, j.completion_tokens, j.cached_tokens);
    if (j.completion_tokens > 0) metrics_.observe_ttft(j.ttft_s);
    if (j.completion_tokens > 1) metrics_.observe_token_latency(j.decode_s / double(j.completion_tokens - 1));
  }

  Usage usage_of(const std::vector<std::shared_ptr<Job>>& jobs) const {
    Usage u{jobs[0]->prompt_tokens, 0, jobs[0]->cached_tokens};
    for (const auto& j : jobs) u.completion_tokens += j->completion_tokens;
    return u;
  }

  void completion(const Req& http_req, Res& res, bool chat) {
    const std::string endpoint = chat ? "chat_completions" : "completions";
    CompletionRequest req;
    std::vector<std::shared_ptr<Job>> jobs;
    try {
      req = parse_completion_request(http_req.body, chat, limits_);
      jobs = submit(req);
    } catch (const HttpError& e) {
      send_error(res, e);
      metrics_.request_done(endpoint, e.status);
      return;
    } catch (const Error& e) {
      send_error(res, http_error(e));
      metrics_.request_done(endpoint, res.status);
      return;
    }
    const ResponseMeta meta{random_id(chat ? "chatcmpl-" : "cmpl-"), int64_t(std::time(nullptr)),
                            req.model.empty() ? o_.model_id : req.model};
    if (req.stream) {
      stream(req, meta, std::move(jobs), res, endpoint);
      return;
    }
    std::vector<ChoiceResult> choices;
    for (const auto& job : jobs) {
      ChoiceResult c;
      std::vector<Piece> pieces;
      while (job->next(pieces))
        for (Piece& p : pieces) {
          c.text += p.text;
          if (p.has_info) c.logprobs.push_back(logprob_of(p.info));
        }
      c.finish_reason = finish_reason(job->stop_reason);
      choices.push_back(std::move(c));
      record(*job);
    }
    for (const auto& job : jobs)
      if (job->failed) {
        const HttpError e = job_error(*job);
        send_error(res, e);
        metrics_.request_done(endpoint, e.status);
        return;
      }
    res.set_content(completion_json(req, meta, choices, usage_of(jobs)), "application/json");
    metrics_.request_done(endpoint, 200);
  }

  // Server-sent events, choice after choice (they are computed side by side). A client that goes
  // away cancels the jobs: the scheduler frees their sequences at its next pass.
  void stream(const CompletionRequest& req, const ResponseMeta& meta, std::vector<std::shared_ptr<Job>> jobs, Res& res,
              const std::string& endpoint) {
    auto shared = std::make_shared<std::vector<std::shared_ptr<Job>>>(std::move(jobs));
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, req, meta, shared, endpoint](size_t, httplib::DataSink& sink) {
          auto send = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
          for (size_t i = 0; i < shared->size(); ++i) {
            Job& job = *(*shared)[i];
            if (req.chat && !send(stream_event(req, meta, int(i), "", nullptr, "", true))) return false;
            std::vector<Piece> pieces;
            while (job.next(pieces))
              for (const Piece& p : pieces) {
                TokenLogprob lp;
                if (p.has_info) lp = logprob_of(p.info);
                if (!send(stream_event(req, meta, int(i), p.text, p.has_info ? &lp : nullptr, "", false))) return false;
              }
            record(job);
            if (job.failed) {
              const HttpError e = job_error(job);
              send("data: " + error_json(e) + "\n\n");
              send(kStreamDone);
              metrics_.request_done(endpoint, e.status);
              sink.done();
              return true;
            }
            if (!send(stream_event(req, meta, int(i), "", nullptr, finish_reason(job.stop_reason), false))) return false;
          }
          if (req.include_usage && !send(stream_usage_event(req, meta, usage_of(*shared)))) return false;
          send(kStreamDone);
          metrics_.request_done(endpoint, 200);
          sink.done();
          return true;
        },
        [shared](bool success) {
          if (!success)
            for (auto& j : *shared) j->cancel();
        });
  }

  Engine& engine_;
  ServerOptions o_;
  ChunkStore* store_;
  NamedStates states_;
  Scheduler scheduler_;
  ChatTemplate tmpl_;
  int64_t created_;
  RequestLimits limits_;
  int64_t max_prompt_ = 0;
  Metrics metrics_;
  httplib::Server http_;
};

}  // namespace
}  // namespace server

void serve(Engine& engine, const ServerOptions& options, PrefixCache* cache, ChunkStore* store) {
  server::Server s(engine, options, cache, store);
  s.run();
}

}  // namespace kvstash
