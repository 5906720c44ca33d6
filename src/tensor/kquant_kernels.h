// Kernels for the k-quant weights (q4_K, q5_K, q6_K with q8_K activations) beyond the AVX2 dot
// products of vec_dot_avx2.cc: the AVX2 tiled products, the AVX-512 dot and tiled products, and
// the SIMD q8_K activation quantizer. Every one keeps the scalar kernels' bits (kernels_impl.h):
// exact int32 sums inside a super-block, fma_k / fma_q6_K into lane b % 8, reduce_lanes.
#pragma once
#include <cstddef>
#include <cstdint>

#include "tensor/avx512_util.h"
#include "tensor/kernels_impl.h"

namespace kvstash::detail {

#define KV_KQUANT_MATMUL(name)                                                                    \
  void name(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* act, \
            size_t act_stride, int64_t n, float* out, int64_t out_stride)

// AVX2 tiled products (matmul_kquant_avx2.cc).
KV_KQUANT_MATMUL(matmul_q4_K_avx2);
KV_KQUANT_MATMUL(matmul_q5_K_avx2);
KV_KQUANT_MATMUL(matmul_q6_K_avx2);

// AVX-512 (VNNI) dot products (vec_dot_kquant_avx512.cc); nb = number of super-blocks.
float dot_q4_K_avx512(const void* w, const void* a, int64_t nb);
float dot_q5_K_avx512(const void* w, const void* a, int64_t nb);
float dot_q6_K_avx512(const void* w, const void* a, int64_t nb);

// AVX-512 (VNNI) tiled products (matmul_kquant_avx512.cc).
KV_KQUANT_MATMUL(matmul_q4_K_avx512);
KV_KQUANT_MATMUL(matmul_q5_K_avx512);
KV_KQUANT_MATMUL(matmul_q6_K_avx512);

#undef KV_KQUANT_MATMUL

}  // namespace kvstash::detail
