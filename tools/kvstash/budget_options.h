// The KV budget flags (--kv-budget and its settings) shared by run, prefill, generate and
// perplexity, and the engine a budgeted command runs on.
#pragma once
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common.h"
#include "kvstash/kv_budget.h"
#include "kvstash/kv_cache.h"

namespace kvstash::cli {

struct BudgetFlags {
  KvBudget b;  // the numeric settings as parsed (the names below are parsed by budget_from_flags)
  std::string policy = "h2o", summary = "none", positions = "original";
  CLI::Option* budget = nullptr;
  // Every other --kv-* / --snapkv-* option, in the order they are listed in --help.
  std::vector<CLI::Option*> settings;
};

// --kv-budget, --kv-policy, --kv-interval, --kv-sinks, --kv-recent, --kv-normalize, --kv-summary,
// --kv-positions, --snapkv-window, --snapkv-pool.
void add_budget_options(CLI::App& app, BudgetFlags& f);

// The budget the flags ask for: disabled when no flag is given. Throws InvalidArgument for a
// setting without --kv-budget, a setting that does not apply to the policy (--kv-sinks without
// --kv-policy sinks, ...) and anything validate(KvBudget) refuses.
KvBudget budget_from_flags(const BudgetFlags& f);

// The budget a saved state continues with: its own. Throws InvalidArgument when flags are given
// for a state made without a budget (a full cache cannot become budgeted after the fact) or when a
// flag names another setting than the state's. `book` is the state's (nullopt: unbudgeted).
KvBudget budget_for_state(const BudgetFlags& f, const std::optional<EvictionBook>& book, const std::string& path);

// Starts the engine for budgeted sequences: a context (slots per sequence) of budget + interval —
// or `held` where more must be held at once (SnapKV holds the whole prompt until it ends) — and a
// pool with room for a fork of one when `forks`. Returns the most tokens a stream may reach: -c if
// given; else with original positions the training context (unlimited with --ctx-beyond-training),
// with contiguous positions unlimited (-1). Throws InvalidArgument when the slots, or -c with
// original positions, go beyond the training context without --ctx-beyond-training, and
// ResourceExhausted when `stream` (tokens the work starts with) exceeds -c.
int64_t start_budgeted_engine(Loaded& l, const ModelOptions& o, const KvBudget& b, int64_t held, int64_t stream,
                              bool forks, const std::string& what);

// -n for a budgeted stream that already holds `stream` tokens, capped by `limit` (from
// start_budgeted_engine; -1: unlimited) as an unbudgeted context caps it: the last generated token
// is never processed, so limit - stream + 1 tokens at most. Sets *capped when the limit cut it.
int capped_n_predict(int n_predict, int64_t stream, int64_t limit, bool* capped);

// The budget in a --json object: kv_budget, kv_policy, kv_settings (describe()), kv_slots (cache
// entries per layer and KV head at the end; left out for slots < 0).
void add_budget_json(nlohmann::json& j, const KvBudget& b, int64_t slots = -1);

}  // namespace kvstash::cli
