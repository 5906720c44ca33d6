// The server's counters and latency histograms, rendered in Prometheus' text format (0.0.4) for
// GET /metrics. Thread-safe: request threads update, the scrape renders.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace kvstash::server {

struct TierGauge {
  std::string tier;
  uint64_t bytes = 0;
  uint64_t entries = 0;
};
// Values the caller samples at scrape time (scheduler and store state).
struct Gauges {
  int64_t active = 0, queued = 0, kv_blocks_used = 0, kv_blocks_total = 0;
  std::vector<TierGauge> tiers;
};

class Metrics {
 public:
  Metrics();
  void request_done(const std::string& endpoint, int status);          // kvstash_requests_total
  void add_tokens(int64_t prompt, int64_t generated, int64_t cached);  // token counters
  void observe_ttft(double seconds);             // kvstash_time_to_first_token_seconds
  void observe_token_latency(double seconds);    // kvstash_time_per_output_token_seconds
  std::string render(const Gauges& g) const;

 private:
  struct Histogram {
    std::vector<double> bounds;    // upper bounds, ascending; +Inf implied
    std::vector<uint64_t> counts;  // per bucket (not cumulative), bounds.size() + 1
    double sum = 0;
    uint64_t count = 0;
    void observe(double x);
  };
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  int64_t prompt_tokens_ = 0, generated_tokens_ = 0, cached_tokens_ = 0;
  Histogram ttft_, per_token_;
};

}  // namespace kvstash::server
