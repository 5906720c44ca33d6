// Portable kernels: the definition of every result. The AVX2 file must reproduce these bits.
#include <cmath>

#include "tensor/kernels_impl.h"

namespace kvstash::detail {

namespace {

float dot_q4_0(const void* w, const void* a, int64_t nb) {
  const BlockQ4_0* x = static_cast<const BlockQ4_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  float lane[8] = {};
  for (int64_t b = 0; b < nb; ++b) {
    int32_t isum = 0;
    for (int l = 0; l < 16; ++l)
      isum += ((x[b].qs[l] & 0x0F) - 8) * y[b].qs[l] + ((x[b].qs[l] >> 4) - 8) * y[b].qs[l + 16];
    fma_q8(lane[b % 8], f16_to_f32(x[b].d), f16_to_f32(y[b].d), isum);
  }
  return reduce_lanes(lane);
}

float dot_q4_1(const void* w, const void* a, int64_t nb) {
  const BlockQ4_1* x = static_cast<const BlockQ4_1*>(w);
  const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
  float lane[8] = {};
  for (int64_t b = 0; b < nb; ++b) {
    int32_t isum = 0;
    for (int l = 0; l < 16; ++l)
      isum += (x[b].qs[l] & 0x0F) * y[b].qs[l] + (x[b].qs[l] >> 4) * y[b].qs[l + 16];
    fma_q4_1(lane[b % 8], f16_to_f32(x[b].d), f16_to_f32(x[b].m), f16_to_f32(y[b].d),
             f16_to_f32(y[b].s), isum);
  }
  return reduce_lanes(lane);
}

}  // namespace

float dot_q5_0_scalar(const void* w, const void* a, int64_t nb) {
  const BlockQ5_0* x = static_cast<const BlockQ5_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  float lane[8] = {};
  uint8_t q[kQK];
  for (int64_t b = 0; b < nb; ++b) {
    unpack_q5(x[b].qh, x[b].qs, q);
    int32_t isum = 0;
    for (int l = 0; l < kQK; ++l) isum += (int32_t(q[l]) - 16) * y[b].qs[l];
    fma_q8(lane[b % 8], f16_to_f32(x[b].d), f16_to_f32(y[b].d), isum);
  }
  return reduce_lanes(lane);
}

float dot_q5_1_scalar(const void* w, const void* a, int64_t nb) {
  const BlockQ5_1* x = static_cast<const BlockQ5_1*>(w);
  const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
  float lane[8] = {};
  uint8_t q[kQK];
  for (int64_t b = 0; b < nb; ++b) {
    unpack_q5(x[b].qh, x[b].qs, q);
    int32_t isum = 0;
    for (int l = 0; l < kQK; ++l) isum += int32_t(q[l]) * y[b].qs[l];
    fma_q4_1(lane[b % 8], f16_to_f32(x[b].d), f16_to_f32(x[b].m), f16_to_f32(y[b].d),
             f16_to_f32(y[b].s), isum);
  }
  return reduce_lanes(lane);
}

namespace {

float dot_q8_0(const void* w, const void* a, int64_t nb) {
  const BlockQ8_0* x = static_cast<const BlockQ8_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  float lane[8] = {};
  for (int64_t b = 0; b < nb; ++b) {
    int32_t isum = 0;
    for (int l = 0; l < kQK; ++l) isum += x[b].qs[l] * y[b].qs[l];
    fma_q8(lane[b % 8], f16_to_f32(x[b].d), f16_to_f32(y[b].d), isum);
  }
  return reduce_lanes(lane);
}

// q4_K / q5_K: isum = sum_j sc_j * sum_{l in sub-block j} q_l * a_l (exact int32),
// msum = sum_j min_j * bsum(j); block value = d*dx*isum - dmin*dx*msum.
template <typename Block, void (*Unpack)(const Block&, uint8_t*)>
float dot_k_with_mins(const void* w, const void* a, int64_t nb) {
  const Block* x = static_cast<const Block*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  float lane[8] = {};
  uint8_t q[kQKK], sc[8], mn[8];
  for (int64_t b = 0; b < nb; ++b) {
    Unpack(x[b], q);
    unpack_k4_scales(x[b].scales, sc, mn);
    int32_t isum = 0;
    for (int j = 0; j < 8; ++j) {
      int32_t s = 0;
      for (int l = 0; l < 32; ++l) s += q[32 * j + l] * y[b].qs[32 * j + l];
      isum += int32_t(sc[j]) * s;
    }
    fma_k(lane[b % 8], f16_to_f32(x[b].d), f16_to_f32(x[b].dmin), y[b].d, isum,
          q4k_min_sum(mn, y[b]));
  }
  return reduce_lanes(lane);
}

// q6_K: isum = sum_g sc_g * sum_{l in group g} u_l * a_l - 32 * sum_g sc_g * bsum_g,
// with u the unsigned 6-bit quants (value = u - 32).
float dot_q6_K(const void* w, const void* a, int64_t nb) {
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  float lane[8] = {};
  uint8_t q[kQKK];
  for (int64_t b = 0; b < nb; ++b) {
    unpack_q6_K(x[b], q);
    int32_t isum = 0;
    for (int g = 0; g < 16; ++g) {
      int32_t s = 0;
      for (int l = 0; l < 16; ++l) s += q[16 * g + l] * y[b].qs[16 * g + l];
      isum += int32_t(x[b].scales[g]) * s;
    }
    fma_q6_K(lane[b % 8], f16_to_f32(x[b].d), y[b].d, isum - q6k_offset_sum(x[b], y[b]));
  }
  return reduce_lanes(lane);
}

float dot_f32(const float* a, const float* b, int64_t n) {
  float lane[8] = {};
  for (int64_t i = 0; i < n; ++i) lane[i % 8] = std::fma(a[i], b[i], lane[i % 8]);
  return reduce_lanes(lane);
}

float dot_f32_f16(const float* a, const uint16_t* b, int64_t n) {
  float lane[8] = {};
  for (int64_t i = 0; i < n; ++i) lane[i % 8] = std::fma(a[i], f16_to_f32(b[i]), lane[i % 8]);
  return reduce_lanes(lane);
}

float dot_f32_bf16(const float* a, const uint16_t* b, int64_t n) {
  float lane[8] = {};
  for (int64_t i = 0; i < n; ++i) lane[i % 8] = std::fma(a[i], bf16_to_f32(b[i]), lane[i % 8]);
  return reduce_lanes(lane);
}

void axpy_f16(float alpha, const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::fma(alpha, f16_to_f32(x[i]), y[i]);
}

void f16_to_f32_row(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

void f32_to_f16_row(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

}  // namespace

const KernelTable kScalarKernels = {
    .dot_q4_0 = dot_q4_0,
    .dot_q4_1 = dot_q4_1,
    .dot_q5_0 = dot_q5_0_scalar,
    .dot_q5_1 = dot_q5_1_scalar,
    .dot_q8_0 = dot_q8_0,
    .dot_q4_K = dot_k_with_mins<BlockQ4_K, unpack_q4_K>,
    .dot_q5_K = dot_k_with_mins<BlockQ5_K, unpack_q5_K>,
    .dot_q6_K = dot_q6_K,
    .dot_f32 = dot_f32,
    .dot_f32_f16 = dot_f32_f16,
    .dot_f32_bf16 = dot_f32_bf16,
    .axpy_f16 = axpy_f16,
    .f16_to_f32_row = f16_to_f32_row,
    .f32_to_f16_row = f32_to_f16_row,
    .quantize_q8_0 = quantize_q8_0_scalar,
    .quantize_q8_1 = quantize_q8_1_scalar,
    .quantize_q8_K = quantize_q8_K_scalar,
};

}  // namespace kvstash::detail
