// The logits of every position are bitwise identical whatever the split of the tokens into
// forward calls and whatever the thread count (and the SIMD target).
#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <random>

#include "kvstash/engine.h"
#include "kvstash/kernels.h"
#include "test_util.h"

namespace kvstash {
namespace {

constexpr int64_t kTokens = 320;

// All logits, feeding the tokens in calls of the given sizes (on the given SIMD level's kernels).
std::vector<float> run_split(int threads, const std::vector<Token>& tokens, const std::vector<int64_t>& split,
                             std::optional<SimdLevel> simd = std::nullopt) {
  const Model& m = testing::default_model();
  ThreadPool pool(threads);
  Engine engine(m, pool, EngineOptions{.n_ctx = 512, .simd = simd});
  if (simd) {
    EXPECT_EQ(engine.kernels().level(), *simd);
  }
  Sequence seq = engine.new_sequence();
  return testing::all_logits_in_calls(engine, seq, tokens, split);
}

std::vector<std::vector<int64_t>> splits(int64_t n) {
  std::vector<std::vector<int64_t>> s = {{n}, std::vector<int64_t>(size_t(n), 1), {7, n - 7}};
  std::mt19937 rng(2024);
  for (int r = 0; r < 3; ++r) {
    std::vector<int64_t> parts;
    for (int64_t left = n; left > 0;) {
      const int64_t k = std::min<int64_t>(left, 1 + int64_t(rng() % 64));
      parts.push_back(k);
      left -= k;
    }
    s.push_back(parts);
  }
  return s;
}

void expect_same_bits(const std::vector<float>& want, const std::vector<float>& got, const std::string& what) {
  ASSERT_EQ(want.size(), got.size()) << what;
  const size_t nv = size_t(testing::default_model().config().n_vocab);
  for (size_t row = 0; row < want.size() / nv; ++row)
    ASSERT_EQ(0, std::memcmp(&want[row * nv], &got[row * nv], nv * sizeof(float)))
        << what << ": logits of position " << row << " differ";
}

class BatchInvariance : public ::testing::TestWithParam<int> {};

TEST_P(BatchInvariance, EverySplitGivesIdenticalLogits) {
  const std::vector<Token> tokens = testing::prose_tokens(kTokens);
  static const std::vector<float> reference = run_split(1, tokens, {kTokens});
  int i = 0;
  for (const auto& split : splits(kTokens))
    expect_same_bits(reference, run_split(GetParam(), tokens, split),
                     "threads " + std::to_string(GetParam()) + ", split #" + std::to_string(i++));
}

INSTANTIATE_TEST_SUITE_P(Threads, BatchInvariance, ::testing::Values(1, 2, 3));

TEST(SimdInvariance, EverySimdLevelGivesScalarLogits) {
  if (Kernels::best_level() == SimdLevel::Scalar) GTEST_SKIP() << "this CPU has no AVX2: nothing to compare";
  const std::vector<Token> tokens = testing::prose_tokens(24);
  const std::vector<float> scalar = run_split(2, tokens, {10, 14}, SimdLevel::Scalar);
  for (SimdLevel level : {SimdLevel::AVX2, SimdLevel::AVX512}) {
    if (level > Kernels::best_level()) continue;
    const std::vector<float> simd = run_split(2, tokens, {24}, level);
    expect_same_bits(simd, scalar, std::string("scalar vs ") + Kernels::at(level).name());
  }
}

}  // namespace
}  // namespace kvstash
