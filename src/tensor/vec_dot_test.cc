// vec_dot and the attention helpers: accurate against a double-precision reference, and
// bit-identical between the scalar and AVX2 kernels (the summation order is the algorithm's).
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "kvstash/kernels.h"
#include "tensor/kernel_test_util.h"

namespace kvstash {
namespace {

constexpr DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0,
                                  DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                                  DType::Q4_K, DType::Q5_K, DType::Q6_K};

using testing::bits;
using testing::every_level;

const Kernels& scalar() { return Kernels::at(SimdLevel::Scalar); }

std::vector<int64_t> lengths_for(DType t) {
  const int64_t bs = dtype_info(t).block_size;
  if (bs == 1) return {1, 7, 8, 9, 63, 64, 576, 1000, 1536};
  if (bs == 32) {  // 1..35 blocks (every tail of 8- and 16-block groups, twice over), 48, 64
    std::vector<int64_t> ns;
    for (int64_t b = 1; b <= 35; ++b) ns.push_back(32 * b);
    for (int64_t b : {48, 64}) ns.push_back(32 * b);
    return ns;
  }
  return {256, 512, 768, 1536, 2304, 4352};                     // 1, 2, 3, 6, 9, 17 blocks
}

// Byte offsets of the f16 scale fields in a block (random f16 bits would give inf/NaN).
std::vector<int> f16_fields(DType t) {
  switch (t) {
    case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: return {0};
    case DType::Q4_1: case DType::Q5_1: case DType::Q8_1: case DType::Q4_K: case DType::Q5_K: return {0, 2};
    case DType::Q6_K: return {208};
    default: return {};
  }
}

void put_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// A random row of type t: random quant bytes with sane scales, or random finite floats.
// Fuzzed activation blocks (q8_*) get random quants too, including -128.
std::vector<uint8_t> random_row(DType t, int64_t n, std::mt19937& rng) {
  std::vector<uint8_t> row(row_bytes(t, n));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const DTypeInfo& info = dtype_info(t);
  if (info.block_size == 1) {
    for (int64_t i = 0; i < n; ++i) {
      const float v = normal(rng);
      if (t == DType::F32) std::memcpy(&row[size_t(4 * i)], &v, 4);
      if (t == DType::F16) put_u16(&row[size_t(2 * i)], f32_to_f16(v));
      if (t == DType::BF16) put_u16(&row[size_t(2 * i)], uint16_t(bits(v) >> 16));
    }
    return row;
  }
  for (auto& b : row) b = uint8_t(rng());
  for (size_t blk = 0; blk < row.size(); blk += size_t(info.type_size)) {
    for (int off : f16_fields(t)) put_u16(&row[blk + size_t(off)], f32_to_f16(0.05f * normal(rng)));
    if (t == DType::Q8_K) {
      const float d = 0.01f * normal(rng);
      std::memcpy(&row[blk], &d, 4);
    }
  }
  return row;
}

std::vector<float> random_floats(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const float scale = std::pow(10.0f, std::uniform_real_distribution<float>(-2, 2)(rng));
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = scale * normal(rng);
  return x;
}

// Dequantized activations of type at (q8_0 / q8_1 / q8_K / f32), in double.
std::vector<double> dequant_act(DType at, const uint8_t* p, int64_t n) {
  std::vector<double> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (at == DType::F32) {
      float v;
      std::memcpy(&v, p + 4 * i, 4);
      x[size_t(i)] = v;
      continue;
    }
    const int64_t bs = dtype_info(at).block_size, ts = dtype_info(at).type_size;
    const uint8_t* blk = p + (i / bs) * ts;
    double d;
    int header;
    if (at == DType::Q8_K) {
      float f;
      std::memcpy(&f, blk, 4);
      d = f, header = 4;
    } else {
      uint16_t h;
      std::memcpy(&h, blk, 2);
      d = f16_to_f32(h), header = at == DType::Q8_0 ? 2 : 4;
    }
    x[size_t(i)] = d * int8_t(blk[header + i % bs]);
  }
  return x;
}

// The exact dot product of the dequantized operands, and sum |terms| (for the tolerance).
// q4_1 / q5_1 use the activation's stored block sum s (an f16 rounding of d * sum q), as
// llama.cpp does.
void reference(DType t, int64_t n, const uint8_t* w, const uint8_t* act, double* dot, double* mag) {
  std::vector<float> wf(static_cast<size_t>(n));
  dequantize_row(t, w, wf.data(), n);
  const std::vector<double> x = dequant_act(activation_type(t), act, n);
  *dot = 0, *mag = 0;
  for (int64_t i = 0; i < n; ++i) *dot += double(wf[size_t(i)]) * x[size_t(i)];
  for (int64_t i = 0; i < n; ++i) *mag += std::fabs(double(wf[size_t(i)]) * x[size_t(i)]);
  if (t != DType::Q4_1 && t != DType::Q5_1) return;
  const int64_t ts = dtype_info(t).type_size;
  for (int64_t b = 0; b < n / 32; ++b) {
    uint16_t m, s;
    std::memcpy(&m, w + ts * b + 2, 2);
    std::memcpy(&s, act + 36 * b + 2, 2);
    double block_x = 0;
    for (int l = 0; l < 32; ++l) block_x += x[size_t(32 * b + l)];
    *dot += double(f16_to_f32(m)) * (double(f16_to_f32(s)) - block_x);
    *mag += std::fabs(double(f16_to_f32(m)) * f16_to_f32(s));
  }
}

