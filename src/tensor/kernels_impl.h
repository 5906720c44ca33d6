// Internals shared by the kernel files: ggml block layouts, scale unpacking, the per-block float
// updates and the lane reduction that fix the summation order for every SIMD path.
//
// Summation order (the contract both paths implement):
//  - inside a quant block the weight*activation products are summed exactly as int32;
//  - block b adds its float contribution into lane b % 8 with fused multiply-adds (block_fma);
//  - float rows (f32/f16/bf16) use lane = element % 8, one fma per element;
//  - the 8 lanes reduce as ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)) (reduce_lanes).
// The AVX2 code keeps the 8 lanes of 32-element blocks in one __m256.
#pragma once
#include <cmath>
#include <cstdint>

#include "kvstash/kernels.h"

namespace kvstash::detail {

constexpr int kQK = 32;    // elements per q4_0 / q4_1 / q5_0 / q5_1 / q8_0 / q8_1 block
constexpr int kQKK = 256;  // elements per k-quant super-block

// Block layouts exactly as ggml-common.h (little-endian; f16 fields stored as raw bits).
struct BlockQ4_0 { uint16_t d; uint8_t qs[16]; };                  // x = (nibble - 8) * d
struct BlockQ4_1 { uint16_t d, m; uint8_t qs[16]; };               // x = nibble * d + m
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };   // x = (q5 - 16) * d
struct BlockQ5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; };// x = q5 * d + m
struct BlockQ8_0 { uint16_t d; int8_t qs[32]; };                   // x = q * d
struct BlockQ8_1 { uint16_t d, s; int8_t qs[32]; };                // s = f16(d * sum(qs))
struct BlockQ4_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; };
struct BlockQ5_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };
struct BlockQ6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; };
struct BlockQ8_K { float d; int8_t qs[256]; int16_t bsums[16]; };  // bsums: sums of 16 qs
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ8_0) == 34 &&
              sizeof(BlockQ8_1) == 36 && sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24);

// q5_0 / q5_1: the unsigned 5-bit quants (0..31) of one block, element order. Element l (0..15)
// is the low nibble of qs[l] with bit l of qh (little-endian u32) as its 5th bit; element l + 16
// is the high nibble of qs[l] with bit l + 16 of qh (as ggml's dequantize_row_q5_0 / q5_1).
inline void unpack_q5(const uint8_t qh_bytes[4], const uint8_t qs[16], uint8_t q[32]) {
  const uint32_t qh = uint32_t(qh_bytes[0]) | (uint32_t(qh_bytes[1]) << 8) |
                      (uint32_t(qh_bytes[2]) << 16) | (uint32_t(qh_bytes[3]) << 24);
  for (int l = 0; l < 16; ++l) {
    q[l] = uint8_t((qs[l] & 0x0F) | (((qh >> l) & 1) << 4));
    q[l + 16] = uint8_t((qs[l] >> 4) | (((qh >> (l + 16)) & 1) << 4));
  }
}
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 &&
              sizeof(BlockQ8_K) == 292);

// The 12 scale bytes of q4_K / q5_K hold eight 6-bit scales and eight 6-bit mins:
// bytes 0-3: scale j (low 6 bits) | scale j+4 bits 4-5 (top 2 bits);
// bytes 4-7: min j (low 6 bits)   | min j+4 bits 4-5 (top 2 bits);
// bytes 8-11: scale j+4 bits 0-3 (low nibble) | min j+4 bits 0-3 (high nibble).
inline void unpack_k4_scales(const uint8_t* s, uint8_t sc[8], uint8_t mn[8]) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 63;
    mn[j] = s[j + 4] & 63;
    sc[j + 4] = uint8_t((s[j + 8] & 0x0F) | ((s[j] >> 6) << 4));
    mn[j + 4] = uint8_t((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
  }
}

