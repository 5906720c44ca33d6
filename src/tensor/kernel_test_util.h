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
  if (Kernels::best_level() == SimdLevel::AVX2) all.push_back(&Kernels::at(SimdLevel::AVX2));
  return all;
}

// For tests comparing scalar with AVX2: without AVX2 there is nothing to compare.
#define KVSTASH_SKIP_WITHOUT_AVX2() \
  if (::kvstash::Kernels::best_level() != ::kvstash::SimdLevel::AVX2) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C"

inline uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

}  // namespace kvstash::testing
