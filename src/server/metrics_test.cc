#include "server/metrics.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace kvstash::server {
namespace {

bool has_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

TEST(ServerMetrics, CountersAndGauges) {
  Metrics m;
  m.request_done("/v1/completions", 200);
  m.request_done("/v1/completions", 200);
  m.request_done("/v1/chat/completions", 400);
  m.add_tokens(100, 20, 25);
  m.add_tokens(100, 5, 25);
  Gauges g;
  g.active = 2;
  g.queued = 3;
  g.kv_blocks_used = 10;
  g.kv_blocks_total = 64;
  g.tiers = {{"ram", 1024, 2}, {"disk", 4096, 7}};
  const std::string t = m.render(g);
  EXPECT_TRUE(has_line(t, "# TYPE kvstash_requests_total counter")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 2")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_requests_total{endpoint=\"/v1/chat/completions\",status=\"400\"} 1")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_prompt_tokens_total 200")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_generated_tokens_total 25")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_cached_prompt_tokens_total 50")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_prompt_cache_hit_ratio 0.25")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_requests_active 2")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_requests_queued 3")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_kv_blocks_used 10")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_kv_blocks_total 64")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_store_bytes{tier=\"disk\"} 4096")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_store_entries{tier=\"ram\"} 2")) << t;
  EXPECT_TRUE(has_line(t, "# TYPE kvstash_store_bytes gauge")) << t;
  // Every sample's metric has HELP and TYPE lines before it.
  size_t pos = 0;
  while ((pos = t.find("# TYPE ", pos)) != std::string::npos) {
    const std::string name = t.substr(pos + 7, t.find(' ', pos + 7) - pos - 7);
    EXPECT_NE(t.find("# HELP " + name + " "), std::string::npos) << name;
    ++pos;
  }
  EXPECT_EQ(t.back(), '\n');
}

TEST(ServerMetrics, EmptyHitRatioIsZero) {
  Metrics m;
  EXPECT_TRUE(has_line(m.render({}), "kvstash_prompt_cache_hit_ratio 0"));
}

TEST(ServerMetrics, HistogramBucketsAreCumulative) {
  Metrics m;
  m.observe_ttft(0.0005);  // le 0.001
  m.observe_ttft(0.001);   // on a bound: counts in that bucket
  m.observe_ttft(0.3);     // le 0.5
  m.observe_ttft(120);     // only +Inf
  const std::string t = m.render({});
  EXPECT_TRUE(has_line(t, "# TYPE kvstash_time_to_first_token_seconds histogram")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_time_to_first_token_seconds_bucket{le=\"0.001\"} 2")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_time_to_first_token_seconds_bucket{le=\"0.0025\"} 2")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_time_to_first_token_seconds_bucket{le=\"0.25\"} 2")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_time_to_first_token_seconds_bucket{le=\"0.5\"} 3")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_time_to_first_token_seconds_bucket{le=\"60\"} 3")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_time_to_first_token_seconds_bucket{le=\"+Inf\"} 4")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_time_to_first_token_seconds_count 4")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_time_to_first_token_seconds_sum 120.3015")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_time_per_output_token_seconds_bucket{le=\"+Inf\"} 0")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_time_per_output_token_seconds_bucket{le=\"10\"} 0")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_time_per_output_token_seconds_count 0")) << t;

  // Bucket counts never decrease down the list.
  const std::string prefix = "kvstash_time_to_first_token_seconds_bucket{le=\"";
  long last = -1;
  int buckets = 0;
  for (size_t pos = 0; (pos = t.find(prefix, pos)) != std::string::npos; ++pos) {
    const size_t sp = t.find(' ', pos);
    const long n = std::stol(t.substr(sp + 1));
    EXPECT_GE(n, last);
    last = n;
    ++buckets;
  }
  EXPECT_EQ(buckets, 17);  // 16 bounds and +Inf
}

TEST(ServerMetrics, LabelEscapingAndThreads) {
  Metrics m;
  m.request_done("a\"b\\c\nd", 500);
  EXPECT_TRUE(has_line(m.render({}), "kvstash_requests_total{endpoint=\"a\\\"b\\\\c\\nd\",status=\"500\"} 1"));

  Metrics shared;
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      for (int k = 0; k < 1000; ++k) {
        shared.request_done("/x", 200);
        shared.observe_token_latency(0.004);
        shared.add_tokens(1, 1, 0);
      }
    });
  for (int k = 0; k < 20; ++k) (void)shared.render({});
  for (std::thread& t : threads) t.join();
  const std::string t = shared.render({});
  EXPECT_TRUE(has_line(t, "kvstash_requests_total{endpoint=\"/x\",status=\"200\"} 4000")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_time_per_output_token_seconds_bucket{le=\"0.005\"} 4000")) << t;
  EXPECT_TRUE(has_line(t, "kvstash_time_per_output_token_seconds_bucket{le=\"0.0025\"} 0")) << t;
}

}  // namespace
}  // namespace kvstash::server
