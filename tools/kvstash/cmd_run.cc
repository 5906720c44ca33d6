// kvstash run: generate text from a prompt, streaming it (or one JSON object with --json).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "budget_options.h"
#include "cache_options.h"
#include "commands.h"
#include "common.h"
#include "kvstash/error.h"
#include "kvstash/prefix.h"
#include "text_input.h"

namespace kvstash::cli {

namespace {
struct RunArgs {
  ModelOptions model;
  GenerationArgs g;
  BudgetFlags budget;
  CacheFlags cache;
  std::string prompt, file;
  bool chat = false;
  bool json = false;
};

std::string prompt_text(const Model& m, const std::string& prompt, bool chat) {
  return chat ? format_chat(detect_chat_template(m.gguf()), {{"user", prompt}}, true) : prompt;
}
}  // namespace

Command add_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* sub = app.add_subcommand("run", "generate text from a prompt");
  auto* prompt = sub->add_option("-p,--prompt", a->prompt, "prompt text (special-token text such as <|im_start|> is parsed)");
  auto* file = sub->add_option("-f,--file", a->file, "read the prompt from a text file ('-': stdin)");
  file->excludes(prompt);
  sub->add_flag("--chat", a->chat, "wrap the prompt in the model's chat template as a user message");
  sub->add_flag("--json", a->json, "print one JSON object instead of streaming text");
  add_generation_options(*sub, a->g);
  add_model_options(*sub, a->model);
  add_ctx_options(*sub, a->model,
                  "KV cache size in tokens (default: prompt + -n, up to the training context); with --kv-budget "
                  "the most tokens the stream may reach (default: the training context with original positions, "
                  "unlimited with contiguous ones)");
  add_budget_options(*sub, a->budget);
  add_cache_options(*sub, a->cache);
  return [a, prompt, file]() {
    if (prompt->count() == 0 && file->count() == 0) throw Error(ErrorKind::InvalidArgument, "run needs --prompt or --file");
    resolve(a->g);
    const KvBudget budget = budget_from_flags(a->budget);
    const std::string text = file->count() ? read_text_file(a->file) : a->prompt;
    const PrefixCacheOptions cache_opts = cache_options(a->cache);
    std::unique_ptr<ChunkStore> store = open_store(a->cache);
    Loaded l = load_model(a->model);
    const std::vector<Token> tokens = prompt_tokens(l.model->tokenizer(), prompt_text(*l.model, text, a->chat));
    const int64_t n_prompt = int64_t(tokens.size());
    GenerateOptions gen = a->g.gen;
    bool capped = false;
    if (budget.enabled()) {
      // The cache holds budget + interval entries (SnapKV: the whole prompt until it ends); the
      // stream itself may run on, up to the limit of its positions.
      const int64_t held = budget.policy == EvictionPolicy::SnapKV ? n_prompt : 0;
      const int64_t limit = start_budgeted_engine(l, a->model, budget, held, n_prompt, false, "prompt");
      gen.n_predict = capped_n_predict(gen.n_predict, n_prompt, limit, &capped);
    } else {
      const int n = gen.n_predict;
      start_engine(l, a->model, n < 0 ? -1 : n_prompt + n, n_prompt, "prompt");
    }
    std::unique_ptr<PrefixCache> cache = prefix_cache(store.get(), *l.engine, cache_opts, budget);
    Sequence seq = l.engine->new_sequence(budget);
    const CacheLoad load = cache ? cache->load(seq, tokens) : CacheLoad{};
    std::function<void(const std::string&)> print;
    if (!a->json) print = print_now;
    GenerateResult r =
        generate(*l.engine, seq, std::vector<Token>(tokens.begin() + seq.size(), tokens.end()), gen, print);
    r.prompt_tokens = n_prompt;
    r.time_to_first_token_ms += load.ms;
    if (cache) cache->save(seq);
    // The stream's positions ran out, as a full context does without a budget.
    if (capped && r.stop_reason == "length") r.stop_reason = "context";
    if (!a->json) {
      std::printf("\n");
      return 0;
    }
    nlohmann::json j = {{"tokens", r.tokens},
                        {"text", r.text},
                        {"prompt_tokens", r.prompt_tokens},
                        {"stop_reason", r.stop_reason},
                        {"seed", a->g.gen.sampling.seed},
                        {"threads", l.engine->n_threads()},
                        {"n_ctx", l.engine->n_ctx()},
                        {"time_to_first_token_ms", r.time_to_first_token_ms},
                        {"prefill_tokens_per_s", r.prefill_tokens_per_s},
                        {"decode_tokens_per_s", r.decode_tokens_per_s}};
    if (budget.enabled()) add_budget_json(j, budget, seq.size());
    if (cache) add_cache_json(j, load);
    print_json(j);
    return 0;
  };
}

}  // namespace kvstash::cli
