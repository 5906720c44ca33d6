// Activation quantization, bit-identical to ggml's reference quantize_row_q8_0_ref,
// quantize_row_q8_1_ref and quantize_row_q8_K_ref (inputs must be finite).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kvstash/error.h"
#include "kvstash/kernels.h"
#include "tensor/kernels_impl.h"

namespace kvstash {

using namespace detail;

namespace {

// q8_0 / q8_1: d = amax / 127, q = roundf(x / d) (halves away from zero), d stored as f16.
// Returns the unrounded float d.
float quantize_block_q8(const float* x, uint16_t* d_out, int8_t* qs) {
  float amax = 0.0f;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  *d_out = f32_to_f16(d);
  for (int j = 0; j < kQK; ++j) qs[j] = int8_t(std::round(x[j] * id));
  return d;
}

void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) quantize_block_q8(x + kQK * i, &y[i].d, y[i].qs);
}

void quantize_q8_1(const float* x, BlockQ8_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = quantize_block_q8(x + kQK * i, &y[i].d, y[i].qs);
    int sum = 0;
    for (int j = 0; j < kQK; ++j) sum += y[i].qs[j];
    y[i].s = f32_to_f16(float(sum) * d);  // ggml uses the unrounded d here, not the f16 one
  }
}

// Round to nearest, ties to even, as ggml's nearest_int (valid for |f| < 2^22).
int nearest_int(float f) {
  const float v = f + 12582912.0f;  // 1.5 * 2^23: the integer lands in the low mantissa bits
  int32_t i;
  std::memcpy(&i, &v, sizeof i);
  return (i & 0x007FFFFF) - 0x00400000;
}

// q8_K: scale by -127 / (the element of largest magnitude), so that element becomes -127;
// d = 1 / that scale (a float, possibly negative); bsums hold sums of 16 consecutive quants.
void quantize_q8_K(const float* x, BlockQ8_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQKK; ++j)
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    BlockQ8_K& b = y[i];
    if (amax == 0.0f) {
      std::memset(&b, 0, sizeof b);
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQKK; ++j) b.qs[j] = int8_t(std::min(127, nearest_int(iscale * x[j])));
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += b.qs[16 * g + l];
      b.bsums[g] = int16_t(s);
    }
    b.d = 1.0f / iscale;
  }
}

}  // namespace

DType activation_type(DType weight) {
  switch (weight) {
    case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: return DType::Q8_0;
    case DType::Q4_1: case DType::Q5_1: return DType::Q8_1;
    case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
      return DType::Q8_K;
    default: return DType::F32;
  }
}

void quantize_activations(DType weight, const float* x, void* dst, int64_t n) {
  const DType at = activation_type(weight);
  const int64_t nb = n / dtype_info(at).block_size;
  (void)row_bytes(at, n);  // throws unless n is whole blocks
  switch (at) {
    case DType::Q8_0: quantize_q8_0(x, static_cast<BlockQ8_0*>(dst), nb); return;
    case DType::Q8_1: quantize_q8_1(x, static_cast<BlockQ8_1*>(dst), nb); return;
    case DType::Q8_K: quantize_q8_K(x, static_cast<BlockQ8_K*>(dst), nb); return;
    default: std::memcpy(dst, x, size_t(n) * sizeof(float)); return;
  }
}

}  // namespace kvstash
