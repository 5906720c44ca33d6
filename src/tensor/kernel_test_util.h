// Helpers shared by the kernel tests.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "kvstash/kernels.h"

namespace kvstash::testing {

// Every kernel set this CPU runs, scalar first.
inline std::vector<const Kernels*> every_level() {
  std::vector<const Kernels*> all{&Kernels::at(SimdLevel::Scalar)};
  if (Kernels::best_level() >= SimdLevel::AVX2) all.push_back(&Kernels::at(SimdLevel::AVX2));
  if (Kernels::best_level() >= SimdLevel::AVX512) all.push_back(&Kernels::at(SimdLevel::AVX512));
  return all;
}
// Every SIMD kernel set this CPU runs (scalar excluded): what the bit-identity tests compare with
// scalar.
inline std::vector<const Kernels*> simd_levels() {
  std::vector<const Kernels*> all = every_level();
  all.erase(all.begin());
  return all;
}

// For tests comparing scalar with SIMD kernels: without SIMD there is nothing to compare.
#define KVSTASH_SKIP_WITHOUT_SIMD() \
  if (::kvstash::Kernels::best_level() == ::kvstash::SimdLevel::Scalar) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C"

inline uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

}  // namespace kvstash::testing
