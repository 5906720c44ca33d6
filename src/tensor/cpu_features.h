// CPU features from CPUID, for the kernel dispatch. (__builtin_cpu_supports("f16c") would do, but
// clang before 18 rejects that feature name, and the sanitizer and fuzz builds use clang.)
#pragma once
#include <cpuid.h>

namespace kvstash::detail {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;  // each only if the OS saves the AVX registers
  // AVX-512 F, BW, VL, DQ and VNNI together, and the OS saves the ZMM registers.
  bool avx512 = false;
};

inline CpuFeatures cpu_features() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const unsigned ecx1 = c;
  if (!(ecx1 >> 27 & 1) || !(ecx1 >> 28 & 1)) return f;  // OSXSAVE and AVX
  unsigned lo, hi;
  __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 6) != 6) return f;  // XMM and YMM state enabled by the OS
  unsigned ebx7 = 0, ecx7 = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) ebx7 = b, ecx7 = c;
  f.avx2 = ebx7 >> 5 & 1;
  f.fma = ecx1 >> 12 & 1;
  f.f16c = ecx1 >> 29 & 1;
  const bool zmm_state = (lo & 0xE0) == 0xE0;  // opmask, upper ZMM0-15, ZMM16-31
  const bool f_bw_vl_dq = (ebx7 >> 16 & 1) && (ebx7 >> 30 & 1) && (ebx7 >> 31 & 1) && (ebx7 >> 17 & 1);
  f.avx512 = zmm_state && f_bw_vl_dq && (ecx7 >> 11 & 1) && f.avx2 && f.fma && f.f16c;
  return f;
}

}  // namespace kvstash::detail
