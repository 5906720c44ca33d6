// Small AVX2 helpers shared by the kernels compiled for that target (no -mavx2 on the command line:
// each function carries the target attribute, and callers dispatch at run time).
#pragma once
#include <immintrin.h>

#define KV_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace kvstash::detail {

KV_AVX2 inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
KV_AVX2 inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

}  // namespace kvstash::detail
