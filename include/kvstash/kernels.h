// Numeric kernels: dequantization, activation quantization and dot products for every supported
// weight type, plus the f16 helpers attention uses.
//
// Determinism contract: every function here is a pure function of its inputs. The result bits do
// not depend on the call site, thread, batch, or SIMD target (scalar, AVX2 and AVX-512 give
// identical bits; the summation order is fixed by the algorithm: exact integer sums inside quant
// blocks, float partial sums in 8 fixed lanes, a fixed reduction tree — wider vectors hold more
// integer work, never a different float order).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kvstash/dtype.h"

namespace kvstash {

// f16 / bf16 conversion (round to nearest even, like F16C's _mm_cvtps_ph with rounding 0).
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t h);

// Any supported type to f32. n must be a multiple of the block size.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// The format a weight type's dot product takes its activations in (as llama.cpp does):
// q4_0, q5_0, q8_0 -> q8_0; q4_1, q5_1 -> q8_1; k-quants -> q8_K; f32, f16, bf16 -> f32.
DType activation_type(DType weight);

// AVX2 also needs FMA and F16C; AVX512 needs AVX2's set plus AVX-512 F, BW, VL, DQ and VNNI.
enum class SimdLevel { Scalar, AVX2, AVX512 };

namespace detail {
struct KernelTable;
}

// The kernel set of one SIMD level: immutable, one object per level for the whole process, safe
// to share between threads. Callers hold a `const Kernels&` instead of reading a global, so the
// level cannot change under them and two levels can run side by side (tests compare them).
class Kernels {
 public:
  // The kernels of a level; throws NotSupported when the CPU lacks it (InvalidArgument for a
  // value outside the enum).
  static const Kernels& at(SimdLevel level);
  // The process's kernels, chosen on the first call and fixed afterwards: parse_simd_level of
  // $KVSTASH_SIMD. If that throws, every call throws the same way (no silent fallback).
  static const Kernels& active();
  static SimdLevel best_level();  // the best level this CPU runs

  SimdLevel level() const { return level_; }
  const char* name() const;  // "scalar", "avx2", "avx512"

  // Quantizes n activations into activation_type(weight); dst holds row_bytes(that type, n) bytes.
  void quantize_activations(DType weight, const float* x, void* dst, int64_t n) const;
  // Dot product of one weight row (n elements) with activations from quantize_activations.
  // Throws Error for a type without a dot product or n not a whole number of blocks. Rows and
  // activations must be aligned for their fields (2 bytes for f16, 4 for f32 and q8_K's float d).
  float vec_dot(DType weight, int64_t n, const void* w_row, const void* act) const;
  // Rows [r0, r1) of a weight matrix (row r at w + r * w_stride bytes) times n activation rows
  // (activation t at act + t * act_stride bytes, from quantize_activations):
  // out[t * out_stride + r] = vec_dot(weight, cols, row r, activation t), bit for bit. The SIMD
  // levels tile several rows x several tokens for every weight type, reusing each loaded
  // weight block across tokens and each activation block across rows; every element still takes
  // vec_dot's float steps in vec_dot's order.
  void matmul_rows(DType weight, int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1,
                   const void* act, size_t act_stride, int64_t n, float* out, int64_t out_stride) const;

  // Attention helpers over f16 cache rows.
  float dot_f32_f16(const float* a, const uint16_t* b, int64_t n) const;
  void axpy_f16(float alpha, const uint16_t* x, float* y, int64_t n) const;  // y[i] += alpha * x[i]
  float dot_f32(const float* a, const float* b, int64_t n) const;
  // Attention over n consecutive f16 cache rows (row j at rows + j * dim), bit for bit the loops
  //   scores[j] = dot_f32_f16(q, row j, dim) * scale            (attention_scores_f16)
  //   for j in order: axpy_f16(p[j], row j, out, dim)          (attention_values_f16)
  // The AVX2 path scores 8 rows at once and keeps out in registers across rows.
  void attention_scores_f16(const float* q, const uint16_t* rows, int64_t n, int64_t dim,
                            float scale, float* scores) const;
  void attention_values_f16(const float* p, const uint16_t* rows, int64_t n, int64_t dim,
                            float* out) const;
  // Grouped-query attention: `heads` query heads sharing the same n cache rows. Head h reads its
  // query at q + h * q_stride and writes its scores at scores + h * s_stride (values: reads its
  // probabilities at p + h * p_stride, accumulates into out + h * out_stride). Bit for bit
  // attention_scores_f16 / attention_values_f16 called head by head; the AVX2 path loads and
  // converts each cache row once for all the heads.
  void attention_scores_f16_group(const float* q, int64_t q_stride, int heads, const uint16_t* rows,
                                  int64_t n, int64_t dim, float scale, float* scores,
                                  int64_t s_stride) const;
  void attention_values_f16_group(const float* p, int64_t p_stride, int heads, const uint16_t* rows,
                                  int64_t n, int64_t dim, float* out, int64_t out_stride) const;

  // x[i] = exp(x[i] - max) / sum in place. exp is kvstash's own (computed in double by a fixed
  // sequence of FMAs and rounded to float: the correctly rounded value but in the rarest cases; 0
  // below -87.34) and the sum runs in 16 double lanes (element i in lane i % 16) reduced by
  // halves, so every level gives the same bits.
  void softmax(float* x, int64_t n) const;
  void f16_to_f32_row(const uint16_t* src, float* dst, int64_t n) const;
  void f32_to_f16_row(const float* src, uint16_t* dst, int64_t n) const;

  Kernels(const Kernels&) = delete;
  Kernels& operator=(const Kernels&) = delete;

 private:
  constexpr Kernels(SimdLevel level, const detail::KernelTable& table) : level_(level), t_(&table) {}
  SimdLevel level_;
  const detail::KernelTable* t_;
};

// The level $KVSTASH_SIMD asks for, given the best the CPU has: "scalar", "avx2" or "avx512"; unset
// (nullptr) or empty: best. Throws InvalidArgument for any other value, NotSupported for a level
// above best.
SimdLevel parse_simd_level(const char* value, SimdLevel best);

}  // namespace kvstash
