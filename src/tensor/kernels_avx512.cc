// The AVX-512 kernel set: the AVX2 table, with each kernel that has an AVX-512 version replaced.
// Every entry keeps the bits of the scalar kernels (kernels_impl.h's summation contract).
#include "tensor/float_kernels.h"
#include "tensor/kernels_impl.h"
#include "tensor/q32_avx512.h"
#include "tensor/kquant_kernels.h"

namespace kvstash::detail {

const KernelTable& avx512_kernels() {
  static const KernelTable table = [] {
    KernelTable t = kAvx2Kernels;
    t.dot_q4_0 = dot_q4_0_avx512;
    t.dot_q4_1 = dot_q4_1_avx512;
    t.dot_q5_0 = dot_q5_0_avx512;
    t.dot_q5_1 = dot_q5_1_avx512;
    t.dot_q8_0 = dot_q8_0_avx512;
    t.mm_q4_0 = matmul_q4_0_avx512;
    t.mm_q4_1 = matmul_q4_1_avx512;
    t.mm_q5_0 = matmul_q5_0_avx512;
    t.mm_q5_1 = matmul_q5_1_avx512;
    t.mm_q8_0 = matmul_q8_0_avx512;
    t.quantize_q8_0 = quantize_q8_0_avx512;
    t.quantize_q8_1 = quantize_q8_1_avx512;
    // Float rows. axpy_f16 and f16_to_f32_row stay AVX2: their AVX-512 versions were slower at
    // 64-256 elements in some timings (a same-output axpy loop, 128-element rows).
    t.dot_f32 = dot_f32_avx512;
    t.dot_f32_f16 = dot_f32_f16_avx512;
    t.dot_f32_bf16 = dot_f32_bf16_avx512;
    t.f32_to_f16_row = f32_to_f16_row_avx512;
    t.mm_f32 = matmul_f32_avx512;
    t.mm_f16 = matmul_f16_avx512;
    t.mm_bf16 = matmul_bf16_avx512;
    t.dot_q4_K = dot_q4_K_avx512;
    t.dot_q5_K = dot_q5_K_avx512;
    t.dot_q6_K = dot_q6_K_avx512;
    t.mm_q4_K = matmul_q4_K_avx512;
    t.mm_q5_K = matmul_q5_K_avx512;
    t.mm_q6_K = matmul_q6_K_avx512;
    return t;
  }();
  return table;
}

}  // namespace kvstash::detail
