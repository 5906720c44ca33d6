// attention_scores_f16 / attention_values_f16: bit-identical to dot_f32_f16 * scale and axpy_f16
// applied row by row, at every SIMD level.
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "kvstash/kernels.h"
#include "tensor/kernel_test_util.h"

namespace kvstash {
namespace {

using testing::bits;
using testing::every_level;

TEST(AttentionKernels, RowByRowBitsAtEveryLevel) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const Kernels* k : every_level()) {
    for (int64_t dim : {8, 12, 64, 128})
      for (int64_t n : {0, 1, 7, 8, 9, 31, 32, 45}) {
        std::vector<float> q(static_cast<size_t>(dim)), p(static_cast<size_t>(n)), out(static_cast<size_t>(dim)), ref(static_cast<size_t>(dim));
        for (float& v : q) v = normal(rng);
        for (float& v : p) v = normal(rng);
        for (size_t i = 0; i < out.size(); ++i) out[i] = ref[i] = normal(rng);
        std::vector<uint16_t> rows(static_cast<size_t>(n * dim));
        for (auto& h : rows) h = f32_to_f16(normal(rng));
        std::vector<float> scores(size_t(n) + 1, -7.0f);
        k->attention_scores_f16(q.data(), rows.data(), n, dim, 0.125f, scores.data());
        for (int64_t j = 0; j < n; ++j)
          ASSERT_EQ(bits(scores[size_t(j)]), bits(k->dot_f32_f16(q.data(), &rows[size_t(j * dim)], dim) * 0.125f))
              << k->name() << " dim " << dim << " n " << n << " row " << j;
        ASSERT_EQ(scores[size_t(n)], -7.0f);
        k->attention_values_f16(p.data(), rows.data(), n, dim, out.data());
        for (int64_t j = 0; j < n; ++j) k->axpy_f16(p[size_t(j)], &rows[size_t(j * dim)], ref.data(), dim);
        for (int64_t i = 0; i < dim; ++i) ASSERT_EQ(bits(out[size_t(i)]), bits(ref[size_t(i)])) << k->name() << " " << dim << " " << n;
      }
  }
}

}  // namespace
}  // namespace kvstash
