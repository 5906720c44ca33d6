// Float weight rows (f32, f16, bf16) times f32 activations: the tiled matrix products of the AVX2
// and AVX-512 levels (MatmulFn, kernels_impl.h) and the AVX-512 row helpers. Every result keeps
// the scalar bits: element i of a row adds into lane i % 8 with one fma, in element order, and
// the lanes reduce with reduce_lanes.
#pragma once
#include <cstddef>
#include <cstdint>

namespace kvstash::detail {

#define KV_FLOAT_MATMUL(name)                                                                    \
  void name(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* act, \
            size_t act_stride, int64_t n, float* out, int64_t out_stride)
// matmul_float_avx2.cc
KV_FLOAT_MATMUL(matmul_f32_avx2);
KV_FLOAT_MATMUL(matmul_f16_avx2);
KV_FLOAT_MATMUL(matmul_bf16_avx2);
// matmul_float_avx512.cc
KV_FLOAT_MATMUL(matmul_f32_avx512);
KV_FLOAT_MATMUL(matmul_f16_avx512);
KV_FLOAT_MATMUL(matmul_bf16_avx512);
#undef KV_FLOAT_MATMUL

// vec_dot_float_avx512.cc: the KernelTable entries of the same names, 16 elements per step.
float dot_f32_avx512(const float* a, const float* b, int64_t n);
float dot_f32_f16_avx512(const float* a, const uint16_t* b, int64_t n);
float dot_f32_bf16_avx512(const float* a, const uint16_t* b, int64_t n);
void axpy_f16_avx512(float alpha, const uint16_t* x, float* y, int64_t n);
void f16_to_f32_row_avx512(const uint16_t* src, float* dst, int64_t n);
void f32_to_f16_row_avx512(const float* src, uint16_t* dst, int64_t n);

}  // namespace kvstash::detail
