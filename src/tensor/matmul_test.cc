// matmul_rows: every element bit-identical to vec_dot, for the scalar and the AVX2 kernels, for
// any row range and token count (tiles, row and token remainders, partial 8-block groups).
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "kvstash/kernels.h"
#include "tensor/float_kernels.h"
#include "tensor/kernel_test_util.h"

namespace kvstash {
namespace {

using testing::bits;
using testing::every_level;

std::vector<uint8_t> random_float_rows(DType t, int64_t cols, int64_t rows, std::mt19937& rng);

// Random weights of type t (sane f16 scales), quantized activations from random floats.
std::vector<uint8_t> random_weights(DType t, int64_t cols, int64_t rows, std::mt19937& rng) {
  // Float rows: finite values (random bytes hold NaNs, whose payloads depend on fma operand order).
  if (dtype_info(t).block_size == 1) return random_float_rows(t, cols, rows, rng);
  std::vector<float> x(size_t(cols * rows));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x) v = normal(rng);
  std::vector<uint8_t> w(row_bytes(t, cols) * size_t(rows));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : w) b = uint8_t(byte(rng));
  const int bs = int(dtype_info(t).block_size), bb = int(row_bytes(t, bs));
  for (size_t off = 0; off < w.size(); off += size_t(bb)) {  // scale fields: small finite f16
    const uint16_t d = f32_to_f16(0.01f + 0.001f * float(byte(rng))), m = f32_to_f16(-0.05f * float(byte(rng)) / 255.0f);
    std::memcpy(&w[off + (t == DType::Q6_K ? 208 : 0)], &d, 2);  // q6_K's d is its last field
    if (t == DType::Q4_1 || t == DType::Q5_1) std::memcpy(&w[off + 2], &m, 2);
  }
  return w;
}

void check(DType t, int64_t cols, int64_t rows, int64_t n, const Kernels& k) {
  std::mt19937 rng(uint32_t(cols * 131 + rows * 7 + n));
  const std::vector<uint8_t> w = random_weights(t, cols, rows, rng);
  const size_t ws = row_bytes(t, cols), as = row_bytes(activation_type(t), cols);
  std::vector<float> x(size_t(cols * n));
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (float& v : x) v = normal(rng);
  std::vector<uint8_t> act(as * size_t(n));
  for (int64_t i = 0; i < n; ++i) k.quantize_activations(t, &x[size_t(i * cols)], &act[size_t(i) * as], cols);
  std::vector<float> out(size_t(rows * n), -1.0f);
  // Two calls over a split row range, as threads do.
  const int64_t mid = rows / 3;
  k.matmul_rows(t, cols, w.data(), ws, 0, mid, act.data(), as, n, out.data(), rows);
  k.matmul_rows(t, cols, w.data(), ws, mid, rows, act.data(), as, n, out.data(), rows);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) {
      const float ref = k.vec_dot(t, cols, &w[size_t(r) * ws], &act[size_t(i) * as]);
      ASSERT_EQ(bits(out[size_t(i * rows + r)]), bits(ref))
          << k.name() << " " << dtype_name(uint32_t(t)) << " cols " << cols << " row " << r << " token " << i;
    }
}

TEST(MatmulRows, BitIdenticalToVecDot) {
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q6_K, DType::F32})
    for (int64_t cols : {256, 288, 576, 1536})
      for (int64_t n : {1, 3, 4, 7, 70}) {
        if (cols % dtype_info(t).block_size != 0) continue;
        for (const Kernels* k : every_level()) check(t, cols, 13, n, *k);
      }
}

// The 32-element block types against the scalar vec_dot: every tail of 8- and 16-block groups,
// token counts 1..17 (one token, odd and even counts, token pairs) and past a token block, row
// counts that are not a multiple of the row tile, and rows longer than the AVX-512 kernel's
// activation buffer (71936 columns).
void check_against_scalar(DType t, int64_t cols, int64_t rows, int64_t n, const Kernels& k) {
  std::mt19937 rng(uint32_t(cols * 31 + rows * 5 + n));
  const std::vector<uint8_t> w = random_weights(t, cols, rows, rng);
  const size_t ws = row_bytes(t, cols), as = row_bytes(activation_type(t), cols);
  std::vector<float> x(size_t(cols * n));
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (float& v : x) v = normal(rng);
  std::vector<uint8_t> act(as * size_t(n));
  for (int64_t i = 0; i < n; ++i) k.quantize_activations(t, &x[size_t(i * cols)], &act[size_t(i) * as], cols);
  // Quants of -128, which quantization never writes, in every activation block (first and last).
  const size_t ab = row_bytes(activation_type(t), 32), head = ab - 32;
  for (size_t off = 0; off < act.size(); off += ab) act[off + head] = act[off + ab - 1] = 0x80;
  std::vector<float> out(size_t(rows * n), -1.0f);
  k.matmul_rows(t, cols, w.data(), ws, 0, rows, act.data(), as, n, out.data(), rows);
  const Kernels& scalar = Kernels::at(SimdLevel::Scalar);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) {
      const float ref = scalar.vec_dot(t, cols, &w[size_t(r) * ws], &act[size_t(i) * as]);
      ASSERT_EQ(bits(out[size_t(i * rows + r)]), bits(ref))
          << k.name() << " " << dtype_name(uint32_t(t)) << " cols " << cols << " rows " << rows << " n " << n
          << ": row " << r << " token " << i;
    }
}

