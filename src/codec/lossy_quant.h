// Quantiser pieces shared by the lossy scheme's encoder and decoder: the step grid (steps are
// 2^(code/8 - 20), code 0..255, so a step costs one byte and decodes to the same f32 everywhere)
// and zigzag symbol mapping.
#pragma once
#include <cmath>
#include <cstdint>

namespace kvstash::codec {

inline float step_of_code(uint32_t code) {
  // 2^(j/8), j = 0..7, rounded to f32 once here (literals, not libm).
  static constexpr float kMant[8] = {1.0f, 1.09050773f, 1.18920712f, 1.29683955f,
                                     1.41421356f, 1.54221083f, 1.68179283f, 1.83400809f};
  return std::ldexp(kMant[code & 7], int(code >> 3) - 20);
}

// The code whose step is nearest (in ratio) to step; exact comparisons only.
inline uint32_t code_of_step(float step) {
  const float up = step * 1.04427378f;  // 2^(1/16): rounds to the nearest grid point
  uint32_t lo = 0, hi = 255;
  if (!(step_of_code(0) <= up)) return 0;
  while (lo < hi) {  // the largest code with step_of_code(code) <= up
    const uint32_t mid = (lo + hi + 1) / 2;
    if (step_of_code(mid) <= up) lo = mid; else hi = mid - 1;
  }
  return lo;
}

inline uint32_t zigzag(int32_t q) { return q >= 0 ? uint32_t(q) << 1 : (uint32_t(-q) << 1) - 1; }
inline int32_t unzigzag(uint32_t z) { return z & 1 ? -int32_t((z + 1) >> 1) : int32_t(z >> 1); }

}  // namespace kvstash::codec
