#include "budget_options.h"

#include <algorithm>
#include <climits>

#include "context.h"
#include "kvstash/error.h"

namespace kvstash::cli {

namespace {
// The settings' flags, in the order of BudgetFlags::settings.
enum Setting { kPolicy, kInterval, kSinks, kRecent, kNormalize, kSummary, kPositions, kSnapWindow, kSnapPool, kCount };
const char* const kNames[kCount] = {"--kv-policy",    "--kv-interval",  "--kv-sinks",
                                    "--kv-recent",    "--kv-normalize", "--kv-summary",
                                    "--kv-positions", "--snapkv-window", "--snapkv-pool"};

bool given(const CLI::Option* o) { return o && o->count() > 0; }

// The policy a setting belongs to, if it belongs to one.
std::optional<EvictionPolicy> owner(int s) {
  switch (s) {
    case kSinks: return EvictionPolicy::Sinks;
    case kRecent:
    case kNormalize: return EvictionPolicy::H2O;
    case kSnapWindow:
    case kSnapPool: return EvictionPolicy::SnapKV;
    default: return std::nullopt;
  }
}

// The flags' values over `base` (only the flags given change it).
KvBudget apply(const BudgetFlags& f, KvBudget base) {
  if (given(f.budget)) base.budget = f.b.budget;
  const auto& s = f.settings;
  if (given(s[kPolicy])) base.policy = parse_eviction_policy(f.policy);
  if (given(s[kInterval])) base.interval = f.b.interval;
  if (given(s[kSinks])) base.sinks = f.b.sinks;
  if (given(s[kRecent])) base.recent = f.b.recent;
  if (given(s[kNormalize])) base.normalize = f.b.normalize;
  if (given(s[kSummary])) base.summary = parse_summary_mode(f.summary);
  if (given(s[kPositions])) base.positions = parse_position_mode(f.positions);
  if (given(s[kSnapWindow])) base.snapkv_window = f.b.snapkv_window;
  if (given(s[kSnapPool])) base.snapkv_pool = f.b.snapkv_pool;
  return base;
}

bool same(int s, const KvBudget& a, const KvBudget& b) {
  switch (s) {
    case kPolicy: return a.policy == b.policy;
    case kInterval: return a.interval == b.interval;
    case kSinks: return a.sinks == b.sinks;
    case kRecent: return a.recent == b.recent;
    case kNormalize: return a.normalize == b.normalize;
    case kSummary: return a.summary == b.summary;
    case kPositions: return a.positions == b.positions;
    case kSnapWindow: return a.snapkv_window == b.snapkv_window;
    case kSnapPool: return a.snapkv_pool == b.snapkv_pool;
  }
  return true;
}

// A setting given for another policy is a mistake (it would be ignored).
void check_applies(const BudgetFlags& f, EvictionPolicy p) {
  for (int s = 0; s < kCount; ++s) {
    const std::optional<EvictionPolicy> o = owner(s);
    if (given(f.settings[size_t(s)]) && o && *o != p)
      throw Error(ErrorKind::InvalidArgument, std::string(kNames[s]) + " applies to --kv-policy " + to_string(*o) +
                                                  " only (the policy is " + to_string(p) + ")");
  }
}

bool any_given(const BudgetFlags& f) {
  return given(f.budget) || std::any_of(f.settings.begin(), f.settings.end(), given);
}

std::string first_setting_given(const BudgetFlags& f) {
  for (int s = 0; s < kCount; ++s)
    if (given(f.settings[size_t(s)])) return kNames[s];
  return "";
}

int64_t round_up(int64_t n, int64_t to) { return (n + to - 1) / to * to; }
}  // namespace

void add_budget_options(CLI::App& app, BudgetFlags& f) {
  const std::string g = "KV budget";
  f.budget = app.add_option("--kv-budget", f.b.budget,
                            "keep at most N cache entries per layer and KV head, evicting by --kv-policy "
                            "(StreamingLLM, H2O, TOVA, SnapKV); the other --kv-* flags need it")
                 ->group(g);
  f.settings.assign(kCount, nullptr);
  f.settings[kPolicy] = app.add_option("--kv-policy", f.policy, "eviction policy: window, sinks, h2o, tova, snapkv, fsdc")
                            ->capture_default_str()->group(g);
  f.settings[kInterval] = app.add_option("--kv-interval", f.b.interval, "entries added between two evictions")
                              ->capture_default_str()->group(g);
  f.settings[kSinks] = app.add_option("--kv-sinks", f.b.sinks, "sinks: leading entries never evicted")
                           ->capture_default_str()->group(g);
  f.settings[kRecent] = app.add_option("--kv-recent", f.b.recent, "h2o: share of the budget kept for recent entries")
                            ->capture_default_str()->group(g);
  f.settings[kNormalize] = app.add_flag("--kv-normalize", f.b.normalize,
                                        "h2o: divide scores by the number of queries that saw each entry")
                               ->group(g);
  f.settings[kSummary] = app.add_option("--kv-summary", f.summary,
                                        "one slot of the budget holds the evicted entries' sum or mean: none, sum, mean")
                             ->capture_default_str()->group(g);
  f.settings[kPositions] = app.add_option("--kv-positions", f.positions,
                                          "original (RoPE positions of the stream; limited by the training context) "
                                          "or contiguous (the cache's slots; unlimited streams)")
                               ->capture_default_str()->group(g);
  f.settings[kSnapWindow] = app.add_option("--snapkv-window", f.b.snapkv_window,
                                           "snapkv: observation window (the last prompt tokens)")
                                ->capture_default_str()->group(g);
  f.settings[kSnapPool] = app.add_option("--snapkv-pool", f.b.snapkv_pool, "snapkv: pooling width (odd)")
                              ->capture_default_str()->group(g);
}

KvBudget budget_from_flags(const BudgetFlags& f) {
  if (!given(f.budget)) {
    const std::string s = first_setting_given(f);
    if (!s.empty()) throw Error(ErrorKind::InvalidArgument, s + " needs --kv-budget");
    return {};
  }
  if (f.b.budget <= 0)
    throw Error(ErrorKind::InvalidArgument, "--kv-budget must be at least 1, got " + std::to_string(f.b.budget));
  const KvBudget b = apply(f, KvBudget{});
  check_applies(f, b.policy);
  validate(b);
  return b;
}

KvBudget budget_for_state(const BudgetFlags& f, const std::optional<EvictionBook>& book, const std::string& path) {
  if (!any_given(f)) return book ? book->budget : KvBudget{};
  if (!book)
    throw Error(ErrorKind::InvalidArgument,
                path + " holds a full cache (made without --kv-budget); a budget cannot be applied to it afterwards "
                       "(prefill the text again with --kv-budget)");
  const KvBudget& own = book->budget;
  const KvBudget asked = apply(f, own);  // parses the names (InvalidArgument for an unknown one)
  std::string differ;
  if (given(f.budget) && asked.budget != own.budget) differ = "--kv-budget";
  for (int s = 0; s < kCount; ++s)
    if (given(f.settings[size_t(s)]) && !same(s, asked, own)) differ += (differ.empty() ? "" : ", ") + std::string(kNames[s]);
  if (!differ.empty())
    throw Error(ErrorKind::InvalidArgument, differ + " differ" + (differ.find(',') == std::string::npos ? "s" : "") +
                                                " from the budget " + path + " was made with (" + describe(own) +
                                                "); a state continues with its own settings (leave out the --kv-* flags)");
  check_applies(f, own.policy);
  return own;
}

int64_t start_budgeted_engine(Loaded& l, const ModelOptions& o, const KvBudget& b, int64_t held, int64_t stream,
                              bool forks, const std::string& what) {
  const int64_t train = l.model->config().n_ctx_train;
  const std::string train_s = std::to_string(train);
  const int64_t slots = std::max(b.budget + b.interval, held);
  if (slots > train && !o.ctx_beyond_training) {
    if (held > b.budget + b.interval)  // SnapKV: the prompt is held whole until it ends
      throw Error(ErrorKind::InvalidArgument, what + " of " + std::to_string(held) +
                                                  " tokens is beyond the model's training context of " + train_s +
                                                  " tokens (snapkv holds it whole; add --ctx-beyond-training to run it anyway)");
    throw Error(ErrorKind::InvalidArgument, "--kv-budget plus --kv-interval (" + std::to_string(slots) +
                                                " entries) is beyond the model's training context of " + train_s +
                                                " tokens (add --ctx-beyond-training to use it anyway)");
  }
  const bool original = b.positions == PositionMode::Original;
  int64_t limit = -1;
  if (o.ctx_size > 0) {
    if (original)  // throws for -c beyond the training context without --ctx-beyond-training
      context_size({.ctx_size = o.ctx_size, .beyond_training = o.ctx_beyond_training, .n_ctx_train = train,
                    .wanted = o.ctx_size, .must_fit = 0, .what = what});
    limit = o.ctx_size;
    if (stream > limit)
      throw Error(ErrorKind::ResourceExhausted, what + " of " + std::to_string(stream) +
                                                    " tokens does not fit the stream limit of " + std::to_string(limit) +
                                                    " tokens (-c/--ctx-size)");
  } else if (original && !o.ctx_beyond_training) {
    limit = train;
    if (stream > limit)
      throw Error(ErrorKind::InvalidArgument,
                  what + " of " + std::to_string(stream) + " tokens is beyond the model's training context of " +
                      train_s + " tokens (add --ctx-beyond-training, or --kv-positions contiguous, to run it anyway)");
  }
  EngineOptions eo;
  eo.n_ctx = slots;
  // A fork shares its parent's blocks until its first eviction, which copies them.
  if (forks) eo.kv_tokens = 2 * round_up(slots, eo.block_tokens) + 2 * eo.block_tokens;
  l.engine = std::make_unique<Engine>(*l.model, *l.threads, eo);
  return limit;
}

int capped_n_predict(int n_predict, int64_t stream, int64_t limit, bool* capped) {
  *capped = false;
  if (limit < 0) return n_predict;
  const int64_t room = std::max<int64_t>(limit - stream + 1, 0);
  if (n_predict >= 0 && n_predict <= room) return n_predict;
  *capped = true;
  return int(std::min<int64_t>(room, INT_MAX));
}

void add_budget_json(nlohmann::json& j, const KvBudget& b, int64_t slots) {
  j["kv_budget"] = b.budget;
  j["kv_policy"] = to_string(b.policy);
  j["kv_settings"] = describe(b);
  if (slots >= 0) j["kv_slots"] = slots;
}

}  // namespace kvstash::cli
