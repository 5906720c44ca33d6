// Engine::forward_batch (continuous batching): a sequence's logits are bitwise the same whether
// its tokens run alone or in one pass with other sequences' prefill chunks and decode steps.
#include <gtest/gtest.h>

#include <cstring>

#include "kvstash/engine.h"
#include "kvstash/error.h"
#include "test_util.h"

namespace kvstash {
namespace {

constexpr int kSeqs = 5;

// Sequence i reads tokens [offset(i), offset(i) + length(i)) of the prose, so the sequences
// differ in content and length.
std::vector<Token> tokens_of(int i) {
  static const std::vector<Token> prose = testing::prose_tokens(400);
  const size_t off = size_t(i) * 37, len = 40 + size_t(i) * 23;
  return {prose.begin() + long(off), prose.begin() + long(off + len)};
}

// The logits after each token, the sequence fed alone one token at a time after a prompt of `cut`.
std::vector<std::vector<float>> alone(Engine& engine, const std::vector<Token>& tokens, size_t cut) {
  const int nv = engine.model().config().n_vocab;
  Sequence seq = engine.new_sequence();
  std::vector<std::vector<float>> out;
  const float* l = engine.forward(seq, tokens.data(), int64_t(cut));
  out.emplace_back(l, l + nv);
  for (size_t t = cut; t < tokens.size(); ++t) {
    l = engine.forward(seq, &tokens[t], 1);
    out.emplace_back(l, l + nv);
  }
  return out;
}

TEST(BatchForward, SameBitsAsAloneAmongOtherSequences) {
  const Model& m = testing::default_model();
  ThreadPool pool(2);
  Engine engine(m, pool, EngineOptions{.n_ctx = 512, .kv_tokens = 4096});
  const int nv = m.config().n_vocab;
  // Sequence i prefills `cut` tokens in chunks of 16 (a chunked prefill beside the others' decode
  // steps), then decodes one token per pass; sequences start at different passes.
  std::vector<std::vector<Token>> toks;
  std::vector<std::vector<std::vector<float>>> want;
  for (int i = 0; i < kSeqs; ++i) {
    toks.push_back(tokens_of(i));
    want.push_back(alone(engine, toks.back(), 24 + size_t(i) * 8));
  }
  std::vector<Sequence> seqs;
  for (int i = 0; i < kSeqs; ++i) seqs.push_back(engine.new_sequence());
  std::vector<size_t> done(kSeqs, 0), got(kSeqs, 0);
  for (int pass = 0;; ++pass) {
    std::vector<BatchItem> items;
    std::vector<int> who;
    for (int i = 0; i < kSeqs; ++i) {
      if (pass < i || done[size_t(i)] == toks[size_t(i)].size()) continue;
      const size_t cut = 24 + size_t(i) * 8, at = done[size_t(i)];
      const size_t n = at < cut ? std::min<size_t>(16, cut - at) : 1;
      items.push_back(BatchItem{&seqs[size_t(i)], &toks[size_t(i)][at], int64_t(n), at + n >= cut});
      who.push_back(i);
      done[size_t(i)] += n;
    }
    if (items.empty()) break;
    const float* l = engine.forward_batch(items.data(), int(items.size()));
    for (size_t k = 0; k < items.size(); ++k) {
      if (!items[k].logits) continue;
      const int i = who[k];
      const std::vector<float>& w = want[size_t(i)][got[size_t(i)]++];
      ASSERT_EQ(0, std::memcmp(w.data(), l, size_t(nv) * sizeof(float)))
          << "sequence " << i << ", output " << got[size_t(i)] - 1 << " differs in pass " << pass;
      l += nv;
    }
  }
  for (int i = 0; i < kSeqs; ++i) EXPECT_EQ(got[size_t(i)], want[size_t(i)].size()) << i;
}

TEST(BatchForward, RejectsBadBatchesLeavingSequencesAsTheyWere) {
  const Model& m = testing::default_model();
  ThreadPool pool(1);
  Engine engine(m, pool, EngineOptions{.n_ctx = 128, .block_tokens = 32, .kv_tokens = 96});
  const std::vector<Token> t = testing::prose_tokens(80);
  Sequence a = engine.new_sequence(), b = engine.new_sequence();
  engine.forward(a, t.data(), 10);
  auto kind = [&](std::vector<BatchItem> items) {
    try {
      engine.forward_batch(items.data(), int(items.size()));
    } catch (const Error& e) {
      return e.kind();
    }
    return ErrorKind::Internal;
  };
  EXPECT_EQ(kind({{&a, t.data(), 1, true}, {&a, t.data(), 1, true}}), ErrorKind::InvalidArgument);
  EXPECT_EQ(kind({{&a, t.data(), 0, true}}), ErrorKind::InvalidArgument);
  Sequence budgeted = engine.new_sequence(KvBudget{.budget = 64, .policy = EvictionPolicy::H2O});
  EXPECT_EQ(kind({{&budgeted, t.data(), 1, true}}), ErrorKind::InvalidArgument);
  const Token bad = m.config().n_vocab;
  EXPECT_EQ(kind({{&a, t.data(), 1, true}, {&b, &bad, 1, true}}), ErrorKind::InvalidArgument);
  // 3 blocks in the pool: a holds one; b's 80 tokens need 3 more.
  EXPECT_EQ(kind({{&a, t.data(), 5, true}, {&b, t.data(), 80, true}}), ErrorKind::ResourceExhausted);
  EXPECT_EQ(a.size(), 10);
  EXPECT_EQ(b.size(), 0);
  EXPECT_EQ(engine.kv_pool().free_blocks(), 2);
}

}  // namespace
}  // namespace kvstash