// Unpacked quants of one super-block, element order (values 0..15, 0..31, 0..63 unsigned).
inline void unpack_q4_K(const BlockQ4_K& b, uint8_t q[256]) {
  for (int c = 0; c < 4; ++c)  // 64 elements per 32 bytes: low nibbles first, then high
    for (int l = 0; l < 32; ++l) {
      q[64 * c + l] = b.qs[32 * c + l] & 0x0F;
      q[64 * c + 32 + l] = b.qs[32 * c + l] >> 4;
    }
}
inline void unpack_q5_K(const BlockQ5_K& b, uint8_t q[256]) {
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {  // bit j of qh[l] is the 5th bit of sub-block j, element l
      q[64 * c + l] = uint8_t((b.qs[32 * c + l] & 0x0F) | (((b.qh[l] >> (2 * c)) & 1) << 4));
      q[64 * c + 32 + l] = uint8_t((b.qs[32 * c + l] >> 4) | (((b.qh[l] >> (2 * c + 1)) & 1) << 4));
    }
}
// q6_K: value = unsigned 6-bit - 32; element 128h + 32k + l, scale index = element / 16.
inline void unpack_q6_K(const BlockQ6_K& b, uint8_t q[256]) {
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const uint8_t* ql = b.ql + 64 * h;
      const uint8_t qh = b.qh[32 * h + l];
      uint8_t* o = q + 128 * h + l;
      o[0] = uint8_t((ql[l] & 0x0F) | ((qh & 3) << 4));
      o[32] = uint8_t((ql[l + 32] & 0x0F) | (((qh >> 2) & 3) << 4));
      o[64] = uint8_t((ql[l] >> 4) | (((qh >> 4) & 3) << 4));
      o[96] = uint8_t((ql[l + 32] >> 4) | (((qh >> 6) & 3) << 4));
    }
}

// Integer sums every path computes identically from the activation's bsums.
inline int32_t q4k_min_sum(const uint8_t mn[8], const BlockQ8_K& a) {  // sum_j min_j * bsum(j)
  int32_t s = 0;
  for (int j = 0; j < 8; ++j) s += int32_t(mn[j]) * (a.bsums[2 * j] + a.bsums[2 * j + 1]);
  return s;
}
inline int32_t q6k_offset_sum(const BlockQ6_K& w, const BlockQ8_K& a) {  // 32 * sum sc_g bsum_g
  int32_t s = 0;
  for (int g = 0; g < 16; ++g) s += int32_t(w.scales[g]) * a.bsums[g];
  return 32 * s;
}

// Float steps, one helper per block type, taking the block's f16 fields already as f32 (the
// scalar path converts with f16_to_f32, AVX2 with F16C: the same values). The scalar path calls
// these; the SIMD dot products do the same operations for eight lanes (blocks) at once.
inline void fma_q8(float& lane, float dw, float dx, int32_t isum) {  // q4_0, q8_0
  lane = std::fma(dw * dx, float(isum), lane);
}
inline void fma_q4_1(float& lane, float dw, float mw, float dx, float sx, int32_t isum) {
  lane = std::fma(dw * dx, float(isum), lane);
  lane = std::fma(mw, sx, lane);
}
inline void fma_k(float& lane, float d, float dmin, float dx, int32_t isum, int32_t msum) {
  lane = std::fma(d * dx, float(isum), lane);
  lane = std::fma(-(dmin * dx), float(msum), lane);
}
inline void fma_q6_K(float& lane, float d, float dx, int32_t isum) {
  lane = std::fma(d * dx, float(isum), lane);
}

