// Typed metadata values and the budgeted state's keys (see kvs_metadata.h).
#include "state/kvs_metadata.h"

#include <charconv>
#include <cmath>
#include <limits>

#include "state/check.h"
#include "state/kvs_format.h"

namespace kvstash::kvs {

void MetadataValues::fail(const std::string& what, ErrorKind kind) const {
  fail_(what, kind);
  throw Error(ErrorKind::Internal, what);  // fail_ must throw; this keeps the promise if it does not
}

const std::string& MetadataValues::string_value(const std::string& key) const {
  const auto it = meta_.find(key);
  if (it == meta_.end()) fail("missing metadata key '" + key + "'");
  return it->second;
}

int64_t MetadataValues::int_value(const std::string& key, int64_t max) const {
  const std::string& s = string_value(key);
  int64_t v = -1;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || s[0] == '-' || r.ec != std::errc() || r.ptr != s.data() + s.size() || v > max)
    fail("invalid metadata " + key + " " + quote(s, 64));
  return v;
}

int64_t MetadataValues::signed_value(const std::string& key, int64_t min, int64_t max) const {
  const std::string& s = string_value(key);
  int64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size() || v < min || v > max)
    fail("invalid metadata " + key + " " + quote(s, 64));
  return v;
}

bool MetadataValues::bool_value(const std::string& key) const {
  const std::string& s = string_value(key);
  if (s != "true" && s != "false") fail("invalid metadata " + key + " " + quote(s, 64) + " (expected true or false)");
  return s == "true";
}

float MetadataValues::float_value(const std::string& key) const {
  const std::string& s = string_value(key);
  float v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || !std::isfinite(v) || !(v > 0))
    fail("invalid metadata " + key + " " + quote(s, 64));
  return v;
}

KvBudget MetadataValues::budget() const {
  static constexpr EvictionPolicy kPolicies[] = {EvictionPolicy::Window, EvictionPolicy::Sinks, EvictionPolicy::H2O,
                                                 EvictionPolicy::Tova, EvictionPolicy::SnapKV, EvictionPolicy::Fsdc};
  static constexpr SummaryMode kSummaries[] = {SummaryMode::None, SummaryMode::Sum, SummaryMode::Mean};
  static constexpr PositionMode kPositions[] = {PositionMode::Original, PositionMode::Contiguous};
  constexpr int64_t kIntMin = std::numeric_limits<int>::min(), kIntMax = std::numeric_limits<int>::max();
  KvBudget b;
  b.policy = enum_value(kBudgetPolicy, kPolicies);
  b.budget = int_value(kBudgetEntries, KvPool::kMaxTokens);
  b.interval = int_value(kBudgetInterval, KvPool::kMaxTokens);
  b.sinks = int(signed_value(kBudgetSinks, kIntMin, kIntMax));
  const std::string& recent = string_value(kBudgetRecent);
  const auto r = std::from_chars(recent.data(), recent.data() + recent.size(), b.recent);
  if (recent.empty() || r.ec != std::errc() || r.ptr != recent.data() + recent.size() || !std::isfinite(b.recent))
    fail(std::string("invalid metadata ") + kBudgetRecent + " " + quote(recent, 64));
  b.normalize = bool_value(kBudgetNormalize);
  b.summary = enum_value(kBudgetSummary, kSummaries);
  b.positions = enum_value(kBudgetPositions, kPositions);
  b.snapkv_window = int(signed_value(kBudgetSnapkvWindow, kIntMin, kIntMax));
  b.snapkv_pool = int(signed_value(kBudgetSnapkvPool, kIntMin, kIntMax));
  return b;
}

