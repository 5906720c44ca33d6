// Helpers shared by the kernel tests.
#pragma once
#include <cstdint>
#include <cstring>

#include "kvstash/kernels.h"

namespace kvstash::testing {

// Restores the SIMD level a test changed.
struct LevelGuard {
  SimdLevel saved = simd_level();
  ~LevelGuard() { set_simd_level(saved); }
};

inline uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

}  // namespace kvstash::testing
