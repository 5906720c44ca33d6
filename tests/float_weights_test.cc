// ModelOptions::float_weights: the weights dequantized to f32 at load (transformers' arithmetic).
// Same model (fingerprint), the same batch invariance, logits close to the 8-bit-activation path.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "kvstash/engine.h"
#include "kvstash/generate.h"
#include "test_util.h"

namespace kvstash {
namespace {

const Model& float_model() {
  static std::unique_ptr<Model> m = Model::load(KVSTASH_DEFAULT_MODEL, ModelOptions{.float_weights = true});
  return *m;
}

std::vector<float> logits(const Model& m, const std::vector<Token>& tokens, const std::vector<int64_t>& split) {
  ThreadPool pool(2);
  Engine engine(m, pool, EngineOptions{.n_ctx = 256});
  Sequence seq = engine.new_sequence();
  return testing::all_logits_in_calls(engine, seq, tokens, split);
}

TEST(FloatWeights, SameModelWithF32Matrices) {
  const Model& f = float_model();
  const Model& q = testing::default_model();
  EXPECT_EQ(f.fingerprint(), q.fingerprint());
  EXPECT_EQ(f.layer(0).wq.type, DType::F32);
  EXPECT_EQ(f.output().type, DType::F32);
  std::vector<float> row(size_t(q.config().n_embd));
  dequantize_row(q.layer(3).wk.type, q.layer(3).wk.row(5), row.data(), q.config().n_embd);
  EXPECT_EQ(0, std::memcmp(row.data(), f.layer(3).wk.row(5), row.size() * sizeof(float)));
}

TEST(FloatWeights, BatchInvariantAndCloseToTheDefaultPath) {
  const std::vector<Token> tokens = testing::prose_tokens(96);
  const int64_t n = int64_t(tokens.size());
  const std::vector<float> whole = logits(float_model(), tokens, {n});
  const std::vector<float> split = logits(float_model(), tokens, {1, 40, n - 41});
  ASSERT_EQ(0, std::memcmp(whole.data(), split.data(), whole.size() * sizeof(float)));
  const std::vector<float> quant = logits(testing::default_model(), tokens, {n});
  // Different arithmetic (f32 vs 8-bit activations), the same model: the predictions barely move.
  const size_t nv = size_t(float_model().config().n_vocab);
  double kl = 0;
  for (size_t t = 0; t < size_t(n); ++t) {
    const float* a = &whole[t * nv];
    const float* b = &quant[t * nv];
    const double la = log_prob(a, int(nv), 0) - double(a[0]);  // -log(sum(exp(a)))
    const double lb = log_prob(b, int(nv), 0) - double(b[0]);
    for (size_t v = 0; v < nv; ++v) {
      const double pa = std::exp(double(a[v]) + la);
      kl += pa * ((double(a[v]) + la) - (double(b[v]) + lb));
    }
  }
  EXPECT_NE(0, std::memcmp(whole.data(), quant.data(), whole.size() * sizeof(float)));
  EXPECT_LT(kl / double(n), 0.02);
}

}  // namespace
}  // namespace kvstash
