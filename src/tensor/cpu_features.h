// CPU features from CPUID, for the kernel dispatch. (__builtin_cpu_supports("f16c") would do, but
// clang before 18 rejects that feature name, and the sanitizer and fuzz builds use clang.)
#pragma once
#include <cpuid.h>

namespace kvstash::detail {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;  // each only if the OS saves the AVX registers
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
  const unsigned ebx7 = __get_cpuid_count(7, 0, &a, &b, &c, &d) ? b : 0;
  f.avx2 = ebx7 >> 5 & 1;
  f.fma = ecx1 >> 12 & 1;
  f.f16c = ecx1 >> 29 & 1;
  return f;
}

}  // namespace kvstash::detail
