// The KV budget on the command line (--kv-budget and its settings on run, prefill, generate and
// perplexity): bad settings are one-line InvalidArgument errors before any work; a budgeted run
// streams beyond its slots; a saved budgeted state continues with its own settings exactly as a
// run of the whole text would; perplexity --stream with a budget that never evicts is the full
// cache's, bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "test_util.h"

namespace kvstash {
namespace {

using testing::cli_error;
using testing::cli_json;

const int kInvalid = exit_code(ErrorKind::InvalidArgument);

// A file with the corpus's text up to (and including) the last '.' before byte `bytes`.
std::string text_file(const std::string& name, size_t bytes) {
  const std::string& corpus = testing::corpus_text();
  const std::string text = corpus.substr(0, corpus.rfind('.', bytes) + 1);
  const std::string path = testing::temp_path(name);
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(CliBudget, BadSettingsAreOneLineInvalidArgumentBeforeAnyWork) {
  struct Case {
    std::string args, says;
  };
  // A missing model: every one of these must fail on its flags first.
  const std::string m = " --model /nonexistent/model.gguf";
  const Case cases[] = {
      {"run -p hi --kv-budget 0", "--kv-budget must be at least 1, got 0"},
      {"run -p hi --kv-budget -8", "--kv-budget must be at least 1, got -8"},
      {"run -p hi --kv-budget 4 --kv-policy sinks --kv-sinks 4", "must exceed --kv-sinks"},
      {"run -p hi --kv-budget 3 --kv-policy sinks", "must exceed --kv-sinks"},
      {"run -p hi --kv-budget 64 --kv-policy lru", "--kv-policy must be one of window, sinks, h2o, tova, snapkv, fsdc"},
      {"run -p hi --kv-budget 64 --kv-summary median", "--kv-summary must be one of"},
      {"run -p hi --kv-budget 64 --kv-positions relative", "--kv-positions must be one of"},
      {"run -p hi --kv-budget 64 --kv-interval 0", "--kv-interval"},
      {"run -p hi --kv-budget 64 --kv-recent 1.5", "--kv-recent"},
      {"run -p hi --kv-budget 64 --kv-policy snapkv --snapkv-pool 4", "--snapkv-pool"},
      {"run -p hi --kv-budget 16 --kv-policy snapkv", "must exceed --snapkv-window"},
      // Settings without a budget, or for another policy, would be silently ignored.
      {"run -p hi --kv-policy window", "--kv-policy needs --kv-budget"},
      {"run -p hi --kv-normalize", "--kv-normalize needs --kv-budget"},
      {"prefill -p hi -o " + testing::temp_path("never.kvs") + " --kv-interval 8", "--kv-interval needs --kv-budget"},
      {"perplexity -f x.txt --stream --kv-sinks 2", "--kv-sinks needs --kv-budget"},
      {"run -p hi --kv-budget 64 --kv-sinks 2", "--kv-sinks applies to --kv-policy sinks only (the policy is h2o)"},
      {"run -p hi --kv-budget 64 --kv-policy window --snapkv-window 8", "--snapkv-window applies to --kv-policy snapkv"},
      // SnapKV selects when a prompt ends; a perplexity stream never has one.
      {"perplexity -f x.txt --stream --kv-budget 64 --kv-policy snapkv", "perplexity has no prompt end"},
      {"perplexity -f x.txt --kv-budget 64 --kv-policy snapkv", "perplexity has no prompt end"},
      {"perplexity -f x.txt --stream -c 128", "--stream does not use"},
  };
  for (const Case& c : cases) {
    const testing::CliError e = cli_error(c.args + m);
    EXPECT_EQ(e.exit_code, kInvalid) << c.args;
    EXPECT_TRUE(contains(e.line, c.says)) << c.args << "\n" << e.line;
  }
}

// A prefix of some 300 tokens saved with --kv-budget 64 (so it evicted), shared by the tests below.
struct BudgetState {
  std::string text, kvs;
  nlohmann::json prefill;
};
const BudgetState& budget_state() {
  static const BudgetState s = [] {
    BudgetState b;
    b.text = text_file("prefix.txt", 1200);
    b.kvs = testing::temp_path("h2o64.kvs");
    b.prefill = cli_json("prefill -f " + b.text + " -o " + b.kvs + " --kv-budget 64 --json");
    return b;
  }();
  return s;
}

TEST(CliBudget, PrefillSavesABudgetedStateThatInspectShows) {
  const BudgetState& s = budget_state();
  EXPECT_GT(s.prefill["prompt_tokens"].get<int64_t>(), 64 + 32);
  EXPECT_EQ(s.prefill["kv_budget"], 64);
  EXPECT_EQ(s.prefill["kv_policy"], "h2o");
  EXPECT_LE(s.prefill["kv_slots"].get<int64_t>(), 64 + 32);
  const nlohmann::json i = cli_json("inspect " + s.kvs + " --json");
  EXPECT_EQ(i["tokens"], s.prefill["prompt_tokens"]);  // the whole stream it processed
  EXPECT_EQ(i["kv_slots"], s.prefill["kv_slots"]);
  EXPECT_EQ(i["kv_budget"], 64);
  EXPECT_EQ(i["kv_policy"], "h2o");
  EXPECT_TRUE(contains(i["kv_settings"].get<std::string>(), "budget 64, policy h2o, interval 32")) << i["kv_settings"];
  const testing::CommandResult text = testing::run_command(testing::cli() + " inspect " + s.kvs, false);
  EXPECT_EQ(text.exit_code, 0);
  EXPECT_TRUE(contains(text.out, "kv budget         budget 64, policy h2o")) << text.out;
}

TEST(CliBudget, StateSettingsCannotBeChangedOrAdded) {
  const std::string kvs = budget_state().kvs;
  const std::string m = " --model /nonexistent/model.gguf";  // refused before the model is loaded
  for (const char* flags : {"--kv-budget 32", "--kv-policy window", "--kv-interval 16", "--kv-positions contiguous",
                            "--kv-budget 64 --kv-normalize", "--kv-summary mean"}) {
    const testing::CliError e = cli_error("generate --state " + kvs + " -p x " + flags + m);
    EXPECT_EQ(e.exit_code, kInvalid) << flags;
    EXPECT_TRUE(contains(e.line, "from the budget " + kvs + " was made with (budget 64, policy h2o")) << e.line;
    EXPECT_TRUE(contains(e.line, "a state continues with its own settings")) << e.line;
  }
  EXPECT_TRUE(contains(cli_error("generate --state " + kvs + " -p x --kv-policy window --kv-budget 8" + m).line,
                       "--kv-budget, --kv-policy differ"));
  // A setting of another policy than the state's is refused as on run.
  EXPECT_TRUE(contains(cli_error("generate --state " + kvs + " -p x --kv-sinks 4" + m).line,
                       "--kv-sinks applies to --kv-policy sinks only"));
  // A full-cache state cannot be made budgeted after the fact.
  const testing::CliError full = cli_error("generate --state " + testing::shared_state() + " -p x --kv-budget 64" + m);
  EXPECT_EQ(full.exit_code, kInvalid);
  EXPECT_TRUE(contains(full.line, "holds a full cache (made without --kv-budget)")) << full.line;
}

// The state continues as a run of the whole text with the same budget does: same tokens.
TEST(CliBudget, GenerateFromABudgetedStateEqualsRunOnTheWholeText) {
  const BudgetState& s = budget_state();
  const std::string gen = " --temp 0 -n 12 --ignore-eos --json";
  // No continuation text: the state's own last logits; repeating the state's settings is allowed.
  const nlohmann::json g = cli_json("generate --state " + s.kvs + " -p '' --kv-budget 64 --kv-policy h2o" + gen);
  const nlohmann::json r = cli_json("run -f " + s.text + " --kv-budget 64" + gen);
  EXPECT_EQ(g["reused_tokens"], s.prefill["prompt_tokens"]);
  EXPECT_EQ(g["tokens"], r["tokens"]);
  EXPECT_EQ(g["stop_reason"], "length");
  EXPECT_EQ(g["kv_budget"], 64);
  // A continuation that tokenizes cleanly after the prefix (it ends with '.').
  const std::string more = " And God said";
  const nlohmann::json g2 = cli_json("generate --state " + s.kvs + " -p '" + more + "'" + gen);
  const std::string whole = testing::temp_path("whole.txt");
  {
    std::ifstream in(s.text, std::ios::binary);
    std::ofstream(whole, std::ios::binary) << in.rdbuf() << more;
  }
  const nlohmann::json r2 = cli_json("run -f " + whole + " --kv-budget 64" + gen);
  EXPECT_EQ(g2["reused_tokens"], s.prefill["prompt_tokens"]);
  EXPECT_EQ(g2["tokens"], r2["tokens"]);
  EXPECT_EQ(r2["n_ctx"], 64 + 32);  // slots per sequence, not the stream
}

// A run streams on far beyond budget + interval entries, under every policy.
TEST(CliBudget, RunGeneratesBeyondItsSlots) {
  const std::string prompt = " -p 'The three primary colors are' --temp 0 --ignore-eos --json -n 40";
  for (const char* policy : {"window", "sinks", "h2o --kv-normalize", "tova", "fsdc", "snapkv --snapkv-window 4",
                             "h2o --kv-summary mean --kv-positions contiguous"}) {
    const nlohmann::json j = cli_json("run --kv-budget 8 --kv-interval 4 --kv-policy " + std::string(policy) + prompt);
    EXPECT_EQ(j["stop_reason"], "length") << policy;
    EXPECT_EQ(j["tokens"].size(), 40u) << policy;
    EXPECT_EQ(j["n_ctx"], 12) << policy;
    EXPECT_LE(j["kv_slots"].get<int64_t>(), 12) << policy;
  }
}

// With a budget, -c limits the stream's length (its positions), not the cache: the stream stops
// there as a full context does.
TEST(CliBudget, CtxSizeLimitsTheStream) {
  const nlohmann::json j = cli_json("run -p 'Once upon a time' --kv-budget 8 --kv-interval 4 -c 30 -n 100 "
                                    "--temp 0 --ignore-eos --json");
  EXPECT_EQ(j["stop_reason"], "context");
  EXPECT_EQ(j["tokens"].size(), size_t(30 - j["prompt_tokens"].get<int>() + 1));
  // Beyond the training context only with --ctx-beyond-training, as without a budget.
  EXPECT_TRUE(contains(cli_error("run -p hi --kv-budget 8 -c 100000").line, "--ctx-beyond-training"));
}

TEST(CliBudget, PerplexityStreamWithABudgetThatNeverEvictsIsTheFullCaches) {
  const std::string text = text_file("ppl.txt", 700);  // some 170 tokens
  const nlohmann::json full = cli_json("perplexity -f " + text + " --json");  // one window of 512
  const nlohmann::json stream = cli_json("perplexity -f " + text + " --stream --json");
  const nlohmann::json budget = cli_json("perplexity -f " + text + " --stream --kv-budget 256 --kv-interval 16 --json");
  ASSERT_EQ(full["windows"], 1);
  EXPECT_EQ(stream["stream"], true);
  EXPECT_EQ(full["stream"], false);
  EXPECT_EQ(budget["kv_budget"], 256);
  EXPECT_EQ(budget["kv_policy"], "h2o");
  EXPECT_EQ(stream["kv_budget"], 0);
  EXPECT_TRUE(stream["kv_policy"].is_null());
  for (const nlohmann::json* j : {&stream, &budget}) {
    EXPECT_EQ((*j)["tokens"], full["tokens"]);
    EXPECT_EQ((*j)["scored_tokens"], full["scored_tokens"]);
    // Bitwise: the same logits (batch invariance) summed in the same order.
    EXPECT_EQ((*j)["perplexity"].get<double>(), full["perplexity"].get<double>());
    EXPECT_EQ((*j)["mean_nll"].get<double>(), full["mean_nll"].get<double>());
  }
  // A budget that evicts changes the result, but not wildly on this text.
  const nlohmann::json small =
      cli_json("perplexity -f " + text + " --stream --kv-budget 32 --kv-interval 16 --kv-policy sinks --json");
  const double p = small["perplexity"].get<double>(), f = full["perplexity"].get<double>();
  EXPECT_TRUE(std::isfinite(p));
  EXPECT_NE(p, f);
  EXPECT_LT(p, 4 * f);
  // Windows with a budget: each window from an empty budgeted sequence; no eviction -> the same
  // numbers up to the rounding of combining the windows.
  const nlohmann::json w = cli_json("perplexity -f " + text + " -c 64 --json");
  const nlohmann::json wb = cli_json("perplexity -f " + text + " -c 64 --kv-budget 64 --kv-interval 8 --json");
  EXPECT_EQ(wb["windows"], w["windows"]);
  EXPECT_EQ(wb["scored_tokens"], w["scored_tokens"]);
  EXPECT_NEAR(wb["mean_nll"].get<double>(), w["mean_nll"].get<double>(), 1e-12);
}

}  // namespace
}  // namespace kvstash