MetadataValues::Sizes MetadataValues::read_state(State& s, bool budgeted, KeyOrder* key_order) const {
  StateArch& a = s.arch;
  a.n_layer = int(int_value("n_layer", kMaxStateDim));
  a.n_head = int(int_value("n_head", kMaxStateDim));
  a.n_head_kv = int(int_value("n_head_kv", kMaxStateDim));
  a.head_dim = int(int_value("head_dim", kMaxStateDim));
  a.n_rot = int(int_value("n_rot", kMaxStateDim));
  a.n_vocab = int(int_value("n_vocab", kMaxStateVocab));
  a.rope_base = float_value("rope_base");
  a.rope_linear_scale = float_value("rope_linear_scale");
  Sizes z;
  if (budgeted) {
    s.book.emplace();
    s.book->budget = budget();
    z.slots = uint64_t(int_value(kBookSlots, KvPool::kMaxTokens));
    s.book->pinned = int32_t(int_value(kBookPinned, KvPool::kMaxTokens));
    s.book->has_summary = bool_value(kBookHasSummary);
    s.book->selected = bool_value(kBookSelected);
  }
  // A budgeted state's tokens are the whole stream processed, longer than its cache (up to one per position).
  z.n_tokens = int_value("n_tokens", budgeted ? int64_t(kMaxPosition) : KvPool::kMaxTokens);
  if (!budgeted) z.slots = uint64_t(z.n_tokens);
  s.n_ctx = int_value("n_ctx", KvPool::kMaxTokens);
  if (const std::string& d = string_value("cache_dtype"); d != "f16")
    fail("unsupported cache_dtype " + quote(d, 64) + " (this kvstash reads 'f16')", ErrorKind::NotSupported);
  const std::string& k = string_value("key_order");
  if (key_order && k == kKeyOrderHf) {
    if (a.head_dim % 2 != 0) fail("invalid metadata key_order 'hf' with an odd head_dim " + std::to_string(a.head_dim));
    *key_order = KeyOrder::HuggingFace;
  } else if (k == kKeyOrderGguf) {
    if (key_order) *key_order = KeyOrder::Gguf;
  } else {
    const char* reads = key_order ? " (this kvstash reads 'gguf' and 'hf')" : " (.kvz files hold 'gguf' only)";
    fail("unsupported key_order " + quote(k, 64) + reads, ErrorKind::NotSupported);
  }
  const std::string& fingerprint = string_value("model_fingerprint");
  const std::optional<Fingerprint> fp = Fingerprint::from_hex(fingerprint);
  if (!fp) fail("invalid model_fingerprint " + quote(fingerprint, 64));
  s.model_fingerprint = *fp;
  return z;
}

std::map<std::string, std::string> state_metadata(const State& s, KeyOrder key_order) {
  const StateArch& a = s.arch;
  std::map<std::string, std::string> meta = {
      {"model_fingerprint", s.model_fingerprint.hex()},
      {"n_tokens", std::to_string(s.size())},
      {"n_ctx", std::to_string(s.n_ctx)},
      {"n_layer", std::to_string(a.n_layer)},
      {"n_head", std::to_string(a.n_head)},
      {"n_head_kv", std::to_string(a.n_head_kv)},
      {"head_dim", std::to_string(a.head_dim)},
      {"n_rot", std::to_string(a.n_rot)},
      {"n_vocab", std::to_string(a.n_vocab)},
      {"rope_base", float_text(a.rope_base)},
      {"rope_linear_scale", float_text(a.rope_linear_scale)},
      {"cache_dtype", "f16"},
      {"key_order", key_order == KeyOrder::HuggingFace ? kKeyOrderHf : kKeyOrderGguf},
  };
  if (!s.book) return meta;
  // A budgeted state (docs/format-kvs.md, "Budgeted states").
  const KvBudget& b = s.book->budget;
  auto flag = [](bool x) { return std::string(x ? "true" : "false"); };
  meta[kBudgetPolicy] = to_string(b.policy);
  meta[kBudgetEntries] = std::to_string(b.budget);
  meta[kBudgetInterval] = std::to_string(b.interval);
  meta[kBudgetSinks] = std::to_string(b.sinks);
  meta[kBudgetRecent] = double_text(b.recent);
  meta[kBudgetNormalize] = flag(b.normalize);
  meta[kBudgetSummary] = to_string(b.summary);
  meta[kBudgetPositions] = to_string(b.positions);
  meta[kBudgetSnapkvWindow] = std::to_string(b.snapkv_window);
  meta[kBudgetSnapkvPool] = std::to_string(b.snapkv_pool);
  meta[kBookSlots] = std::to_string(s.kv_entries());
  meta[kBookPinned] = std::to_string(s.book->pinned);
  meta[kBookHasSummary] = flag(s.book->has_summary);
  meta[kBookSelected] = flag(s.book->selected);
  return meta;
}

}  // namespace kvstash::kvs