TEST(VecDot, EveryTypeIsCloseToTheExactDotAtEveryLevel) {
  std::mt19937 rng(1);
  for (DType t : kWeightTypes)
    for (int64_t n : lengths_for(t))
      for (int rep = 0; rep < 10; ++rep) {
        const std::vector<uint8_t> w = random_row(t, n, rng);
        const std::vector<float> x = random_floats(n, rng);
        std::vector<uint8_t> act(row_bytes(activation_type(t), n));
        scalar().quantize_activations(t, x.data(), act.data(), n);
        double ref, mag;
        reference(t, n, w.data(), act.data(), &ref, &mag);
        for (const Kernels* k : every_level()) {
          const float got = k->vec_dot(t, n, w.data(), act.data());
          ASSERT_NEAR(got, ref, 1e-5 * mag + 1e-30) << dtype_name(uint32_t(t)) << " n=" << n << " " << k->name();
        }
      }
}

// Activations are fuzzed too (random quant bytes incl. -128, inconsistent bsums): the kernels
// must agree bit for bit on any input, not only on well-formed ones.
TEST(VecDot, EverySimdLevelGivesScalarBits) {
  KVSTASH_SKIP_WITHOUT_SIMD();
  for (const Kernels* k : testing::simd_levels()) {
  std::mt19937 rng(2);
  for (DType t : kWeightTypes)
    for (int64_t n : lengths_for(t))
      for (int rep = 0; rep < 40; ++rep) {
        const DType at = activation_type(t);
        const std::vector<uint8_t> w = random_row(t, n, rng);
        std::vector<uint8_t> act = random_row(at, n, rng);
        if (rep % 2 == 0) scalar().quantize_activations(t, random_floats(n, rng).data(), act.data(), n);
        const float s = scalar().vec_dot(t, n, w.data(), act.data());
        const float v = k->vec_dot(t, n, w.data(), act.data());
        ASSERT_EQ(bits(s), bits(v)) << k->name() << " " << dtype_name(uint32_t(t)) << " n=" << n << ": " << s
                                    << " vs " << v;
      }
  }
}

// The contract in kernels.h, written out independently for the default model's weight type:
// block b adds d_w*d_x*isum_b and then m_w*s_x into lane b % 8 with fmas; fixed lane tree.
TEST(VecDot, Q4_1FollowsTheDocumentedSummationOrder) {
  std::mt19937 rng(3);
  for (int64_t n : {32, 576, 1536}) {
    const std::vector<uint8_t> w = random_row(DType::Q4_1, n, rng);
    const std::vector<float> x = random_floats(n, rng);
    std::vector<uint8_t> act(row_bytes(DType::Q8_1, n));
    scalar().quantize_activations(DType::Q4_1, x.data(), act.data(), n);
    float lane[8] = {};
    for (int64_t b = 0; b < n / 32; ++b) {
      const uint8_t* wb = w.data() + 20 * b;
      const uint8_t* ab = act.data() + 36 * b;
      int32_t isum = 0;
      for (int l = 0; l < 16; ++l)
        isum += (wb[4 + l] & 15) * int8_t(ab[4 + l]) + (wb[4 + l] >> 4) * int8_t(ab[20 + l]);
      uint16_t dw, mw, dx, sx;
      std::memcpy(&dw, wb, 2), std::memcpy(&mw, wb + 2, 2);
      std::memcpy(&dx, ab, 2), std::memcpy(&sx, ab + 2, 2);
      float& L = lane[b % 8];
      L = std::fma(f16_to_f32(dw) * f16_to_f32(dx), float(isum), L);
      L = std::fma(f16_to_f32(mw), f16_to_f32(sx), L);
    }
    const float want = ((lane[0] + lane[4]) + (lane[2] + lane[6])) +
                       ((lane[1] + lane[5]) + (lane[3] + lane[7]));
    for (const Kernels* k : every_level())
      EXPECT_EQ(bits(k->vec_dot(DType::Q4_1, n, w.data(), act.data())), bits(want)) << n << " " << k->name();
  }
}

