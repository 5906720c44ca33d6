#include <cmath>
#include <sstream>

#include "kvstash/error.h"
#include "kvstash/kv_budget.h"
#include "kvstash/kv_cache.h"

namespace kvstash {

namespace {
[[noreturn]] void bad(const std::string& what) { throw Error(ErrorKind::InvalidArgument, what); }

template <class E, size_t N>
E parse(const std::string& s, const char* (&names)[N], const char* flag) {
  std::string all;
  for (size_t i = 0; i < N; ++i) {
    if (s == names[i]) return E(i);
    all += (i ? ", " : "") + std::string(names[i]);
  }
  bad(std::string(flag) + " must be one of " + all + ", got '" + s + "'");
}

const char* kPolicies[] = {"window", "sinks", "h2o", "tova", "snapkv", "fsdc"};
const char* kSummaries[] = {"none", "sum", "mean"};
const char* kPositions[] = {"original", "contiguous"};
}  // namespace

void validate(const KvBudget& b) {
  if (b.budget <= 0) bad("--kv-budget must be at least 1, got " + std::to_string(b.budget));
  if (b.interval <= 0 || b.interval > KvPool::kMaxTokens)
    bad("--kv-interval must be between 1 and " + std::to_string(KvPool::kMaxTokens) + ", got " + std::to_string(b.interval));
  if (b.budget > KvPool::kMaxTokens - b.interval)
    bad("--kv-budget plus --kv-interval must stay within " + std::to_string(KvPool::kMaxTokens) + " entries");
  const int summary = b.summary == SummaryMode::None ? 0 : 1;
  if (b.policy == EvictionPolicy::Sinks && (b.sinks < 0 || b.budget < int64_t(b.sinks) + 1 + summary))
    bad("--kv-budget (" + std::to_string(b.budget) + ") must exceed --kv-sinks (" + std::to_string(b.sinks) + ")" +
        (summary ? " plus the summary entry" : ""));
  if (b.policy == EvictionPolicy::SnapKV) {
    if (b.snapkv_window < 1) bad("--snapkv-window must be at least 1, got " + std::to_string(b.snapkv_window));
    if (b.snapkv_pool < 1 || b.snapkv_pool % 2 == 0 || b.snapkv_pool > 1023)
      bad("--snapkv-pool must be an odd width from 1 to 1023, got " + std::to_string(b.snapkv_pool));
    if (b.budget < int64_t(b.snapkv_window) + 1 + summary)
      bad("--kv-budget (" + std::to_string(b.budget) + ") must exceed --snapkv-window (" +
          std::to_string(b.snapkv_window) + ")" + (summary ? " plus the summary entry" : ""));
  }
  if (!(b.recent >= 0.0 && b.recent <= 1.0)) {
    std::ostringstream o;
    o << "--kv-recent must be between 0 and 1, got " << b.recent;
    bad(o.str());
  }
  if (summary && b.budget < 2) bad("--kv-summary needs a budget of at least 2 (one slot holds the summary)");
}

bool scores_attention(EvictionPolicy p) {
  return p == EvictionPolicy::H2O || p == EvictionPolicy::Tova || p == EvictionPolicy::Fsdc;
}

std::string to_string(EvictionPolicy p) { return kPolicies[int(p)]; }
std::string to_string(SummaryMode m) { return kSummaries[int(m)]; }
std::string to_string(PositionMode m) { return kPositions[int(m)]; }
EvictionPolicy parse_eviction_policy(const std::string& s) { return parse<EvictionPolicy>(s, kPolicies, "--kv-policy"); }
SummaryMode parse_summary_mode(const std::string& s) { return parse<SummaryMode>(s, kSummaries, "--kv-summary"); }
PositionMode parse_position_mode(const std::string& s) { return parse<PositionMode>(s, kPositions, "--kv-positions"); }

std::string describe(const KvBudget& b) {
  if (!b.enabled()) return "full cache";
  std::ostringstream o;
  o << "budget " << b.budget << ", policy " << to_string(b.policy) << ", interval " << b.interval;
  if (b.policy == EvictionPolicy::Sinks) o << ", sinks " << b.sinks;
  if (b.policy == EvictionPolicy::H2O) o << ", recent " << b.recent << (b.normalize ? ", normalized" : "");
  if (b.policy == EvictionPolicy::SnapKV) o << ", window " << b.snapkv_window << ", pool " << b.snapkv_pool;
  if (b.summary != SummaryMode::None) o << ", summary " << to_string(b.summary);
  o << ", positions " << to_string(b.positions);
  return o.str();
}

}  // namespace kvstash
