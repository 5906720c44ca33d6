// IEEE half <-> single conversion in plain integer code, bit-identical to the F16C instructions
// (vcvtph2ps, and vcvtps2ph with round-to-nearest-even), including subnormals, infinities and
// NaNs (both directions quiet a NaN and keep the payload's top bits).
#include <cstring>

#include "kvstash/kernels.h"

namespace kvstash {

namespace {
uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
}  // namespace

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  if (exp == 0x1F)  // inf, or NaN made quiet
    return bits_float(sign | 0x7F800000 | (mant ? 0x400000 | (mant << 13) : 0));
  if (exp != 0) return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
  if (mant == 0) return bits_float(sign);
  // Subnormal: value = mant * 2^-24; normalise so the leading 1 sits at bit 10.
  int e = 113;  // biased f32 exponent of 2^-14
  while ((mant & 0x400) == 0) {
    mant <<= 1;
    --e;
  }
  return bits_float(sign | (uint32_t(e) << 23) | ((mant & 0x3FF) << 13));
}

uint16_t f32_to_f16(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000);
  const uint32_t a = u & 0x7FFFFFFF;
  if (a > 0x7F800000) return uint16_t(sign | 0x7E00 | ((a >> 13) & 0x3FF));  // NaN
  if (a >= 0x477FF000) return uint16_t(sign | 0x7C00);  // >= 65520 rounds to infinity
  const uint32_t exp = a >> 23;
  if (exp >= 113) {  // normal half: rebias, round the 13 dropped bits to nearest even
    const uint32_t h = ((exp - 112) << 10) | ((a >> 13) & 0x3FF);
    const uint32_t rest = a & 0x1FFF;
    const uint32_t up = rest > 0x1000 || (rest == 0x1000 && (h & 1));
    return uint16_t(sign | (h + up));  // a carry into the exponent is the correct result
  }
  // Subnormal half (or zero): value / 2^-24 = mant24 * 2^(exp - 126), rounded to nearest even.
  if (exp < 102) return sign;  // below 2^-25: rounds to zero
  const uint32_t mant = (a & 0x7FFFFF) | 0x800000;
  const uint32_t shift = 126 - exp;  // 14..24
  const uint32_t q = mant >> shift;
  const uint32_t rest = mant & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  const uint32_t up = rest > half || (rest == half && (q & 1));
  return uint16_t(sign | (q + up));  // q + up == 0x400 is the smallest normal, correctly encoded
}

float bf16_to_f32(uint16_t h) { return bits_float(uint32_t(h) << 16); }

}  // namespace kvstash
