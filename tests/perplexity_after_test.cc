// Scoring a continuation after a state gives exactly the log-likelihoods of running prefix +
// continuation as one stream (the engine is batch-invariant), and perplexity_after agrees.
#include <gtest/gtest.h>

#include <cmath>

#include "kvstash/error.h"
#include "kvstash/prefix.h"
#include "kvstash/thread_pool.h"
#include "test_util.h"

namespace kvstash {
namespace {

TEST(PerplexityAfter, EqualsTheWholeStreamsLogits) {
  const Model& model = testing::default_model();
  ThreadPool threads(2);
  Engine engine(model, threads, EngineOptions{.n_ctx = 256, .kv_tokens = 512});
  const std::vector<Token> all = testing::prose_tokens(200);
  const std::vector<Token> prefix(all.begin(), all.begin() + 150), cont(all.begin() + 150, all.end());
  const State state = process_prefix(engine, prefix);

  const int n_vocab = model.config().n_vocab;
  Sequence whole = engine.new_sequence();
  const float* ref = engine.forward(whole, all.data(), int64_t(all.size()) - 1, ForwardOptions{.all_logits = true});
  double nll = 0;
  int64_t seen = 0;
  continuation_logits(engine, state, cont, [&](int64_t i, const float* logits) {
    const float* want = ref + (149 + i) * n_vocab;
    for (int t = 0; t < n_vocab; ++t) ASSERT_EQ(logits[t], want[t]) << "token " << i << " logit " << t;
    nll -= log_prob(logits, n_vocab, cont[size_t(i)]);
    EXPECT_EQ(i, seen++);
  }, 16);
  EXPECT_EQ(seen, int64_t(cont.size()));

  const PerplexityResult r = perplexity_after(engine, state, cont);
  EXPECT_EQ(r.scored, int64_t(cont.size()));
  EXPECT_DOUBLE_EQ(r.mean_nll, nll / double(cont.size()));
  EXPECT_GT(r.perplexity, 1.0);
}

TEST(PerplexityAfter, RefusesWhatDoesNotFit) {
  ThreadPool threads(2);
  Engine engine(testing::default_model(), threads, EngineOptions{.n_ctx = 64});
  const std::vector<Token> all = testing::prose_tokens(100);
  const State state = process_prefix(engine, std::vector<Token>(all.begin(), all.begin() + 40));
  try {
    perplexity_after(engine, state, std::vector<Token>(all.begin() + 40, all.end()));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::ResourceExhausted) << e.what();
  }
  EXPECT_THROW(perplexity_after(engine, state, {}), Error);
}

}  // namespace
}  // namespace kvstash
