// attention_scores_f16_group / attention_values_f16_group: bit-identical to the single-head
// kernels called head by head, at every SIMD level, and to the scalar definition
// (dot_f32_f16 * scale; axpy_f16 row by row); nothing outside the heads' spans is written.
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kvstash/kernels.h"
#include "tensor/kernel_test_util.h"

namespace kvstash {
namespace {

using testing::bits;
using testing::every_level;

constexpr float kSentinel = -7.25f;

struct Case {
  int64_t dim, n;
  int heads;
  std::string name(const Kernels& k) const {
    return std::string(k.name()) + " dim " + std::to_string(dim) + " n " + std::to_string(n) + " heads " +
           std::to_string(heads);
  }
};

std::vector<Case> cases() {
  std::vector<Case> all;
  for (int64_t dim : {8, 12, 16, 24, 40, 64, 72, 128, 256})
    for (int64_t n : {0, 1, 2, 3, 5, 7, 8, 9, 17, 32, 45})
      for (int heads : {1, 2, 3, 4, 5, 6, 7, 8, 9, 12}) all.push_back({dim, n, heads});
  return all;
}

TEST(AttentionGroupKernels, ScoresMatchHeadByHeadAtEveryLevel) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const Kernels& scalar = Kernels::at(SimdLevel::Scalar);
  for (const Case& c : cases()) {
    const int64_t q_stride = c.dim + 3, s_stride = c.n + 5;  // strides wider than the data
    std::vector<float> q(size_t(c.heads * q_stride));
    for (float& v : q) v = normal(rng);
    std::vector<uint16_t> rows(size_t(c.n * c.dim));
    for (uint16_t& h : rows) h = f32_to_f16(normal(rng));
    for (const Kernels* k : every_level()) {
      std::vector<float> scores(size_t(c.heads * s_stride), kSentinel);
      k->attention_scores_f16_group(q.data(), q_stride, c.heads, rows.data(), c.n, c.dim, 0.125f, scores.data(),
                                    s_stride);
      for (int h = 0; h < c.heads; ++h) {
        std::vector<float> one(size_t(c.n) + 1, kSentinel);
        k->attention_scores_f16(&q[size_t(h * q_stride)], rows.data(), c.n, c.dim, 0.125f, one.data());
        for (int64_t j = 0; j < s_stride; ++j) {
          const float got = scores[size_t(h * s_stride + j)];
          if (j >= c.n) {
            ASSERT_EQ(got, kSentinel) << c.name(*k) << ": wrote past head " << h << "'s scores";
            continue;
          }
          ASSERT_EQ(bits(got), bits(one[size_t(j)])) << c.name(*k) << " head " << h << " row " << j;
          const float want = scalar.dot_f32_f16(&q[size_t(h * q_stride)], &rows[size_t(j * c.dim)], c.dim) * 0.125f;
          ASSERT_EQ(bits(got), bits(want)) << c.name(*k) << " head " << h << " row " << j << " vs scalar";
        }
      }
    }
  }
}

TEST(AttentionGroupKernels, ValuesMatchHeadByHeadAtEveryLevel) {
  std::mt19937 rng(12);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const Kernels& scalar = Kernels::at(SimdLevel::Scalar);
  for (const Case& c : cases()) {
    const int64_t p_stride = c.n + 2, out_stride = c.dim + 4;
    std::vector<float> p(size_t(c.heads * p_stride)), start(size_t(c.heads * out_stride), kSentinel);
    for (float& v : p) v = normal(rng);
    for (int h = 0; h < c.heads; ++h)
      for (int64_t i = 0; i < c.dim; ++i) start[size_t(h * out_stride + i)] = normal(rng);
    std::vector<uint16_t> rows(size_t(c.n * c.dim));
    for (uint16_t& h : rows) h = f32_to_f16(normal(rng));
    // The scalar definition: axpy_f16 row by row, per head.
    std::vector<float> want = start;
    for (int h = 0; h < c.heads; ++h)
      for (int64_t j = 0; j < c.n; ++j)
        scalar.axpy_f16(p[size_t(h * p_stride + j)], &rows[size_t(j * c.dim)], &want[size_t(h * out_stride)], c.dim);
    for (const Kernels* k : every_level()) {
      std::vector<float> out = start, per_head = start;
      k->attention_values_f16_group(p.data(), p_stride, c.heads, rows.data(), c.n, c.dim, out.data(), out_stride);
      for (int h = 0; h < c.heads; ++h)
        k->attention_values_f16(&p[size_t(h * p_stride)], rows.data(), c.n, c.dim, &per_head[size_t(h * out_stride)]);
      for (size_t i = 0; i < out.size(); ++i) {
        ASSERT_EQ(bits(out[i]), bits(per_head[i])) << c.name(*k) << " element " << i;
        ASSERT_EQ(bits(out[i]), bits(want[i])) << c.name(*k) << " element " << i << " vs scalar";
      }
    }
  }
}

}  // namespace
}  // namespace kvstash
