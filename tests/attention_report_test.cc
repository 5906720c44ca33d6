// The attention each cache entry receives (for fixed-size caches that evict by attention): every
// new token's row sums the softmax of every layer and head, and the rows do not depend on batching.
#include <gtest/gtest.h>

#include <cstring>

#include "kvstash/engine.h"
#include "test_util.h"

namespace kvstash {
namespace {

TEST(AttentionReport, RowsSumToLayersTimesHeadsAndAreBatchInvariant) {
  const Model& m = testing::default_model();
  const std::vector<Token> tokens = m.tokenizer().encode(testing::corpus_text().substr(0, 400), true, false);
  const int64_t n = int64_t(tokens.size());
  const double heads = double(m.config().n_layer) * m.config().n_head;

  ThreadPool threads(2);
  Engine engine(m, threads, EngineOptions{.n_ctx = 256});
  Sequence all = engine.new_sequence();
  std::vector<float> batch;
  engine.forward(all, tokens.data(), n, ForwardOptions{.attention = &batch});
  ASSERT_EQ(batch.size(), size_t(n * n));
  for (int64_t t = 0; t < n; ++t) {
    double sum = 0;
    for (int64_t j = 0; j < n; ++j) {
      const float a = batch[size_t(t * n + j)];
      if (j > t) {
        EXPECT_EQ(a, 0.0f) << "token " << t << " attended to a later entry " << j;
      }
      sum += a;
    }
    EXPECT_NEAR(sum, heads, 1e-3 * heads) << "row " << t;
  }
  // The first token can only attend to itself.
  EXPECT_NEAR(batch[0], heads, 1e-3 * heads);

  // One token at a time gives the same rows, bit for bit.
  Sequence one = engine.new_sequence();
  std::vector<float> row;
  for (int64_t t = 0; t < n; ++t) {
    engine.forward(one, &tokens[size_t(t)], 1, ForwardOptions{.attention = &row});
    ASSERT_EQ(row.size(), size_t(t + 1));
    EXPECT_EQ(0, std::memcmp(row.data(), &batch[size_t(t * n)], row.size() * sizeof(float))) << "row " << t;
  }
}

}  // namespace
}  // namespace kvstash