// q5_0 (Q4_K_M's fallback for rows that are not a multiple of 256), written out from ggml's
// layout: element l takes bit l of qh, element l + 16 bit l + 16; value = q5 - 16.
TEST(VecDot, Q5_0FollowsTheDocumentedSummationOrder) {
  std::mt19937 rng(5);
  for (int64_t n : {32, 576, 1536}) {
    const std::vector<uint8_t> w = random_row(DType::Q5_0, n, rng);
    const std::vector<float> x = random_floats(n, rng);
    std::vector<uint8_t> act(row_bytes(DType::Q8_0, n));
    scalar().quantize_activations(DType::Q5_0, x.data(), act.data(), n);
    float lane[8] = {};
    for (int64_t b = 0; b < n / 32; ++b) {
      const uint8_t* wb = w.data() + 22 * b;
      const uint8_t* ab = act.data() + 34 * b;
      uint32_t qh;
      std::memcpy(&qh, wb + 2, 4);
      int32_t isum = 0;
      for (int l = 0; l < 16; ++l) {
        const int lo = ((wb[6 + l] & 15) | int(((qh >> l) << 4) & 0x10)) - 16;
        const int hi = ((wb[6 + l] >> 4) | int((qh >> (l + 12)) & 0x10)) - 16;
        isum += lo * int8_t(ab[2 + l]) + hi * int8_t(ab[18 + l]);
      }
      uint16_t dw, dx;
      std::memcpy(&dw, wb, 2), std::memcpy(&dx, ab, 2);
      lane[b % 8] = std::fma(f16_to_f32(dw) * f16_to_f32(dx), float(isum), lane[b % 8]);
    }
    const float want = ((lane[0] + lane[4]) + (lane[2] + lane[6])) +
                       ((lane[1] + lane[5]) + (lane[3] + lane[7]));
    for (const Kernels* k : every_level())
      EXPECT_EQ(bits(k->vec_dot(DType::Q5_0, n, w.data(), act.data())), bits(want)) << n << " " << k->name();
  }
}

// Random operands of the attention helpers: n floats a, b, b rounded to f16, and an alpha.
struct HelperCase {
  std::vector<float> a, b;
  std::vector<uint16_t> h;
  float alpha;
};
HelperCase helper_case(int64_t n, std::mt19937& rng) {
  HelperCase c{random_floats(n, rng), random_floats(n, rng), std::vector<uint16_t>(size_t(n)), 0};
  for (int64_t i = 0; i < n; ++i) c.h[size_t(i)] = f32_to_f16(c.b[size_t(i)]);
  c.alpha = random_floats(1, rng)[0];
  return c;
}
std::vector<int64_t> helper_lengths() {
  std::vector<int64_t> ns;
  for (int64_t n = 0; n <= 200; n += (n < 70 ? 1 : 43)) ns.push_back(n);
  return ns;
}

TEST(AttentionHelpers, AccurateAtEveryLevel) {
  for (const Kernels* k : every_level()) {
    std::mt19937 rng(4);
    for (int64_t n : helper_lengths())
      for (int rep = 0; rep < 10; ++rep) {
        const HelperCase c = helper_case(n, rng);
        std::vector<float> y = c.b;
        k->axpy_f16(c.alpha, c.h.data(), y.data(), n);
        double r16 = 0, r32 = 0, mag16 = 0, mag32 = 0;
        for (int64_t i = 0; i < n; ++i) {
          const double p16 = double(c.a[size_t(i)]) * f16_to_f32(c.h[size_t(i)]);
          const double p32 = double(c.a[size_t(i)]) * c.b[size_t(i)];
          r16 += p16, r32 += p32, mag16 += std::fabs(p16), mag32 += std::fabs(p32);
          ASSERT_EQ(bits(y[size_t(i)]), bits(std::fma(c.alpha, f16_to_f32(c.h[size_t(i)]), c.b[size_t(i)])))
              << k->name();
        }
        ASSERT_NEAR(k->dot_f32_f16(c.a.data(), c.h.data(), n), r16, 1e-6 * mag16 + 1e-30) << n << " " << k->name();
        ASSERT_NEAR(k->dot_f32(c.a.data(), c.b.data(), n), r32, 1e-6 * mag32 + 1e-30) << n << " " << k->name();
      }
  }
}

TEST(AttentionHelpers, EverySimdLevelGivesScalarBits) {
  KVSTASH_SKIP_WITHOUT_SIMD();
  for (const Kernels* k : testing::simd_levels()) {
  const Kernels& avx2 = *k;
  std::mt19937 rng(4);
  for (int64_t n : helper_lengths())
    for (int rep = 0; rep < 10; ++rep) {
      const HelperCase c = helper_case(n, rng);
      ASSERT_EQ(bits(scalar().dot_f32_f16(c.a.data(), c.h.data(), n)), bits(avx2.dot_f32_f16(c.a.data(), c.h.data(), n))) << n;
      ASSERT_EQ(bits(scalar().dot_f32(c.a.data(), c.b.data(), n)), bits(avx2.dot_f32(c.a.data(), c.b.data(), n))) << n;
      std::vector<float> y0 = c.b, y1 = c.b;
      scalar().axpy_f16(c.alpha, c.h.data(), y0.data(), n);
      avx2.axpy_f16(c.alpha, c.h.data(), y1.data(), n);
      ASSERT_TRUE(n == 0 || std::memcmp(y0.data(), y1.data(), y0.size() * sizeof(float)) == 0) << n;
    }
  }
}

}  // namespace
}  // namespace kvstash
