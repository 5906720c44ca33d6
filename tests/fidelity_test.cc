// kvstash against llama.cpp on the default model (tests/fixtures/reference_smollm2.json, made by
// scripts/make_reference.sh; docs/fidelity.md): token ids, teacher-forced next-token
// distributions, perplexity and a greedy continuation.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kvstash/generate.h"
#include "test_util.h"

namespace kvstash {
namespace {

using nlohmann::json;

const json& reference() {
  static const json j = [] {
    std::ifstream in(KVSTASH_SOURCE_DIR "/tests/fixtures/reference_smollm2.json");
    return json::parse(in);
  }();
  return j;
}

std::vector<Token> text_tokens() {
  return testing::default_model().tokenizer().encode(testing::corpus_text(), true, false);
}

TEST(Fidelity, TokenIdsEqualLlamaCpp) {
  EXPECT_EQ(testing::corpus_text().size(), reference()["text"]["n_bytes"].get<size_t>())
      << "scripts/corpus.sh printed another text than the fixture's";
  EXPECT_EQ(text_tokens(), reference()["tokens"]["ids"].get<std::vector<Token>>());
}

TEST(Fidelity, GreedyContinuationEqualsLlamaCpp) {
  const json& g = reference()["greedy"];
  ThreadPool threads(2);
  Engine engine(testing::default_model(), threads, EngineOptions{.n_ctx = 256});
  Sequence seq = engine.new_sequence();
  GenerateOptions o;
  o.n_predict = g["n_tokens"].get<int>();
  o.sampling.temperature = 0;
  const GenerateResult r = generate(engine, seq, g["prompt_ids"].get<std::vector<Token>>(), o);
  EXPECT_EQ(r.tokens, g["ids"].get<std::vector<Token>>());
}

// llama.cpp quantizes activations to 8 bits and rounds queries and attention weights to f16, so
// where its two best tokens are nearly tied, its choice is noise (llama.cpp with an f32 KV cache
// agrees with its own f16-cache run on only 96.3% of positions: docs/fidelity.md). Top-1 agreement
// is held to 99% where llama.cpp's choice leads its runner-up by this margin (nats).
constexpr double kClearMargin = 0.3;

// Every window's logits, scored against the fixture. The KL divergence KL(llama.cpp || kvstash) is
// computed over llama.cpp's top-10 tokens plus one bucket for the rest of the mass (a lower bound
// of the full KL).
TEST(Fidelity, NextTokenDistributionsAndPerplexityMatchLlamaCpp) {
  const json& nt = reference()["next_token"];
  const json& ppl = reference()["perplexity"];
  const std::vector<Token> ids = text_tokens();
  const int n_vocab = testing::default_model().config().n_vocab;
  const int64_t ctx = ppl["ctx"].get<int64_t>();
  ThreadPool threads(2);
  Engine engine(testing::default_model(), threads, EngineOptions{.n_ctx = ctx});

  size_t e = 0;
  int64_t agree = 0, confident = 0, confident_agree = 0;
  double kl = 0, nll = 0;
  for (size_t start = 0; start + 1 < ids.size(); start += size_t(ctx)) {
    const int64_t n = std::min<int64_t>(ctx, int64_t(ids.size() - start));
    Sequence seq = engine.new_sequence();
    const float* logits = engine.forward(seq, &ids[start], n, ForwardOptions{.all_logits = true});
    for (int64_t i = 0; i + 1 < n; ++i, ++e) {
      const float* row = logits + i * n_vocab;
      const auto top = nt["top_ids"][e].get<std::vector<Token>>();
      const auto top_lp = nt["top_logprobs"][e].get<std::vector<double>>();
      nll -= log_prob(row, n_vocab, ids[start + size_t(i) + 1]);
      const Token mine = Token(std::max_element(row, row + n_vocab) - row);
      agree += mine == top[0];
      if (top_lp[0] - top_lp[1] > kClearMargin) {  // llama.cpp's choice is clear of its runner-up
        ++confident;
        confident_agree += mine == top[0];
      }
      double p_rest = 1, q_rest = 1;
      for (size_t k = 0; k < top.size(); ++k) {
        const double q = log_prob(row, n_vocab, top[k]);
        kl += std::exp(top_lp[k]) * (top_lp[k] - q);
        p_rest -= std::exp(top_lp[k]);
        q_rest -= std::exp(q);
      }
      if (p_rest > 1e-12) kl += p_rest * (std::log(p_rest) - std::log(std::max(q_rest, 1e-30)));
    }
  }
  ASSERT_EQ(e, nt["top_ids"].size());
  const double n = double(e);
  const double perplexity = std::exp(nll / n), ref_ppl = ppl["perplexity"].get<double>();
  std::printf("fidelity: positions %zu, top-1 agreement %.4f (%.4f where llama.cpp's margin > %.1f nats, %lld "
              "positions), mean KL (top-10 bound) %.5f nats, perplexity %.4f vs llama.cpp %.4f (%+.3f%%)\n",
              e, double(agree) / n, double(confident_agree) / double(confident), kClearMargin, (long long)confident, kl / n,
              perplexity, ref_ppl, 100.0 * (perplexity / ref_ppl - 1.0));
  EXPECT_LE(kl / n, 0.01);
  EXPECT_NEAR(perplexity / ref_ppl, 1.0, 0.01);
  EXPECT_GE(double(confident_agree) / double(confident), 0.99);
  EXPECT_GE(double(agree) / n, 0.95);
}

}  // namespace
}  // namespace kvstash
