// The codec on a real state: 120 tokens of prose through the default model, coded in chunks of
// 64 slots (the last one partial).
#include <gtest/gtest.h>

#include <cmath>

#include "codec/kv_codec.h"
#include "kvstash/kernels.h"
#include "kvstash/prefix.h"
#include "kvstash/state.h"
#include "kvstash/thread_pool.h"
#include "test_util.h"

namespace kvstash::codec {
namespace {

const State& real_state() {
  static const State s = [] {
    ThreadPool threads(2);
    Engine engine(testing::default_model(), threads, EngineOptions{.n_ctx = 256});
    return process_prefix(engine, testing::prose_tokens(120));
  }();
  return s;
}

// Codes every chunk of the state at a level and returns the decoded state and the total bytes.
State round_trip(const State& s, const LevelParams& lv, size_t& bytes, ThreadPool* pool) {
  State out = s;
  out.allocate_kv();
  KvIn in;
  KvOut o;
  for (int l = 0; l < s.arch.n_layer; ++l) {
    in.k.push_back(s.k(l));
    in.v.push_back(s.v(l));
    o.k.push_back(out.mutable_k(l));
    o.v.push_back(out.mutable_v(l));
  }
  in.stride = o.stride = s.kv_entries();
  bytes = 0;
  for (int64_t first = 0; first < s.kv_entries(); first += 64) {
    const ChunkShape shape{s.arch.n_layer, s.arch.n_head_kv, s.arch.head_dim, std::min<int64_t>(64, s.kv_entries() - first)};
    in.first = o.first = first;
    const auto b = encode_chunk(shape, in, lv, pool);
    bytes += b.size();
    decode_chunk(shape, b.data(), b.size(), lv, o, pool);
  }
  return out;
}

TEST(KvCodecReal, LosslessIsExactAndSmallerThanF16) {
  const State& s = real_state();
  ThreadPool two(2);
  size_t bytes = 0;
  const State back = round_trip(s, lossless_level(), bytes, &two);
  for (int l = 0; l < s.arch.n_layer; ++l) {
    ASSERT_EQ(0, std::memcmp(back.k(l), s.k(l), s.kv_elements() * 2)) << l;
    ASSERT_EQ(0, std::memcmp(back.v(l), s.v(l), s.kv_elements() * 2)) << l;
  }
  const double values = 2.0 * s.arch.n_layer * double(s.kv_elements());
  EXPECT_LT(double(bytes) * 8 / values, 14.0);
}

TEST(KvCodecReal, LossyLevelsShrinkAndErrorFallsWithLevel) {
  const State& s = real_state();
  size_t prev_bytes = 0;
  double prev_err = 0;
  for (int level = 1; level <= built_in_levels(); ++level) {
    size_t bytes = 0;
    const State back = round_trip(s, built_in_level(level), bytes, nullptr);
    double e2 = 0, r2 = 0;
    for (int l = 0; l < s.arch.n_layer; ++l)
      for (size_t i = 0; i < s.kv_elements(); ++i)
        for (int kv = 0; kv < 2; ++kv) {
          const double x = f16_to_f32(kv ? s.v(l)[i] : s.k(l)[i]), y = f16_to_f32(kv ? back.v(l)[i] : back.k(l)[i]);
          e2 += (x - y) * (x - y);
          r2 += x * x;
        }
    const double err = std::sqrt(e2 / r2);
    if (level > 1) {
      EXPECT_GT(bytes, prev_bytes) << level;
      EXPECT_LT(err, prev_err) << level;
    }
    EXPECT_LT(err, 0.3) << level;
    prev_bytes = bytes;
    prev_err = err;
  }
  // Level 1 is at most 2.5 bits per value here, all chunk bytes counted.
  size_t bytes = 0;
  round_trip(s, built_in_level(1), bytes, nullptr);
  EXPECT_LT(double(bytes) * 8 / (2.0 * s.arch.n_layer * double(s.kv_elements())), 2.5);
}

}  // namespace
}  // namespace kvstash::codec
