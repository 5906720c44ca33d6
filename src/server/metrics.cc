#include "server/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace kvstash::server {

namespace {

// Shortest round-trip form ("0.005", "60"), as Prometheus clients write bucket bounds.
std::string num(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "+Inf" : "-Inf";
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, r.ptr);
}

// Label values escape backslash, double quote and newline (the format's only escapes).
std::string label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void sample(std::string& out, const std::string& name, const std::string& labels, const std::string& value) {
  out += name;
  if (!labels.empty()) out += "{" + labels + "}";
  out += ' ';
  out += value;
  out += '\n';
}

}  // namespace

void Metrics::Histogram::observe(double x) {
  if (std::isnan(x)) return;
  x = std::max(x, 0.0);  // a clock step back must not produce a negative latency
  const size_t i = size_t(std::lower_bound(bounds.begin(), bounds.end(), x) - bounds.begin());  // le: x <= bound
  ++counts[i];
  sum += x;
  ++count;
}

Metrics::Metrics() {
  ttft_.bounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60};
  per_token_.bounds = {0.001, 0.0025, 0.005, 0.0075, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  ttft_.counts.assign(ttft_.bounds.size() + 1, 0);
  per_token_.counts.assign(per_token_.bounds.size() + 1, 0);
}

void Metrics::request_done(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{endpoint, status}];
}

void Metrics::add_tokens(int64_t prompt, int64_t generated, int64_t cached) {
  std::lock_guard<std::mutex> lock(mu_);
  prompt_tokens_ += prompt;
  generated_tokens_ += generated;
  cached_tokens_ += cached;
}

void Metrics::observe_ttft(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ttft_.observe(seconds);
}

void Metrics::observe_token_latency(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  per_token_.observe(seconds);
}

std::string Metrics::render(const Gauges& g) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  header(out, "kvstash_requests_total", "counter", "HTTP requests answered, by endpoint and status.");
  for (const auto& [key, n] : requests_)
    sample(out, "kvstash_requests_total",
           "endpoint=\"" + label(key.first) + "\",status=\"" + std::to_string(key.second) + "\"", std::to_string(n));

  header(out, "kvstash_prompt_tokens_total", "counter", "Prompt tokens of finished requests.");
  sample(out, "kvstash_prompt_tokens_total", "", std::to_string(prompt_tokens_));
  header(out, "kvstash_generated_tokens_total", "counter", "Tokens generated.");
  sample(out, "kvstash_generated_tokens_total", "", std::to_string(generated_tokens_));
  header(out, "kvstash_cached_prompt_tokens_total", "counter", "Prompt tokens served from the prefix cache or a state.");
  sample(out, "kvstash_cached_prompt_tokens_total", "", std::to_string(cached_tokens_));
  header(out, "kvstash_prompt_cache_hit_ratio", "gauge", "Cached prompt tokens over prompt tokens since start.");
  sample(out, "kvstash_prompt_cache_hit_ratio", "",
         num(prompt_tokens_ > 0 ? double(cached_tokens_) / double(prompt_tokens_) : 0.0));

  auto histogram = [&](const char* name, const char* help, const Histogram& h) {
    header(out, name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i <= h.bounds.size(); ++i) {
      cum += h.counts[i];
      const std::string le = i < h.bounds.size() ? num(h.bounds[i]) : "+Inf";
      sample(out, std::string(name) + "_bucket", "le=\"" + le + "\"", std::to_string(cum));
    }
    sample(out, std::string(name) + "_sum", "", num(h.sum));
    sample(out, std::string(name) + "_count", "", std::to_string(h.count));
  };
  histogram("kvstash_time_to_first_token_seconds", "Seconds from request arrival to the first generated token.", ttft_);
  histogram("kvstash_time_per_output_token_seconds", "Seconds between consecutive generated tokens.", per_token_);

  header(out, "kvstash_requests_active", "gauge", "Requests being generated.");
  sample(out, "kvstash_requests_active", "", std::to_string(g.active));
  header(out, "kvstash_requests_queued", "gauge", "Requests waiting for a slot.");
  sample(out, "kvstash_requests_queued", "", std::to_string(g.queued));
  header(out, "kvstash_kv_blocks_used", "gauge", "KV cache blocks in use.");
  sample(out, "kvstash_kv_blocks_used", "", std::to_string(g.kv_blocks_used));
  header(out, "kvstash_kv_blocks_total", "gauge", "KV cache blocks in all.");
  sample(out, "kvstash_kv_blocks_total", "", std::to_string(g.kv_blocks_total));
  header(out, "kvstash_store_bytes", "gauge", "Bytes held by each tier of the state store.");
  for (const TierGauge& t : g.tiers)
    sample(out, "kvstash_store_bytes", "tier=\"" + label(t.tier) + "\"", std::to_string(t.bytes));
  header(out, "kvstash_store_entries", "gauge", "Entries held by each tier of the state store.");
  for (const TierGauge& t : g.tiers)
    sample(out, "kvstash_store_entries", "tier=\"" + label(t.tier) + "\"", std::to_string(t.entries));
  return out;
}

}  // namespace kvstash::server