// Decode prefetch of the 32-element block types (matmul_avx2.cc, vec_dot_q32_avx512.cc). Decode
// streams the weights from memory once per token, and the hardware prefetcher alone leaves one
// thread far below the memory's bandwidth. Each tile of rows fetches the rows of a later tile: two
// tiles ahead for narrow rows; for rows of kWideRow bytes or more (where that overflows L1) the
// next tile, and the one-token loop also fetches kPrefetchAhead bytes ahead in its rows. Measured:
// 1.4x decode on the 1B Q8_0 model over two tiles ahead alone; narrow rows (SmolLM2) lose with it.
constexpr size_t kPrefetchAhead = 1024, kWideRow = 2048;
inline bool wide_rows(size_t row_bytes) { return row_bytes >= kWideRow; }
inline int64_t prefetch_distance(size_t row_bytes, int64_t tile_rows) {  // in rows
  return wide_rows(row_bytes) ? tile_rows : 2 * tile_rows;
}
// The `bytes` bytes kPrefetchAhead past p, a cache line at a time.
[[gnu::always_inline]] inline void prefetch_ahead(const void* p, size_t bytes) {
  for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(static_cast<const char*>(p) + kPrefetchAhead + o, 0, 3);
}

inline float reduce_lanes(const float l[8]) {
  return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

// Tiled matrix product of one weight type (the contract of Kernels::matmul_rows; cols is a whole
// number of blocks).
using MatmulFn = void (*)(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1,
                          const void* act, size_t act_stride, int64_t n, float* out, int64_t out_stride);

// One implementation of every dispatched kernel: everything that differs between SIMD levels is
// an entry here, so a Kernels object never asks which level it is. nb = number of blocks;
// n = number of elements.
// softmax.cc: the algorithm Kernels::softmax describes, scalar and AVX2.
void softmax_scalar(float* x, int64_t n);
void softmax_avx2(float* x, int64_t n);

struct KernelTable {
  float (*dot_q4_0)(const void* w, const void* a, int64_t nb);
  float (*dot_q4_1)(const void* w, const void* a, int64_t nb);
  float (*dot_q5_0)(const void* w, const void* a, int64_t nb);
  float (*dot_q5_1)(const void* w, const void* a, int64_t nb);
  float (*dot_q8_0)(const void* w, const void* a, int64_t nb);
  float (*dot_q4_K)(const void* w, const void* a, int64_t nb);
  float (*dot_q5_K)(const void* w, const void* a, int64_t nb);
  float (*dot_q6_K)(const void* w, const void* a, int64_t nb);
  float (*dot_f32)(const float* a, const float* b, int64_t n);
  float (*dot_f32_f16)(const float* a, const uint16_t* b, int64_t n);
  float (*dot_f32_bf16)(const float* a, const uint16_t* b, int64_t n);
  void (*axpy_f16)(float alpha, const uint16_t* x, float* y, int64_t n);
  void (*f16_to_f32_row)(const uint16_t* src, float* dst, int64_t n);
  void (*f32_to_f16_row)(const float* src, uint16_t* dst, int64_t n);
  void (*quantize_q8_0)(const float* x, BlockQ8_0* y, int64_t nb);
  void (*quantize_q8_1)(const float* x, BlockQ8_1* y, int64_t nb);
  void (*quantize_q8_K)(const float* x, BlockQ8_K* y, int64_t nb);
  // Tiled matrix products per weight type, nullptr if none (the generic vec_dot loop runs).
  MatmulFn mm_q4_0 = nullptr, mm_q4_1 = nullptr, mm_q5_0 = nullptr, mm_q5_1 = nullptr, mm_q8_0 = nullptr,
           mm_q4_K = nullptr, mm_q5_K = nullptr, mm_q6_K = nullptr, mm_f32 = nullptr, mm_f16 = nullptr,
           mm_bf16 = nullptr;
  // Fast paths, nullptr if none; false: not handled (dim), take the generic loop.
  bool (*attention_scores_f16)(const float* q, const uint16_t* rows, int64_t n, int64_t dim,
                               float scale, float* scores) = nullptr;
  bool (*attention_values_f16)(const float* p, const uint16_t* rows, int64_t n, int64_t dim,
                               float* out) = nullptr;
  // Grouped-query attention (Kernels::attention_*_f16_group), nullptr: head by head.
  bool (*attention_scores_f16_group)(const float* q, int64_t q_stride, int heads, const uint16_t* rows,
                                     int64_t n, int64_t dim, float scale, float* scores,
                                     int64_t s_stride) = nullptr;
  bool (*attention_values_f16_group)(const float* p, int64_t p_stride, int heads, const uint16_t* rows,
                                     int64_t n, int64_t dim, float* out, int64_t out_stride) = nullptr;
  void (*softmax)(float* x, int64_t n) = softmax_scalar;

  MatmulFn matmul_of(DType t) const {
    switch (t) {
      case DType::Q4_0: return mm_q4_0;
      case DType::Q4_1: return mm_q4_1;
      case DType::Q5_0: return mm_q5_0;
      case DType::Q5_1: return mm_q5_1;
      case DType::Q8_0: return mm_q8_0;
      case DType::Q4_K: return mm_q4_K;
      case DType::Q5_K: return mm_q5_K;
      case DType::Q6_K: return mm_q6_K;
      case DType::F32: return mm_f32;
      case DType::F16: return mm_f16;
      case DType::BF16: return mm_bf16;
      default: return nullptr;
    }
  }
};
extern const KernelTable kScalarKernels;  // vec_dot_scalar.cc
extern const KernelTable kAvx2Kernels;    // vec_dot_avx2.cc
// AVX-512 (kernels_avx512.cc): the AVX2 table with the AVX-512 kernels in place of their entries.
const KernelTable& avx512_kernels();
// q5_0 (q8_0 activations) and q5_1 (q8_1 activations): vec_dot_scalar.cc (the scalar table's).
float dot_q5_0_scalar(const void* w, const void* a, int64_t nb);
float dot_q5_1_scalar(const void* w, const void* a, int64_t nb);
// Activation blocks (quantize_act.cc).
void quantize_q8_0_scalar(const float* x, BlockQ8_0* y, int64_t nb);
void quantize_q8_1_scalar(const float* x, BlockQ8_1* y, int64_t nb);
void quantize_q8_0_avx2(const float* x, BlockQ8_0* y, int64_t nb);
void quantize_q8_1_avx2(const float* x, BlockQ8_1* y, int64_t nb);
void quantize_q8_K_scalar(const float* x, BlockQ8_K* y, int64_t nb);
void quantize_q8_K_avx2(const float* x, BlockQ8_K* y, int64_t nb);
// AVX2 attention kernels (attention_avx2.cc).
bool attention_scores_f16_avx2(const float* q, const uint16_t* rows, int64_t n, int64_t dim,
                               float scale, float* scores);
bool attention_values_f16_avx2(const float* p, const uint16_t* rows, int64_t n, int64_t dim,
                               float* out);
// AVX2 grouped-query attention kernels (attention_group_avx2.cc).
bool attention_scores_f16_group_avx2(const float* q, int64_t q_stride, int heads, const uint16_t* rows,
                                     int64_t n, int64_t dim, float scale, float* scores, int64_t s_stride);
bool attention_values_f16_group_avx2(const float* p, int64_t p_stride, int heads, const uint16_t* rows,
                                     int64_t n, int64_t dim, float* out, int64_t out_stride);
// The AVX2 tiled products (matmul_avx2.cc).
void matmul_q4_0_avx2(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1,
                      const void* act, size_t act_stride, int64_t n, float* out, int64_t out_stride);
void matmul_q4_1_avx2(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1,
                      const void* act, size_t act_stride, int64_t n, float* out, int64_t out_stride);
void matmul_q8_0_avx2(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1,
                      const void* act, size_t act_stride, int64_t n, float* out, int64_t out_stride);
void matmul_q5_0_avx2(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1,
                      const void* act, size_t act_stride, int64_t n, float* out, int64_t out_stride);
void matmul_q5_1_avx2(int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1,
                      const void* act, size_t act_stride, int64_t n, float* out, int64_t out_stride);

}  // namespace kvstash::detail
