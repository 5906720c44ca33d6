// kvstash prefill: run a prefix through the model once and save its attention state (.kvs).
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "budget_options.h"
#include "cache_options.h"
#include "commands.h"
#include "common.h"
#include "kvstash/error.h"
#include "kvstash/prefix.h"
#include "progress.h"
#include "text_input.h"

namespace kvstash::cli {

namespace {
struct PrefillArgs {
  ModelOptions model;
  BudgetFlags budget;
  CacheFlags cache;
  std::string file, prompt, out, key_order = "gguf";
  KvzFlags kvz;
  bool json = false;
};
}  // namespace

Command add_prefill(CLI::App& app) {
  auto a = std::make_shared<PrefillArgs>();
  CLI::App* sub = app.add_subcommand("prefill", "process a prefix once and save its attention state");
  auto* file = sub->add_option("-f,--file", a->file, "prefix text file ('-': stdin)");
  auto* prompt = sub->add_option("-p,--prompt", a->prompt, "prefix text");
  file->excludes(prompt);
  sub->add_option("-o,--out", a->out, "state file to write (.kvs, or .kvz: compressed)")->required();
  auto* key_order = sub->add_option("--key-order", a->key_order,
                                    "order of each key vector in a .kvs: gguf (default) or hf (Hugging Face's rotate-half)");
  add_kvz_flags(*sub, a->kvz);
  sub->add_flag("--json", a->json, "print prompt_tokens, n_ctx, bytes, seconds, tokens_per_s as JSON");
  add_model_options(*sub, a->model);
  add_ctx_options(*sub, a->model,
                  "KV cache size in tokens, recorded in the state (default: the prefix, up to the training context); "
                  "with --kv-budget the most tokens the stream may reach");
  add_budget_options(*sub, a->budget);
  add_cache_options(*sub, a->cache);
  return [a, file, prompt, key_order]() {
    if (file->count() == 0 && prompt->count() == 0) throw Error(ErrorKind::InvalidArgument, "prefill needs --file or --prompt");
    const KvBudget budget = budget_from_flags(a->budget);
    // A path that cannot be written fails here, before any work; so do .kvz flags for a .kvs.
    const bool kvz = has_kvz_extension(a->out);
    if (!kvz && (!a->kvz.levels.empty() || a->kvz.lossless || a->kvz.chunk->count() > 0))
      throw Error(ErrorKind::InvalidArgument, "--level, --lossless and --chunk-tokens apply to a .kvz output only");
    if (a->key_order != "gguf" && a->key_order != "hf")
      throw Error(ErrorKind::InvalidArgument, "--key-order must be gguf or hf, got '" + a->key_order + "'");
    if (kvz && key_order->count() > 0) throw Error(ErrorKind::InvalidArgument, "--key-order applies to a .kvs output only");
    StateSaveOptions save;
    save.key_order = a->key_order == "hf" ? KeyOrder::HuggingFace : KeyOrder::Gguf;
    const KvzOptions kvz_opts = kvz ? kvz_options(a->kvz) : KvzOptions{};
    std::unique_ptr<StateOutput> out_kvs = kvz ? nullptr : std::make_unique<StateOutput>(a->out);
    std::unique_ptr<KvzOutput> out_kvz = kvz ? std::make_unique<KvzOutput>(a->out) : nullptr;
    const std::string text = file->count() ? read_text_file(a->file) : a->prompt;
    const PrefixCacheOptions cache_opts = cache_options(a->cache);
    std::unique_ptr<ChunkStore> store = open_store(a->cache);
    Loaded l = load_model(a->model);
    const std::vector<Token> tokens = prompt_tokens(l.model->tokenizer(), text);
    const int64_t n = int64_t(tokens.size());
    if (budget.enabled())  // the state keeps budget + interval entries at most (SnapKV: the prefix until it ends)
      start_budgeted_engine(l, a->model, budget, budget.policy == EvictionPolicy::SnapKV ? n : 0, n, false, "prefix");
    else
      start_engine(l, a->model, n, n, "prefix");
    Progress bar;
    const auto t0 = std::chrono::steady_clock::now();
    const auto progress = [&](int64_t done, int64_t total) { bar.update(done, total); };
    std::unique_ptr<PrefixCache> cache = prefix_cache(store.get(), *l.engine, cache_opts, budget);
    CacheLoad load;
    const State state = process_prefix(*l.engine, tokens, progress, budget, cache.get(), &load);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (kvz) {
      KvzOptions o = kvz_opts;
      o.threads = l.threads.get();
      out_kvz->commit(state, o);
    } else {
      out_kvs->commit(state, save);
    }
    const int64_t bytes = file_size(a->out);
    if (a->json) {
      nlohmann::json j = {{"prompt_tokens", state.size()}, {"n_ctx", state.n_ctx}, {"bytes", bytes},
                          {"seconds", seconds}, {"tokens_per_s", double(state.size()) / seconds}, {"out", a->out}};
      if (budget.enabled()) add_budget_json(j, budget, state.kv_entries());
      if (cache) add_cache_json(j, load);
      print_json(j);
    } else {
      std::printf("%s: %lld tokens, %lld bytes, %.2f s (%.1f tokens/s)\n", a->out.c_str(),
                  (long long)state.size(), (long long)bytes, seconds, double(state.size()) / seconds);
      if (budget.enabled())
        std::printf("  kv budget: %s; %lld entries per layer and KV head kept\n", describe(budget).c_str(),
                    (long long)state.kv_entries());
    }
    return 0;
  };
}

}  // namespace kvstash::cli
