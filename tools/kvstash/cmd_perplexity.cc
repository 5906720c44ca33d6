// kvstash perplexity: perplexity of a text file in consecutive windows of -c tokens (as llama.cpp's
// llama-perplexity: the context size is the window), or (--stream) as one stream, each token
// predicted from everything before it (StreamingLLM's evaluation), optionally through a KV budget.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "budget_options.h"
#include "commands.h"
#include "common.h"
#include "kvstash/error.h"
#include "kvstash/generate.h"
#include "kvstash/prefix.h"
#include "text_input.h"

namespace kvstash::cli {

namespace {
struct PerplexityArgs {
  ModelOptions model;
  BudgetFlags budget;
  std::string file, state;
  int level = 0;
  bool json = false;
  bool stream = false;
};

// Windows of `window` tokens, each scored as a stream through an empty budgeted sequence.
PerplexityResult budgeted_windows(Engine& engine, const std::vector<Token>& tokens, int64_t window, const KvBudget& b) {
  if (window < 2) throw Error(ErrorKind::InvalidArgument, "perplexity window (-c/--ctx-size) must be at least 2 tokens");
  if (tokens.size() < 2) throw Error(ErrorKind::InvalidArgument, "text has fewer than 2 tokens");
  PerplexityResult r;
  r.tokens = int64_t(tokens.size());
  double nll = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t at = 0; at + 1 < tokens.size(); at += size_t(window)) {
    const size_t n = std::min(size_t(window), tokens.size() - at);
    const PerplexityResult w =
        perplexity_stream(engine, std::vector<Token>(tokens.begin() + long(at), tokens.begin() + long(at + n)), b);
    nll += w.mean_nll * double(w.scored);
    r.scored += w.scored;
    ++r.windows;
  }
  r.tokens_per_s = double(r.tokens) / std::max(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1e-9);
  r.mean_nll = nll / double(r.scored);
  r.perplexity = std::exp(r.mean_nll);
  return r;
}

// --state: the text (tokenized without BOS) scored as the continuation of the state, each token
// predicted from the state's cache and the text before it (perplexity_after). The context holds
// the state and the text; a budgeted state keeps its budget and evicts as the text is fed.
int perplexity_of_state(const PerplexityArgs& a, bool ctx_given) {
  if (a.stream) throw Error(ErrorKind::InvalidArgument, "--stream does not apply with --state (the text continues the state)");
  const State state = load_state_file(a.state, a.level);
  const KvBudget budget = budget_for_state(a.budget, state.book, a.state);
  const std::string text = read_text_file(a.file);
  Loaded l = load_model(a.model);
  const std::vector<Token> tokens = l.model->tokenizer().encode(text, false, false);
  if (tokens.empty()) throw Error(ErrorKind::InvalidArgument, a.file + ": the text has no tokens to score");
  ModelOptions o = a.model;
  if (!ctx_given) o.ctx_size = 0;
  const int64_t fed = int64_t(tokens.size()) - 1;  // the last token is only predicted
  if (budget.enabled())
    start_budgeted_engine(l, o, budget, state.kv_entries(), state.size(), false, "state and text");
  else
    start_engine(l, o, state.kv_entries() + fed, state.kv_entries() + fed, "state and text");
  const PerplexityResult r = perplexity_after(*l.engine, state, tokens);
  if (a.json) {
    nlohmann::json j = {{"perplexity", r.perplexity}, {"mean_nll", r.mean_nll}, {"tokens", r.tokens},
                        {"scored_tokens", r.scored}, {"state", a.state}, {"state_tokens", state.size()},
                        {"level", a.level}, {"n_ctx", l.engine->n_ctx()}, {"tokens_per_s", r.tokens_per_s}};
    if (budget.enabled()) add_budget_json(j, budget, state.kv_entries());
    print_json(j);
  } else {
    std::printf("perplexity %.4f over %lld tokens continuing %s (%lld tokens; %.1f tokens/s)\n", r.perplexity,
                (long long)r.tokens, a.state.c_str(), (long long)state.size(), r.tokens_per_s);
  }
  return 0;
}
}  // namespace

