// Budgeted sequences (issue 8): results depend on the budget and the policy only — the same bits
// for any split of the input and any thread count, the full cache's bits while the budget holds
// everything — memory stays bounded, and eviction does what each policy says.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "kvstash/engine.h"
#include "kvstash/kernels.h"
#include "test_util.h"

namespace kvstash {
namespace {

KvBudget budget(EvictionPolicy p, int64_t b, SummaryMode s = SummaryMode::None,
                PositionMode pos = PositionMode::Original) {
  KvBudget k;
  k.budget = b;
  k.policy = p;
  k.summary = s;
  k.positions = pos;
  k.snapkv_window = 16;
  return k;
}

// All logits of the tokens fed in calls of the given sizes.
std::vector<float> run_split(int threads, const KvBudget& b, const std::vector<Token>& tokens,
                             const std::vector<int64_t>& split) {
  const Model& m = testing::default_model();
  ThreadPool pool(threads);
  Engine engine(m, pool, EngineOptions{.n_ctx = 512});
  Sequence seq = engine.new_sequence(b);
  return testing::all_logits_in_calls(engine, seq, tokens, split);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

const EvictionPolicy kStreamPolicies[] = {EvictionPolicy::Window, EvictionPolicy::Sinks, EvictionPolicy::H2O,
                                          EvictionPolicy::Tova, EvictionPolicy::Fsdc};

TEST(Eviction, BudgetHoldingEverythingIsBitwiseTheFullCache) {
  const std::vector<Token> tokens = testing::prose_tokens(120);
  const std::vector<float> full = run_split(2, {}, tokens, {120});
  for (EvictionPolicy p : kStreamPolicies) {
    // 120 tokens never reach budget + interval = 152: no eviction, the full cache's bits.
    EXPECT_TRUE(same_bits(run_split(2, budget(p, 120), tokens, {37, 83}), full)) << to_string(p);
  }
}

TEST(Eviction, SameBitsForAnySplitAndThreadCountWhileEvicting) {
  // 160 tokens through budget 32 + interval 16: eight evictions, some inside a call, some at its end.
  const std::vector<Token> tokens = testing::prose_tokens(160);
  std::mt19937 rng(7);
  std::vector<KvBudget> settings;
  for (EvictionPolicy p : kStreamPolicies) settings.push_back(budget(p, 32));
  settings.push_back(budget(EvictionPolicy::H2O, 32, SummaryMode::Mean));
  settings.push_back(budget(EvictionPolicy::Fsdc, 32, SummaryMode::Sum, PositionMode::Contiguous));
  for (KvBudget b : settings) {
    b.interval = 16;
    // Random calls of 1..60 tokens, then the last 10 one by one (decode), on one thread.
    std::vector<int64_t> split;
    for (int64_t left = 150; left > 0;) {
      const int64_t n = std::min<int64_t>(left, 1 + int64_t(rng() % 60));
      split.push_back(n);
      left -= n;
    }
    split.insert(split.end(), 10, 1);
    EXPECT_TRUE(same_bits(run_split(1, b, tokens, split), run_split(2, b, tokens, {160}))) << describe(b);
  }
}

TEST(Eviction, MemoryIsAllocatedOnceAndNeverGrows) {
  const Model& m = testing::default_model();
  ThreadPool pool(2);
  Engine engine(m, pool, EngineOptions{.n_ctx = 128, .kv_tokens = 4096});
  const KvBudget b = budget(EvictionPolicy::H2O, 64);
  Sequence seq = engine.new_sequence(b);
  const std::vector<Token> tokens = testing::prose_tokens(600);
  const int64_t total_blocks = engine.kv_pool().n_blocks();
  int64_t most = 0;
  for (size_t at = 0; at < tokens.size(); at += 50) {
    engine.forward(seq, &tokens[at], 50);
    EXPECT_LE(seq.size(), b.budget + b.interval);
    most = std::max(most, total_blocks - engine.kv_pool().free_blocks());
  }
  EXPECT_EQ(seq.n_processed(), 600);
  EXPECT_EQ(most, (b.budget + b.interval) / 32);  // 96 slots: 3 blocks of 32, never more
  // 600 tokens through a context of 128 slots: the budget, not the context, bounds the cache.
  EXPECT_EQ(seq.next_position(), 600);
}

TEST(Eviction, EachKvHeadKeepsItsOwnEntries) {
  const Model& m = testing::default_model();
  ThreadPool pool(2);
  Engine engine(m, pool, EngineOptions{.n_ctx = 256});
  Sequence seq = engine.new_sequence(budget(EvictionPolicy::H2O, 64));
  const std::vector<Token> tokens = testing::prose_tokens(200);
  engine.forward(seq, tokens.data(), 200);
  const EvictionBook& book = *seq.book();
  int differing = 0;
  for (size_t lane = 1; lane < book.entry.size(); ++lane) differing += book.entry[lane] != book.entry[0] ? 1 : 0;
  EXPECT_GT(differing, int(book.entry.size()) / 2);
  for (const auto& e : book.entry) {
    ASSERT_EQ(int64_t(e.size()), seq.size());
    EXPECT_TRUE(std::is_sorted(e.begin(), e.end()));
    // h2o's recent half: at the last eviction (after 192 tokens) entries 160..191 were the newest 32,
    // and every lane kept them; 192..199 came after.
    ASSERT_EQ(seq.size(), 72);
    for (int64_t s = 32; s < 72; ++s) EXPECT_EQ(e[size_t(s)], 160 + (s - 32));
  }
}

TEST(Eviction, ScoresAreTheAttentionOfEveryQueryHead) {
  // Before any eviction, h2o's scores summed over lanes equal the attention each entry received
  // from every query head of every layer (the engine's attention report), up to summation order.
  const Model& m = testing::default_model();
  ThreadPool pool(2);
  Engine engine(m, pool, EngineOptions{.n_ctx = 256});
  const std::vector<Token> tokens = testing::prose_tokens(80);
  Sequence budgeted = engine.new_sequence(budget(EvictionPolicy::H2O, 200));
  engine.forward(budgeted, tokens.data(), 80);
  Sequence full = engine.new_sequence();
  std::vector<float> report;
  engine.forward(full, tokens.data(), 80, ForwardOptions{.attention = &report});
  const EvictionBook& book = *budgeted.book();
  for (int64_t j = 0; j < 80; ++j) {
    double lanes = 0, reported = 0;
    for (const auto& s : book.score) lanes += s[size_t(j)];
    for (int64_t t = 0; t < 80; ++t) reported += report[size_t(t * 80 + j)];
    EXPECT_NEAR(lanes, reported, 1e-3 * reported + 1e-4) << "entry " << j;
  }
}

// The cached keys of a budgeted run's slots against the full cache's keys of the same entries.
TEST(Eviction, OriginalPositionsKeepKeysContiguousRepositionsThem) {
  const Model& m = testing::default_model();
  const ModelConfig& c = m.config();
  ThreadPool pool(2);
  Engine engine(m, pool, EngineOptions{.n_ctx = 256});
  const std::vector<Token> tokens = testing::prose_tokens(96);  // exactly one eviction (64 + 32): entries 32..95 kept
  Sequence full = engine.new_sequence();
  engine.forward(full, tokens.data(), 96);
  for (PositionMode pm : {PositionMode::Original, PositionMode::Contiguous}) {
    Sequence seq = engine.new_sequence(budget(EvictionPolicy::Window, 64, SummaryMode::None, pm));
    engine.forward(seq, tokens.data(), 96);
    ASSERT_EQ(seq.size(), 64);
    EXPECT_EQ(seq.next_position(), pm == PositionMode::Original ? 96 : 64);
    double worst = 0;
    for (int l = 0; l < c.n_layer; l += 7)
      for (int h = 0; h < c.n_head_kv; ++h)
        for (int64_t d = 0; d < 64; ++d) {
          const uint16_t* got = seq.pool().k(seq.block_of(d), l, h) + size_t(seq.slot_of(d)) * size_t(c.head_dim);
          const uint16_t* was = full.pool().k(full.block_of(d + 32), l, h) + size_t(full.slot_of(d + 32)) * size_t(c.head_dim);
          if (pm == PositionMode::Original) {
            ASSERT_EQ(std::memcmp(got, was, size_t(c.head_dim) * 2), 0);
            continue;
          }
          // Re-rotated by -32 positions: pair i turns by -32 * theta_i.
          for (int i = 0; i < c.n_rot / 2; ++i) {
            const double th = -32.0 * m.rope_inv_freq()[size_t(i)];
            const double x0 = f16_to_f32(was[2 * i]), x1 = f16_to_f32(was[2 * i + 1]);
            const double y0 = x0 * std::cos(th) - x1 * std::sin(th), y1 = x0 * std::sin(th) + x1 * std::cos(th);
            const double scale = std::max({1.0, std::fabs(x0), std::fabs(x1)});
            worst = std::max({worst, std::fabs(f16_to_f32(got[2 * i]) - y0) / scale,
                              std::fabs(f16_to_f32(got[2 * i + 1]) - y1) / scale});
          }
        }
    if (pm == PositionMode::Contiguous) {
      EXPECT_LT(worst, 2e-3);
    }
  }
}

TEST(Eviction, ContiguousPositionsRunPastTheContextOfPositions) {
  // With contiguous positions the RoPE positions stay below budget + interval however long the stream.
  const Model& m = testing::default_model();
  ThreadPool pool(2);
  Engine engine(m, pool, EngineOptions{.n_ctx = 128});
  Sequence seq = engine.new_sequence(budget(EvictionPolicy::Sinks, 64, SummaryMode::None, PositionMode::Contiguous));
  const std::vector<Token> tokens = testing::prose_tokens(400);
  const float* l = engine.forward(seq, tokens.data(), 400);
  EXPECT_LE(seq.next_position(), 96);
  EXPECT_TRUE(std::isfinite(l[0]));
  // The sinks are the first 4 entries in every lane.
  for (const auto& e : seq.book()->entry) EXPECT_EQ(std::vector<int32_t>(e.begin(), e.begin() + 4), (std::vector<int32_t>{0, 1, 2, 3}));
}

TEST(Eviction, SummaryEntryHoldsTheMeanOfTheEvicted) {
  const Model& m = testing::default_model();
  const ModelConfig& c = m.config();
  ThreadPool pool(2);
  Engine engine(m, pool, EngineOptions{.n_ctx = 256});
  const std::vector<Token> tokens = testing::prose_tokens(96);
  Sequence full = engine.new_sequence();
  engine.forward(full, tokens.data(), 96);
  for (SummaryMode mode : {SummaryMode::Sum, SummaryMode::Mean}) {
    Sequence seq = engine.new_sequence(budget(EvictionPolicy::Window, 64, mode));
    engine.forward(seq, tokens.data(), 96);
    const EvictionBook& book = *seq.book();
    ASSERT_TRUE(book.has_summary);
    // Window keeps the newest 63 (entries 33..95) and folds entries 0..32 into slot 63.
    EXPECT_EQ(book.entry[0][63], -1);
    EXPECT_EQ(book.entry[0][0], 33);
    EXPECT_EQ(book.merged[0], 33);
    const int l = 3, h = 1;
    for (int d = 0; d < c.head_dim; d += 9) {
      double sum = 0;
      for (int64_t e = 0; e < 33; ++e)
        sum += f16_to_f32(full.pool().v(full.block_of(e), l, h)[size_t(full.slot_of(e)) * size_t(c.head_dim) + size_t(d)]);
      const double want = mode == SummaryMode::Mean ? sum / 33 : sum;
      const double got = f16_to_f32(seq.pool().v(seq.block_of(63), l, h)[size_t(seq.slot_of(63)) * size_t(c.head_dim) + size_t(d)]);
      EXPECT_NEAR(got, want, 2e-3 * std::max(1.0, std::fabs(want)));
    }
  }
}

TEST(Eviction, SnapKvSelectsOnceWhenThePromptEnds) {
  const Model& m = testing::default_model();
  ThreadPool pool(2);
  Engine engine(m, pool, EngineOptions{.n_ctx = 512, .kv_tokens = 2048});
  const std::vector<Token> tokens = testing::prose_tokens(300);
  Sequence seq = engine.new_sequence(budget(EvictionPolicy::SnapKV, 64));
  const float* l = engine.forward(seq, tokens.data(), 300);
  const std::vector<float> before(l, l + m.config().n_vocab);
  EXPECT_EQ(seq.size(), 300);  // held whole until the prompt ends
  Sequence full = engine.new_sequence();
  const float* fl = engine.forward(full, tokens.data(), 300);
  EXPECT_EQ(std::memcmp(before.data(), fl, before.size() * sizeof(float)), 0);
  // The last logits come back unchanged (the observation window is run again, bitwise the same).
  const float* again = engine.end_prefill(seq, l);
  EXPECT_EQ(std::memcmp(before.data(), again, before.size() * sizeof(float)), 0);
  ASSERT_EQ(seq.size(), 64);
  const EvictionBook& book = *seq.book();
  EXPECT_TRUE(book.selected);
  EXPECT_EQ(book.pinned, 48);
  for (const auto& e : book.entry)  // the observation window (the last 16) is kept everywhere
    EXPECT_EQ(std::vector<int32_t>(e.end() - 16, e.end()), [] { std::vector<int32_t> w; for (int i = 284; i < 300; ++i) w.push_back(i); return w; }());
  const std::vector<std::vector<int32_t>> selected = book.entry;
  std::vector<Token> more = testing::prose_tokens(400);
  for (int i = 300; i < 400; ++i) engine.forward(seq, &more[size_t(i)], 1);
  EXPECT_LE(seq.size(), 96);
  for (size_t lane = 0; lane < selected.size(); ++lane)  // the selection stays; a window follows it
    EXPECT_EQ(std::vector<int32_t>(book.entry[lane].begin(), book.entry[lane].begin() + 48),
              std::vector<int32_t>(selected[lane].begin(), selected[lane].begin() + 48));
}

TEST(Eviction, AForkEvictsIntoItsOwnCopy) {
  const Model& m = testing::default_model();
  ThreadPool pool(2);
  Engine engine(m, pool, EngineOptions{.n_ctx = 128, .kv_tokens = 1024});
  const std::vector<Token> tokens = testing::prose_tokens(250);
  const KvBudget b = budget(EvictionPolicy::Tova, 64);
  Sequence a = engine.new_sequence(b);
  engine.forward(a, tokens.data(), 150);
  Sequence f = a.fork();
  const float* lf = engine.forward(f, &tokens[150], 100);
  const std::vector<float> from_fork(lf, lf + m.config().n_vocab);
  const float* la = engine.forward(a, &tokens[150], 100);
  EXPECT_EQ(std::memcmp(from_fork.data(), la, from_fork.size() * sizeof(float)), 0);
  EXPECT_EQ(*a.book(), *f.book());
}

TEST(Eviction, BadSettingsAreRefused) {
  const Model& m = testing::default_model();
  ThreadPool pool(1);
  Engine engine(m, pool, EngineOptions{.n_ctx = 128});
  auto kind = [&](const KvBudget& b) {
    try {
      engine.new_sequence(b);
    } catch (const Error& e) {
      return e.kind();
    }
    return ErrorKind::Internal;
  };
  KvBudget b = budget(EvictionPolicy::Sinks, 4);
  EXPECT_EQ(kind(b), ErrorKind::InvalidArgument);  // no room beside the 4 sinks
  b.budget = -3;
  EXPECT_EQ(kind(b), ErrorKind::InvalidArgument);
  b = budget(EvictionPolicy::SnapKV, 16);  // not above its observation window
  EXPECT_EQ(kind(b), ErrorKind::InvalidArgument);
  b = budget(EvictionPolicy::H2O, 64);
  b.recent = 1.5;
  EXPECT_EQ(kind(b), ErrorKind::InvalidArgument);
  EXPECT_THROW(parse_eviction_policy("lru"), Error);
  // A budgeted sequence whose context is smaller than budget + interval: refused when it fills.
  Sequence seq = engine.new_sequence(budget(EvictionPolicy::Window, 120));
  const std::vector<Token> tokens = testing::prose_tokens(150);
  try {
    engine.forward(seq, tokens.data(), 150);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::ResourceExhausted);
  }
}

}  // namespace
}  // namespace kvstash
