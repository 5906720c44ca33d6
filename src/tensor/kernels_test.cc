// Kernels: one immutable kernel set per SIMD level, and the process's choice fixed once.
#include <cstdlib>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "kvstash/error.h"
#include "kvstash/kernels.h"
#include "tensor/cpu_features.h"

namespace kvstash {
namespace {

// The kind fn throws, failing the test if it throws nothing or something else.
template <class Fn>
ErrorKind kind_thrown(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << "no Error thrown";
  return ErrorKind::Internal;
}

// The compiler's own detection for AVX2 and FMA (clang before 18 does not know "f16c").
bool cpu_has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && detail::cpu_features().f16c;
}

// AVX-512 F, BW, VL, DQ and VNNI by the compiler's detection (the OS-state check is cpu_features').
bool cpu_has_avx512() {
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vnni");
}

TEST(Kernels, BestLevelIsWhatTheCpuHas) {
  EXPECT_EQ(Kernels::best_level(), cpu_has_avx512() ? SimdLevel::AVX512
                                   : cpu_has_avx2()  ? SimdLevel::AVX2
                                                     : SimdLevel::Scalar);
}

TEST(Kernels, AtGivesOneObjectPerLevel) {
  const Kernels& s = Kernels::at(SimdLevel::Scalar);
  EXPECT_EQ(s.level(), SimdLevel::Scalar);
  EXPECT_STREQ(s.name(), "scalar");
  EXPECT_EQ(&s, &Kernels::at(SimdLevel::Scalar));
  if (!cpu_has_avx2()) return;
  const Kernels& a = Kernels::at(SimdLevel::AVX2);
  EXPECT_EQ(a.level(), SimdLevel::AVX2);
  EXPECT_STREQ(a.name(), "avx2");
  EXPECT_EQ(&a, &Kernels::at(SimdLevel::AVX2));
  EXPECT_NE(&a, &s);
  if (!cpu_has_avx512()) return;
  const Kernels& z = Kernels::at(SimdLevel::AVX512);
  EXPECT_EQ(z.level(), SimdLevel::AVX512);
  EXPECT_STREQ(z.name(), "avx512");
  EXPECT_EQ(&z, &Kernels::at(SimdLevel::AVX512));
  EXPECT_NE(&z, &a);
}

TEST(Kernels, Avx2IsNotSupportedOnACpuWithoutIt) {
  if (cpu_has_avx2()) GTEST_SKIP() << "this CPU has AVX2";
  EXPECT_EQ(kind_thrown([] { Kernels::at(SimdLevel::AVX2); }), ErrorKind::NotSupported);
}

TEST(Kernels, Avx512IsNotSupportedOnACpuWithoutIt) {
  if (cpu_has_avx512()) GTEST_SKIP() << "this CPU has AVX-512 with VNNI";
  EXPECT_EQ(kind_thrown([] { Kernels::at(SimdLevel::AVX512); }), ErrorKind::NotSupported);
}

TEST(Kernels, ActiveIsOneObjectForTheWholeProcess) {
  const Kernels* first = &Kernels::active();
  std::vector<const Kernels*> seen(4);
  std::vector<std::thread> threads;
  for (auto& p : seen) threads.emplace_back([&p] { p = &Kernels::active(); });
  for (auto& t : threads) t.join();
  for (const Kernels* p : seen) EXPECT_EQ(p, first);
  EXPECT_EQ(first, &Kernels::at(first->level()));
  EXPECT_EQ(first->level(), parse_simd_level(std::getenv("KVSTASH_SIMD"), Kernels::best_level()));
}

TEST(Kernels, SimdVariableIsParsedStrictly) {
  for (SimdLevel best : {SimdLevel::Scalar, SimdLevel::AVX2, SimdLevel::AVX512}) {
    EXPECT_EQ(parse_simd_level(nullptr, best), best);
    EXPECT_EQ(parse_simd_level("", best), best);
    EXPECT_EQ(parse_simd_level("scalar", best), SimdLevel::Scalar);
    for (const char* bad : {"AVX2", "sse", "avx512f", "AVX512", "scalar ", "0"})
      EXPECT_EQ(kind_thrown([&] { parse_simd_level(bad, best); }), ErrorKind::InvalidArgument) << bad;
  }
  EXPECT_EQ(parse_simd_level("avx2", SimdLevel::AVX2), SimdLevel::AVX2);
  EXPECT_EQ(parse_simd_level("avx2", SimdLevel::AVX512), SimdLevel::AVX2);
  EXPECT_EQ(parse_simd_level("avx512", SimdLevel::AVX512), SimdLevel::AVX512);
  EXPECT_EQ(kind_thrown([] { parse_simd_level("avx2", SimdLevel::Scalar); }), ErrorKind::NotSupported);
  EXPECT_EQ(kind_thrown([] { parse_simd_level("avx512", SimdLevel::AVX2); }), ErrorKind::NotSupported);
}

}  // namespace
}  // namespace kvstash