Command add_perplexity(CLI::App& app) {
  auto a = std::make_shared<PerplexityArgs>();
  a->model.ctx_size = 512;
  CLI::App* sub = app.add_subcommand("perplexity", "perplexity of a text file");
  sub->add_option("-f,--file", a->file, "text file ('-': stdin)")->required();
  sub->add_flag("--json", a->json, "print one JSON object");
  sub->add_flag("--stream", a->stream,
                "score the whole text as one stream, each token with the cache of everything before it "
                "(with --kv-budget: the budgeted cache, as StreamingLLM evaluates)");
  add_model_options(*sub, a->model);
  CLI::Option* ctx = add_ctx_options(*sub, a->model, "window size in tokens, also the KV cache size (not with --stream)");
  ctx->capture_default_str();
  add_budget_options(*sub, a->budget);
  sub->add_option("--state", a->state,
                  "score the text as the continuation of this state (.kvs or .kvz): every token of the text "
                  "(tokenized without BOS) predicted from the state's cache plus the text before it");
  add_load_level_option(*sub, a->level);
  return [a, ctx]() {
    if (!a->state.empty()) return perplexity_of_state(*a, ctx->count() > 0);
    if (a->level != 0) throw Error(ErrorKind::InvalidArgument, "--level applies to a .kvz --state");
    const KvBudget budget = budget_from_flags(a->budget);
    if (budget.policy == EvictionPolicy::SnapKV && budget.enabled())
      throw Error(ErrorKind::InvalidArgument,
                  "--kv-policy snapkv selects once when a prompt ends; perplexity has no prompt end "
                  "(choose another --kv-policy)");
    if (a->stream && ctx->count() > 0)
      throw Error(ErrorKind::InvalidArgument, "-c/--ctx-size sets the window, which --stream does not use");
    const std::string text = read_text_file(a->file);
    Loaded l = load_model(a->model);
    const std::vector<Token> tokens = l.model->tokenizer().encode(text, true, false);
    const int64_t fed = std::max<int64_t>(int64_t(tokens.size()) - 1, 1);  // the last token is only predicted
    int64_t window = a->model.ctx_size;
    PerplexityResult r;
    if (a->stream) {
      window = int64_t(tokens.size());
      ModelOptions o = a->model;
      o.ctx_size = 0;
      if (budget.enabled())
        start_budgeted_engine(l, o, budget, 0, fed, false, "text");
      else
        start_engine(l, o, fed, fed, "text");
      r = perplexity_stream(*l.engine, tokens, budget);
    } else if (budget.enabled()) {
      start_budgeted_engine(l, a->model, budget, 0, std::min(window, fed), false, "window");
      r = budgeted_windows(*l.engine, tokens, window, budget);
    } else {
      start_engine(l, a->model, window, 0, "window");
      r = perplexity(*l.engine, tokens, window);
    }
    if (a->json) {
      nlohmann::json j = {{"perplexity", r.perplexity}, {"mean_nll", r.mean_nll}, {"tokens", r.tokens},
                          {"scored_tokens", r.scored}, {"windows", r.windows}, {"ctx", window},
                          {"tokens_per_s", r.tokens_per_s}, {"stream", a->stream}, {"kv_budget", budget.budget},
                          {"kv_policy", budget.enabled() ? nlohmann::json(to_string(budget.policy)) : nlohmann::json()}};
      if (budget.enabled()) j["kv_settings"] = describe(budget);
      print_json(j);
    } else {
      const std::string how = budget.enabled() ? ", kv " + describe(budget) : "";
      if (a->stream)
        std::printf("perplexity %.4f over %lld tokens (one stream%s, %.1f tokens/s)\n", r.perplexity,
                    (long long)r.tokens, how.c_str(), r.tokens_per_s);
      else
        std::printf("perplexity %.4f over %lld tokens (%lld windows of %lld%s, %.1f tokens/s)\n", r.perplexity,
                    (long long)r.tokens, (long long)r.windows, (long long)window, how.c_str(), r.tokens_per_s);
    }
    return 0;
  };
}

}  // namespace kvstash::cli