TEST(MatmulRows, Q32TypesMatchScalarForEveryTail) {
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0})
    for (const Kernels* k : every_level()) {
      for (int64_t nb = 1; nb <= 33; ++nb)
        for (int64_t n : {1, 2, 3, 17}) check_against_scalar(t, 32 * nb, 7, n, *k);
      for (int64_t n = 1; n <= 17; ++n) check_against_scalar(t, 32 * 9, 6, n, *k);
      for (int64_t n : {64, 65, 83}) check_against_scalar(t, 32 * 18, 5, n, *k);
      check_against_scalar(t, 32 * 8 * 281, 3, 3, *k);
    }
}

}  // namespace
}  // namespace kvstash

namespace kvstash {
namespace {

// Activation quantization: the AVX2 path writes the scalar path's bytes, ties (x * id = k + 0.5)
// and zeros included.
TEST(QuantizeActivations, EverySimdLevelWritesScalarBytes) {
  KVSTASH_SKIP_WITHOUT_SIMD();
  for (const Kernels* k : testing::simd_levels()) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q6_K})
    for (int rep = 0; rep < 50; ++rep) {
      const int64_t n = 512;
      std::vector<float> x(static_cast<size_t>(n));
      for (size_t i = 0; i < x.size(); ++i) {
        x[i] = normal(rng);
        if (rep % 3 == 1) x[i] = float(int(x[i] * 4)) * 0.5f + 0.25f * float(i % 2);  // many ties
        if (rep % 5 == 2 && i < 64) x[i] = 0.0f;  // all-zero blocks
      }
      if (rep % 3 == 1) x[0] = 63.5f;  // amax 63.5: id = 2, halves land on .5 exactly
      std::vector<uint8_t> a(row_bytes(activation_type(t), n)), b(a.size());
      Kernels::at(SimdLevel::Scalar).quantize_activations(t, x.data(), a.data(), n);
      k->quantize_activations(t, x.data(), b.data(), n);
      ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size()), 0)
          << k->name() << " " << dtype_name(uint32_t(t)) << " rep " << rep;
    }
  }
}

}  // namespace
}  // namespace kvstash

namespace kvstash {
namespace {

// Float weight rows (f32 / f16 / bf16, f32 activations): matmul_rows at every level gives the
// scalar vec_dot's bits, for row counts that are not a multiple of any tile, 1..17 tokens, rows
// of any length (tails of 1..7 elements), and the column-panel path (many tokens x long rows).
std::vector<uint8_t> random_float_rows(DType t, int64_t cols, int64_t rows, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint8_t> w(row_bytes(t, cols) * size_t(rows));
  for (int64_t i = 0; i < cols * rows; ++i) {
    const float v = normal(rng);
    if (t == DType::F32) std::memcpy(&w[size_t(4 * i)], &v, 4);
    const uint16_t h = t == DType::F16 ? f32_to_f16(v) : uint16_t(bits(v) >> 16);
    if (t != DType::F32) std::memcpy(&w[size_t(2 * i)], &h, 2);
  }
  return w;
}

void check_float(DType t, int64_t cols, int64_t rows, int64_t n) {
  std::mt19937 rng(uint32_t(cols * 131 + rows * 7 + n));
  const std::vector<uint8_t> w = random_float_rows(t, cols, rows, rng);
  std::vector<float> x(size_t(cols * n));
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (float& v : x) v = normal(rng);
  const size_t ws = row_bytes(t, cols), as = size_t(cols) * sizeof(float);
  const Kernels& scalar = Kernels::at(SimdLevel::Scalar);
  std::vector<float> ref(size_t(rows * n));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i)
      ref[size_t(i * rows + r)] = scalar.vec_dot(t, cols, &w[size_t(r) * ws], &x[size_t(i * cols)]);
  for (const Kernels* k : every_level()) {
    std::vector<float> out(size_t(rows * n), -1.0f);
    const int64_t mid = rows / 3;  // two calls over a split row range, as threads do
    k->matmul_rows(t, cols, w.data(), ws, 0, mid, x.data(), as, n, out.data(), rows);
    k->matmul_rows(t, cols, w.data(), ws, mid, rows, x.data(), as, n, out.data(), rows);
    for (size_t e = 0; e < out.size(); ++e)
      ASSERT_EQ(bits(out[e]), bits(ref[e])) << k->name() << " " << dtype_name(uint32_t(t)) << " cols " << cols
                                            << " rows " << rows << " n " << n << " row " << e % size_t(rows)
                                            << " token " << e / size_t(rows);
  }
}

TEST(MatmulRows, FloatTypesGiveScalarVecDotBits) {
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    for (int64_t cols : {1, 7, 8, 9, 15, 16, 17, 24, 63, 100, 576, 1000})
      for (int64_t n = 1; n <= 17; ++n) check_float(t, cols, 13, n);
    for (int64_t rows : {1, 2, 3, 17, 33}) check_float(t, 40, rows, 5);
    check_float(t, 1000, 21, 70);  // two token blocks, one pass over the rows
    check_float(t, 4100, 19, 17);  // column panels, a 4-element tail in the last one
    check_float(t, 1100, 70, 70);  // column panels, two row blocks, two token blocks
  }
}

