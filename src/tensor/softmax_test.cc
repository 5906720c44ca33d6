// Kernels::softmax: the same bits at every SIMD level, for every length (tails included), and
// within 2 ulp of softmax computed in double with libm's exp.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "tensor/kernel_test_util.h"

namespace kvstash {
namespace {

std::vector<float> scores(int64_t n, float spread, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, spread);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = d(rng);
  return x;
}

TEST(Softmax, SameBitsAtEveryLevelForEveryLength) {
  KVSTASH_SKIP_WITHOUT_SIMD();
  for (int64_t n : {1, 2, 7, 8, 15, 16, 17, 31, 33, 100, 257, 2048, 4099})
    for (float spread : {0.5f, 5.0f, 60.0f}) {  // 60: many entries below expf's normal range
      const std::vector<float> in = scores(n, spread, uint32_t(n));
      std::vector<float> want = in;
      Kernels::at(SimdLevel::Scalar).softmax(want.data(), n);
      for (const Kernels* k : testing::simd_levels()) {
        std::vector<float> got = in;
        k->softmax(got.data(), n);
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(testing::bits(got[size_t(i)]), testing::bits(want[size_t(i)]))
              << k->name() << " n=" << n << " spread=" << spread << " i=" << i;
      }
    }
}

TEST(Softmax, CloseToLibmInDouble) {
  for (const Kernels* k : testing::every_level())
    for (int64_t n : {1, 9, 300, 2048}) {
      std::vector<float> x = scores(n, 4.0f, 7);
      float max = x[0];
      double sum = 0;
      for (float v : x) max = std::max(max, v);
      std::vector<double> want;  // of the float differences the kernel takes exp of
      for (float v : x) want.push_back(std::exp(double(v - max)));
      for (double v : want) sum += v;
      k->softmax(x.data(), n);
      for (size_t i = 0; i < x.size(); ++i)
        EXPECT_NEAR(x[i], want[i] / sum, 2.5e-7 * (want[i] / sum) + 1e-30) << k->name() << " n=" << n << " i=" << i;
    }
}

TEST(Softmax, ValuesFarBelowTheMaximumAreZeroNotDenormal) {
  for (const Kernels* k : testing::every_level()) {
    std::vector<float> x = {0.0f, -100.0f, -87.0f, -1e30f, -INFINITY};
    k->softmax(x.data(), int64_t(x.size()));
    EXPECT_EQ(x[1], 0.0f);
    EXPECT_GT(x[2], 0.0f);
    EXPECT_EQ(x[3], 0.0f);
    EXPECT_EQ(x[4], 0.0f);
    EXPECT_NEAR(x[0], 1.0f, 1e-7f);
  }
}

}  // namespace
}  // namespace kvstash
