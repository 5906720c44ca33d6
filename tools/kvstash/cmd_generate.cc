// kvstash generate: load a saved state and generate one continuation per --prompt.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "budget_options.h"
#include "cache_options.h"
#include "commands.h"
#include "common.h"
#include "kvstash/prefix.h"

namespace kvstash::cli {

namespace {
struct GenerateArgs {
  ModelOptions model;
  GenerationArgs g;
  BudgetFlags budget;
  CacheFlags cache;
  std::string state;
  int level = 0;
  std::vector<std::string> prompts;
  bool chat = false;
  bool json = false;
};

// Context for the longest continuation: the state's own, or its tokens + prompt + n if more. The
// prompt is counted alone; a BPE merge across the boundary changes that by a token at most.
int64_t wanted_context(const State& s, const Tokenizer& tok, const std::vector<std::string>& prompts, int n) {
  if (n < 0) return -1;
  size_t longest = 0;
  for (const std::string& p : prompts) longest = std::max(longest, tok.encode(p, false, true).size());
  return std::max<int64_t>(s.n_ctx, s.size() + int64_t(longest) + 1 + n);
}
}  // namespace

Command add_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* sub = app.add_subcommand(
      "generate",
      "continue a saved state; one continuation per --prompt. Plain-text output: each prompt and its "
      "continuation, preceded by a line '--- prompt I/N' when there are several prompts");
  sub->add_option("--state", a->state, "state file (.kvs or .kvz) from prefill or compress")->required();
  add_load_level_option(*sub, a->level);
  sub->add_option("-p,--prompt", a->prompts, "continuation text appended to the prefix (repeatable)")->required();
  sub->add_flag("--chat", a->chat, "append each prompt as a user message in the model's chat template");
  sub->add_flag("--json", a->json, "one JSON object per continuation, one per line");
  add_generation_options(*sub, a->g);
  add_model_options(*sub, a->model);
  add_ctx_options(*sub, a->model,
                  "KV cache size in tokens (default: the state's, or its tokens + longest prompt + -n if more; "
                  "up to the training context); for a state with a KV budget the most tokens the stream may reach");
  add_budget_options(*sub, a->budget);
  add_cache_options(*sub, a->cache);
  return [a]() {
    resolve(a->g);
    const PrefixCacheOptions cache_opts = cache_options(a->cache);
    std::unique_ptr<ChunkStore> store = open_store(a->cache);
    const auto t0 = std::chrono::steady_clock::now();
    const State state = load_state_file(a->state, a->level);
    // A budgeted state continues with its own settings; flags may only repeat them.
    const KvBudget budget = budget_for_state(a->budget, state.book, a->state);
    Loaded l = load_model(a->model);
    std::vector<std::string> texts = a->prompts;
    if (a->chat) {
      const ChatTemplate tmpl = detect_chat_template(l.model->gguf());
      for (std::string& t : texts) t = format_chat(tmpl, {{"user", t}}, true);
    }
    int64_t limit = -1;  // budgeted: the most tokens a stream may reach (-1: unlimited)
    if (budget.enabled()) {
      // Every continuation runs in a fork of the restored state. SnapKV made its one selection
      // when the prefix ended, so nothing more than budget + interval entries is ever held.
      size_t longest = 0;
      for (const std::string& p : texts) longest = std::max(longest, l.model->tokenizer().encode(p, false, true).size());
      limit = start_budgeted_engine(l, a->model, budget, state.kv_entries(), state.size() + int64_t(longest), true,
                                    "state and prompt");
    } else {
      start_engine(l, a->model, wanted_context(state, l.model->tokenizer(), texts, a->g.gen.n_predict), state.size(),
                   "state");
    }
    LoadedPrefix prefix(*l.engine, state);
    std::unique_ptr<PrefixCache> cache = prefix_cache(store.get(), *l.engine, cache_opts, budget);
    prefix.use_cache(cache.get());
    const double load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    for (size_t i = 0; i < texts.size(); ++i) {
      std::function<void(const std::string&)> print;
      if (!a->json) {
        if (texts.size() > 1) std::printf("--- prompt %zu/%zu\n", i + 1, texts.size());
        print = print_now;
        print_now(a->chat ? a->prompts[i] + "\n" : a->prompts[i]);  // a chat answer starts on its own line
      }
      GenerateOptions gen = a->g.gen;
      bool capped = false;
      if (limit >= 0) {
        const int64_t stream = int64_t(prompt_tokens(l.model->tokenizer(), prefix.text() + texts[i]).size());
        gen.n_predict = capped_n_predict(gen.n_predict, stream, limit, &capped);
      }
      Continuation c = prefix.generate(texts[i], gen, print);
      if (capped && c.result.stop_reason == "length") c.result.stop_reason = "context";  // the positions ran out
      if (!a->json) {
        std::printf("\n");
        continue;
      }
      const GenerateResult& r = c.result;
      nlohmann::json j = {{"tokens", r.tokens}, {"text", r.text}, {"prompt_tokens", r.prompt_tokens},
                          {"reused_tokens", c.reused_tokens}, {"stop_reason", r.stop_reason},
                          {"seed", a->g.gen.sampling.seed}, {"threads", l.engine->n_threads()},
                          {"n_ctx", l.engine->n_ctx()}, {"load_ms", load_ms},
                          {"time_to_first_token_ms", r.time_to_first_token_ms},
                          {"prefill_tokens_per_s", r.prefill_tokens_per_s},
                          {"decode_tokens_per_s", r.decode_tokens_per_s}};
      if (budget.enabled()) add_budget_json(j, budget);
      if (cache) add_cache_json(j, c.cache);
      print_json(j);
      std::fflush(stdout);
    }
    return 0;
  };
}

}  // namespace kvstash::cli