// The AVX-512 element-wise row helpers, called directly (the AVX-512 table keeps AVX2's axpy_f16
// and f16_to_f32_row, kernels_avx512.cc): scalar bits for every length 0..100 and a few long
// ones, nothing written past the end.
TEST(FloatRowsAvx512, ElementwiseHelpersGiveScalarBits) {
  if (Kernels::best_level() < SimdLevel::AVX512) GTEST_SKIP() << "CPU lacks AVX-512";
  const Kernels& scalar = Kernels::at(SimdLevel::Scalar);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<int64_t> lengths;
  for (int64_t n = 0; n <= 100; ++n) lengths.push_back(n);
  for (int64_t n : {255, 256, 257, 1000, 1536}) lengths.push_back(n);
  for (int64_t n : lengths) {
    const size_t len = static_cast<size_t>(n);
    std::vector<float> a(len), y0(len), y1(len + 1, 7.0f);  // y1[n], h1[n]: must stay
    std::vector<uint16_t> h(len), h0(len), h1(len + 1, 0x1234);
    for (size_t i = 0; i < a.size(); ++i) a[i] = normal(rng), h[i] = f32_to_f16(normal(rng)), y0[i] = y1[i] = normal(rng);
    const float alpha = normal(rng);
    scalar.axpy_f16(alpha, h.data(), y0.data(), n);
    detail::axpy_f16_avx512(alpha, h.data(), y1.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(bits(y0[size_t(i)]), bits(y1[size_t(i)])) << "axpy_f16 " << n << " " << i;
    ASSERT_EQ(y1[size_t(n)], 7.0f) << "axpy_f16 wrote past " << n;
    scalar.f16_to_f32_row(h.data(), y0.data(), n);
    y1[size_t(n)] = 7.0f;
    detail::f16_to_f32_row_avx512(h.data(), y1.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(bits(y0[size_t(i)]), bits(y1[size_t(i)])) << "f16_to_f32_row " << n;
    ASSERT_EQ(y1[size_t(n)], 7.0f) << "f16_to_f32_row wrote past " << n;
    scalar.f32_to_f16_row(a.data(), h0.data(), n);
    detail::f32_to_f16_row_avx512(a.data(), h1.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(h0[size_t(i)], h1[size_t(i)]) << "f32_to_f16_row " << n;
    ASSERT_EQ(h1[size_t(n)], 0x1234) << "f32_to_f16_row wrote past " << n;
  }
}

// k-quant weights: random quant and scale bytes, small finite f16 factors (d, dmin; q6_K's d is
// the block's last field).
std::vector<uint8_t> random_kquant_rows(DType t, int64_t cols, int64_t rows, std::mt19937& rng) {
  std::vector<uint8_t> w(row_bytes(t, cols) * size_t(rows));
  for (auto& b : w) b = uint8_t(rng());
  const size_t bb = row_bytes(t, 256);
  std::uniform_real_distribution<float> u(-0.1f, 0.1f);
  for (size_t off = 0; off < w.size(); off += bb)
    for (size_t f : t == DType::Q6_K ? std::vector<size_t>{208} : std::vector<size_t>{0, 2}) {
      const uint16_t h = f32_to_f16(u(rng));
      std::memcpy(&w[off + f], &h, 2);
    }
  return w;
}

// q8_K activations: quantized random floats, or (fuzz) random bytes with a finite d, so that
// qs holds -128 and bsums disagree with qs.
std::vector<uint8_t> random_q8_K(int64_t cols, int64_t n, bool fuzz, std::mt19937& rng) {
  const size_t as = row_bytes(DType::Q8_K, cols);
  std::vector<uint8_t> act(as * size_t(n));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  if (fuzz) {
    for (auto& b : act) b = uint8_t(rng());
    for (size_t off = 0; off < act.size(); off += 292) {
      const float d = 0.01f * normal(rng);
      std::memcpy(&act[off], &d, 4);
    }
    return act;
  }
  std::vector<float> x(static_cast<size_t>(cols));
  for (int64_t i = 0; i < n; ++i) {
    for (float& v : x) v = normal(rng);
    Kernels::at(SimdLevel::Scalar).quantize_activations(DType::Q6_K, x.data(), &act[size_t(i) * as], cols);
  }
  return act;
}

// The k-quant tiles (16-row panels at AVX-512, 8-row at AVX2; one token, 2..8 tokens and more
// than 8 take different paths; token groups of 8 or 4 with tails): row counts and offsets off the
// panel, token counts 1..20, 1..17 super-blocks; every element has the scalar vec_dot's bits.
TEST(MatmulRows, KQuantTilesGiveScalarBits) {
  const Kernels& scalar = Kernels::at(SimdLevel::Scalar);
  for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K})
    for (int64_t blocks : {1, 2, 3, 9, 17})
      for (int64_t rows : {5, 16, 37})
        for (int64_t n : {1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 17, 20}) {
          const int64_t cols = 256 * blocks;
          std::mt19937 rng(uint32_t(blocks * 1000 + rows * 37 + n));
          const std::vector<uint8_t> w = random_kquant_rows(t, cols, rows, rng);
          const std::vector<uint8_t> act = random_q8_K(cols, n, n % 2 == 1, rng);
          const size_t ws = row_bytes(t, cols), as = row_bytes(DType::Q8_K, cols);
          std::vector<float> ref(size_t(rows * n));
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t i = 0; i < n; ++i)
              ref[size_t(i * rows + r)] = scalar.vec_dot(t, cols, &w[size_t(r) * ws], &act[size_t(i) * as]);
          for (const Kernels* k : every_level()) {
            std::vector<float> out(size_t(rows * n), -1.0f);
            const int64_t mid = rows / 3;  // split like the engine's threads: an unaligned start
            k->matmul_rows(t, cols, w.data(), ws, 0, mid, act.data(), as, n, out.data(), rows);
            k->matmul_rows(t, cols, w.data(), ws, mid, rows, act.data(), as, n, out.data(), rows);
            for (size_t i = 0; i < out.size(); ++i)
              ASSERT_EQ(bits(out[i]), bits(ref[i])) << k->name() << " " << dtype_name(uint32_t(t)) << " blocks "
                                                    << blocks << " rows " << rows << " n " << n << " row "
                                                    << i % size_t(rows) << " token " << i / size_t(rows);
          }
        }
}

}  // namespace
}  // namespace kvstash

