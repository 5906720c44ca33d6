// f16 conversions against the F16C hardware instructions, and row versions across SIMD levels.
#include <immintrin.h>

#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "kvstash/kernels.h"
#include "tensor/cpu_features.h"
#include "tensor/kernel_test_util.h"

namespace kvstash {
namespace {

bool has_f16c() { return detail::cpu_features().f16c; }

__attribute__((target("f16c"))) uint32_t hw_f16_to_f32_bits(uint16_t h) {
  const float f = _cvtsh_ss(h);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
__attribute__((target("f16c"))) uint16_t hw_f32_to_f16(float f) {
  return uint16_t(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(F16, AllHalvesConvertExactlyLikeF16C) {
  if (!has_f16c()) GTEST_SKIP() << "no F16C";
  for (uint32_t h = 0; h < 65536; ++h)
    ASSERT_EQ(bits(f16_to_f32(uint16_t(h))), hw_f16_to_f32_bits(uint16_t(h))) << std::hex << h;
}

TEST(F16, RoundTripOfEveryHalfIsIdentityExceptNaNQuieting) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const bool nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0;
    EXPECT_EQ(f32_to_f16(f16_to_f32(uint16_t(h))), nan ? (h | 0x200) : h) << std::hex << h;
  }
}

// Floats at and next to every rounding boundary, plus random bit patterns of every class.
std::vector<float> hard_floats() {
  std::vector<float> v;
  for (uint32_t h = 0; h < 0x7C00; ++h) {  // each positive finite half and the midpoint above it
    const uint32_t lo = bits(f16_to_f32(uint16_t(h)));
    const uint32_t mid = h == 0x7BFF ? 0x477FF000 : (lo + bits(f16_to_f32(uint16_t(h + 1)))) / 2;
    for (uint32_t u : {lo, lo + 1, lo - 1, mid, mid + 1, mid - 1}) {
      v.push_back(from_bits(u));
      v.push_back(-from_bits(u));
    }
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 1000000; ++i) v.push_back(from_bits(uint32_t(rng())));
  for (uint32_t u : {0x00000000u, 0x80000000u, 0x00000001u, 0x007FFFFFu, 0x33000000u, 0x33000001u,
                     0x7F800000u, 0xFF800000u, 0x7F800001u, 0x7FC00000u, 0xFFFFFFFFu, 0x477FEFFFu,
                     0x477FF000u, 0x7F7FFFFFu})
    v.push_back(from_bits(u));
  return v;
}

TEST(F16, FloatToHalfRoundsLikeCvtps2ph) {
  if (!has_f16c()) GTEST_SKIP() << "no F16C";
  for (float f : hard_floats()) ASSERT_EQ(f32_to_f16(f), hw_f32_to_f16(f)) << std::hex << bits(f);
}

TEST(F16, RowsAreIdenticalAtEverySimdLevel) {
  KVSTASH_SKIP_WITHOUT_SIMD();
  const std::vector<float> src = hard_floats();
  const int64_t n = int64_t(src.size());
  for (const Kernels* simd : testing::simd_levels()) {
  std::vector<uint16_t> h[2];
  std::vector<float> back[2];
  for (int level = 0; level < 2; ++level) {  // odd offsets and lengths exercise the tails
    const Kernels& k = level == 0 ? Kernels::at(SimdLevel::Scalar) : *simd;
    h[level].assign(src.size(), 0);
    k.f32_to_f16_row(src.data() + 3, h[level].data() + 3, n - 8);
    back[level].assign(src.size(), 0.0f);
    k.f16_to_f32_row(h[level].data() + 1, back[level].data() + 1, n - 6);
  }
  ASSERT_EQ(h[0], h[1]);
  ASSERT_EQ(0, std::memcmp(back[0].data(), back[1].data(), back[0].size() * sizeof(float)));
  for (int64_t i = 3; i < n - 5; ++i) ASSERT_EQ(h[0][i], f32_to_f16(src[i])) << i;
  }
}

TEST(BF16, IsTheTopHalfOfAFloat) {
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xC040), -3.0f);
  EXPECT_EQ(bits(bf16_to_f32(0x7FC1)), 0x7FC10000u);
}

}  // namespace
}  // namespace kvstash
