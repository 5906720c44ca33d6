// AVX-512 (VNNI) kernels of the 32-element block types q4_0, q4_1, q5_0, q5_1, q8_0: dot products
// (vec_dot_q32_avx512.cc), tiled products (matmul_q32_avx512.cc) and activation quantization
// (quantize_act.cc). Same bits as the scalar kernels: vpdpbusd sums unsigned x signed bytes exactly
// into int32, and each block's float step lands in lane b % 8 in block order (16-lane registers
// hold blocks 0-7 and 8-15 of one token, stepped one after the other, or 8 blocks of two tokens).
#pragma once
#include <cstddef>
#include <cstdint>

#include "tensor/kernels_impl.h"

namespace kvstash::detail {

// How a weight type meets vpdpbusd, whose first operand is unsigned: the weight quants become
// unsigned bytes u (nibbles 0..15, q5 0..31, q8 + 128 in 0..255) against the signed activation
// bytes a; the block's sum is sum(u * a) - kOffset * sum(a) (kOffset: 8, 16 or 128 for the types
// whose value is u - kOffset, 0 for q4_1 / q5_1, whose min term comes in the float step).
enum class Quants { Nibbles, Q5, Q8 };
template <class WeightBlock, class ActBlock, Quants Q, int Offset, bool Min>
struct Q32Format {
  using WB = WeightBlock;
  using AB = ActBlock;
  static constexpr Quants kQuants = Q;
  static constexpr int kOffset = Offset;
  static constexpr bool kMin = Min;  // fma_q4_1's second fma (m_w * s_x)
};
using FormatQ4_0 = Q32Format<BlockQ4_0, BlockQ8_0, Quants::Nibbles, 8, false>;
using FormatQ4_1 = Q32Format<BlockQ4_1, BlockQ8_1, Quants::Nibbles, 0, true>;
using FormatQ5_0 = Q32Format<BlockQ5_0, BlockQ8_0, Quants::Q5, 16, false>;
using FormatQ5_1 = Q32Format<BlockQ5_1, BlockQ8_1, Quants::Q5, 0, true>;
using FormatQ8_0 = Q32Format<BlockQ8_0, BlockQ8_0, Quants::Q8, 128, false>;

// Dot products (KernelTable::dot_*).
float dot_q4_0_avx512(const void* w, const void* a, int64_t nb);
float dot_q4_1_avx512(const void* w, const void* a, int64_t nb);
float dot_q5_0_avx512(const void* w, const void* a, int64_t nb);
float dot_q5_1_avx512(const void* w, const void* a, int64_t nb);
float dot_q8_0_avx512(const void* w, const void* a, int64_t nb);

// out[r] = dot of weight row r (w + r * w_stride) with one activation row, r in [0, rows): the
// matmul's one-token case, each activation block loaded once for up to 4 rows.
void dot_rows_q4_0_avx512(int64_t nb, const void* w, size_t w_stride, int64_t rows, const void* act, float* out);
void dot_rows_q4_1_avx512(int64_t nb, const void* w, size_t w_stride, int64_t rows, const void* act, float* out);
void dot_rows_q5_0_avx512(int64_t nb, const void* w, size_t w_stride, int64_t rows, const void* act, float* out);
void dot_rows_q5_1_avx512(int64_t nb, const void* w, size_t w_stride, int64_t rows, const void* act, float* out);
void dot_rows_q8_0_avx512(int64_t nb, const void* w, size_t w_stride, int64_t rows, const void* act, float* out);

// Activation blocks (quantize_act.cc): the scalar bytes, 16 lanes at a time.
void quantize_q8_0_avx512(const float* x, BlockQ8_0* y, int64_t nb);
void quantize_q8_1_avx512(const float* x, BlockQ8_1* y, int64_t nb);

// Tiled products (KernelTable::mm_*, the contract of Kernels::matmul_rows).
void matmul_q4_0_avx512(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1,
                        const void* act, size_t act_stride, int64_t n, float* out, int64_t out_stride);
void matmul_q4_1_avx512(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1,
                        const void* act, size_t act_stride, int64_t n, float* out, int64_t out_stride);
void matmul_q5_0_avx512(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1,
                        const void* act, size_t act_stride, int64_t n, float* out, int64_t out_stride);
void matmul_q5_1_avx512(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1,
                        const void* act, size_t act_stride, int64_t n, float* out, int64_t out_stride);
void matmul_q8_0_avx512(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1,
                        const void* act, size_t act_stride, int64_t n, float* out, int64_t out_stride);

}  // namespace kvstash::detail