namespace kvstash {
namespace {

// q8_K activations (k-quant weights): every level writes the scalar bytes, also where several
// elements share the largest magnitude with opposite signs (the first one sets the sign of d),
// for all-zero blocks and for a subnormal largest element (the scale overflows to infinity).
TEST(QuantizeActivations, Q8_KEdgeCasesGiveScalarBytes) {
  std::mt19937 rng(12);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const Kernels* k : every_level())
    for (int64_t blocks : {1, 3, 17})
      for (int rep = 0; rep < 20; ++rep) {
        const int64_t n = 256 * blocks;
        std::vector<float> x(static_cast<size_t>(n));
        for (float& v : x) v = normal(rng) * (rep % 4 == 3 ? 1e-3f : 1.0f);
        if (rep % 5 == 1) {  // ties of |x|: -m before m, or m before -m
          x[size_t(rng() % size_t(n))] = rep % 2 ? 9.0f : -9.0f;
          x[size_t(rng() % size_t(n))] = rep % 2 ? -9.0f : 9.0f;
        }
        if (rep % 5 == 2) std::fill(x.begin(), x.begin() + 256, 0.0f);
        if (rep % 5 == 3) {
          std::fill(x.begin(), x.begin() + 256, 0.0f);
          x[7] = -1e-40f, x[100] = 3e-41f;  // subnormals
        }
        std::vector<uint8_t> a(row_bytes(DType::Q8_K, n)), b(a.size());
        Kernels::at(SimdLevel::Scalar).quantize_activations(DType::Q4_K, x.data(), a.data(), n);
        k->quantize_activations(DType::Q4_K, x.data(), b.data(), n);
        ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size()), 0) << k->name() << " blocks " << blocks << " rep " << rep;
      }
}

}  // namespace
}  // namespace kvstash
