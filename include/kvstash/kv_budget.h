// A KV budget: a sequence that keeps at most `budget` entries per layer and KV head, evicting the
// least useful ones by a policy (docs/eviction.md). Eviction happens at points fixed by the token
// count — whenever a head holds budget + interval entries it drops `interval` of them — so results
// depend on the settings only, never on how the input was split into calls or on the thread count.
#pragma once
#include <cstdint>
#include <string>

namespace kvstash {

enum class EvictionPolicy {
  Window,  // the most recent entries
  Sinks,   // StreamingLLM: the first `sinks` entries + the most recent
  H2O,     // heavy hitters (attention accumulated over every query so far) + a recent window
  Tova,    // the entries the last query attends to most
  SnapKV,  // one selection when a prefill ends (observation window, pooled scores); then a window
  Fsdc,    // the seed's FixedSizeDynamicCache: attention of the queries since the last eviction
};
enum class SummaryMode { None, Sum, Mean };  // the seed's "include skipped" entry
enum class PositionMode { Original, Contiguous };

struct KvBudget {
  int64_t budget = 0;  // entries kept per layer and KV head; 0: no budget (the full cache)
  EvictionPolicy policy = EvictionPolicy::H2O;
  int64_t interval = 32;  // entries added between two evictions
  int sinks = 4;          // Sinks: leading entries never evicted
  double recent = 0.5;    // H2O: share of the budget kept for the most recent entries
  bool normalize = false; // H2O: scores divided by the number of queries that saw each entry (ZipCache)
  SummaryMode summary = SummaryMode::None;  // one slot of the budget holds the evicted entries' sum or mean
  PositionMode positions = PositionMode::Original;
  int snapkv_window = 32;  // SnapKV: observation window (the last prompt tokens)
  int snapkv_pool = 7;     // SnapKV: max-pooling width over neighbouring entries (odd)

  bool enabled() const { return budget != 0; }  // a negative budget is set, and refused by validate
  bool operator==(const KvBudget&) const = default;
};

// Throws InvalidArgument naming the flag at fault (--kv-budget, --kv-sinks, ...).
void validate(const KvBudget& b);
// True when the policy scores entries by attention (the engine then gathers it).
bool scores_attention(EvictionPolicy p);

// Names as the CLI and the state file spell them; parse_* throw InvalidArgument listing the choices.
std::string to_string(EvictionPolicy p);
std::string to_string(SummaryMode m);
std::string to_string(PositionMode m);
EvictionPolicy parse_eviction_policy(const std::string& s);
SummaryMode parse_summary_mode(const std::string& s);
PositionMode parse_position_mode(const std::string& s);
// One line describing every setting (for messages and `inspect`).
std::string describe(const KvBudget& b);

}  // namespace kvstash
