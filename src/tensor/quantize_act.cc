// Activation quantization, bit-identical to ggml's reference quantize_row_q8_0_ref,
// quantize_row_q8_1_ref and quantize_row_q8_K_ref (inputs must be finite).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kvstash/error.h"
#include "kvstash/kernels.h"
#include "tensor/avx512_util.h"
#include "tensor/kernels_impl.h"
#include "tensor/q32_avx512.h"

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

// The same block with AVX2: max |x| is order-free, x * id is one multiply per element as above,
// and roundf (halves away from zero) is rebuilt exactly: t = trunc(v); |v - t| is exact, and
// t moves one away from zero when it is >= 0.5. Returns d and the sum of the quants.
__attribute__((target("avx2,fma,f16c"))) float quantize_block_q8_avx2(const float* x, uint16_t* d_out,
                                                                      int8_t* qs, int* sum_out) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 v[4];
  __m256 m = _mm256_setzero_ps();
  for (int k = 0; k < 4; ++k) {
    v[k] = _mm256_loadu_ps(x + 8 * k);
    m = _mm256_max_ps(m, _mm256_and_ps(v[k], abs_mask));
  }
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  const float amax = _mm_cvtss_f32(m4);
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  *d_out = f32_to_f16(d);
  const __m256 vid = _mm256_set1_ps(id), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
  __m256i q[4];
  for (int k = 0; k < 4; ++k) {
    const __m256 p = _mm256_mul_ps(v[k], vid);
    const __m256 t = _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_and_ps(_mm256_sub_ps(p, t), abs_mask);
    const __m256 up = _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ), one);
    const __m256 sign = _mm256_andnot_ps(abs_mask, p);  // sign bit of p
    q[k] = _mm256_cvtps_epi32(_mm256_add_ps(t, _mm256_or_ps(up, sign)));  // t +- 1 or t + (+-0)
  }
  // int32 -> int8 (values within [-127, 127]); packs work per 128-bit lane, the permute restores order.
  const __m256i p01 = _mm256_packs_epi32(q[0], q[1]), p23 = _mm256_packs_epi32(q[2], q[3]);
  const __m256i p = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23),
                                                _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), p);
  if (sum_out) {
    const __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
    *sum_out = _mm_cvtsi128_si32(s4);
  }
  return d;
}

// The same block with AVX-512: the operations of quantize_block_q8_avx2 on 16 lanes (two
// registers per block); d and s convert with F16C, bit-identical to f32_to_f16 (f16_test.cc).
KV_AVX512 float quantize_block_q8_avx512(const float* x, uint16_t* d_out, int8_t* qs, int* sum_out) {
  const __m512 v[2] = {_mm512_loadu_ps(x), _mm512_loadu_ps(x + 16)};
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  *d_out = uint16_t(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
  const __m512 vid = _mm512_set1_ps(id), one = _mm512_set1_ps(1.0f);
  const __m512i sign_bit = _mm512_set1_epi32(int32_t(0x80000000u));
  __m512i q[2];
  for (int k = 0; k < 2; ++k) {
    const __m512 p = _mm512_mul_ps(v[k], vid);
    const __m512 t = _mm512_roundscale_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(p, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 step = _mm512_maskz_mov_ps(up, one);                                   // 1 or +0
    const __m512 sign = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(p), sign_bit));
    q[k] = _mm512_cvtps_epi32(_mm512_add_ps(t, _mm512_or_ps(step, sign)));  // t +- 1 or t + (+-0)
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), _mm512_cvtsepi32_epi8(q[0]));  // within [-127, 127]
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 16), _mm512_cvtsepi32_epi8(q[1]));
  if (sum_out) *sum_out = _mm512_reduce_add_epi32(_mm512_add_epi32(q[0], q[1]));
  return d;
}

KV_AVX512 void quantize_row_q8_1_avx512(const float* x, BlockQ8_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    int sum = 0;
    const float d = quantize_block_q8_avx512(x + kQK * i, &y[i].d, y[i].qs, &sum);
    y[i].s = uint16_t(_cvtss_sh(float(sum) * d, _MM_FROUND_TO_NEAREST_INT));
  }
}

}  // namespace

void detail::quantize_q8_0_avx512(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) quantize_block_q8_avx512(x + kQK * i, &y[i].d, y[i].qs, nullptr);
}

void detail::quantize_q8_1_avx512(const float* x, BlockQ8_1* y, int64_t nb) { quantize_row_q8_1_avx512(x, y, nb); }

void detail::quantize_q8_0_scalar(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) quantize_block_q8(x + kQK * i, &y[i].d, y[i].qs);
}

void detail::quantize_q8_0_avx2(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) quantize_block_q8_avx2(x + kQK * i, &y[i].d, y[i].qs, nullptr);
}

void detail::quantize_q8_1_scalar(const float* x, BlockQ8_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = quantize_block_q8(x + kQK * i, &y[i].d, y[i].qs);
    int sum = 0;
    for (int j = 0; j < kQK; ++j) sum += y[i].qs[j];
    y[i].s = f32_to_f16(float(sum) * d);  // ggml uses the unrounded d here, not the f16 one
  }
}

void detail::quantize_q8_1_avx2(const float* x, BlockQ8_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    int sum = 0;
    const float d = quantize_block_q8_avx2(x + kQK * i, &y[i].d, y[i].qs, &sum);
    y[i].s = f32_to_f16(float(sum) * d);
  }
}

namespace {

// Round to nearest, ties to even, as ggml's nearest_int (valid for |f| < 2^22).
int nearest_int(float f) {
  const float v = f + 12582912.0f;  // 1.5 * 2^23: the integer lands in the low mantissa bits
  int32_t i;
  std::memcpy(&i, &v, sizeof i);
  return (i & 0x007FFFFF) - 0x00400000;
}

}  // namespace

// q8_K: scale by -127 / (the element of largest magnitude; the first one if several), so that
// element becomes -127; d = 1 / that scale (a float, possibly negative); bsums hold sums of 16
// consecutive quants.
void detail::quantize_q8_K_scalar(const float* x, BlockQ8_K* y, int64_t nb) {
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

// The same bytes with AVX2: max |x| is order-free and the first element reaching it is found by
// comparison; iscale * x, the rounding constant and the bit extraction are nearest_int's own
// operations per lane; int32 -> int8 keeps the low byte as the cast does (even for the huge
// values a subnormal max would give), and bsums are summed from those bytes.
__attribute__((target("avx2,fma,f16c"))) void detail::quantize_q8_K_avx2(const float* x, BlockQ8_K* y,
                                                                         int64_t nb) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < kQKK; k += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + k), abs_mask));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    BlockQ8_K& b = y[i];
    if (amax == 0.0f) {
      std::memset(&b, 0, sizeof b);
      continue;
    }
    int first = 0;
    for (int k = 0; k < kQKK; k += 8) {
      const __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + k), abs_mask);
      const int hit = _mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_set1_ps(amax), _CMP_EQ_OQ));
      if (hit) {
        first = k + __builtin_ctz(unsigned(hit));
        break;
      }
    }
    const float iscale = -127.0f / x[first];
    const __m256 vs = _mm256_set1_ps(iscale), magic = _mm256_set1_ps(12582912.0f);
    const __m256i mant = _mm256_set1_epi32(0x007FFFFF), half = _mm256_set1_epi32(0x00400000);
    const __m256i top = _mm256_set1_epi32(127), low_byte = _mm256_set1_epi32(0xFF);
    __m256i sums[8];  // int32 sums of 4 quants: lanes 0-3 group 2k, lanes 4-7 group 2k + 1
    for (int k = 0; k < 8; ++k) {
      __m256i q[4];
      for (int v = 0; v < 4; ++v) {
        const __m256 f = _mm256_add_ps(_mm256_mul_ps(vs, _mm256_loadu_ps(x + 32 * k + 8 * v)), magic);
        const __m256i n = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(f), mant), half);
        q[v] = _mm256_and_si256(_mm256_min_epi32(n, top), low_byte);
      }
      // bytes 0..255 pack without saturation; packs work per 128-bit lane, the permute restores order.
      const __m256i p = _mm256_permutevar8x32_epi32(
          _mm256_packus_epi16(_mm256_packus_epi32(q[0], q[1]), _mm256_packus_epi32(q[2], q[3])),
          _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(b.qs + 32 * k), p);
      sums[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), p), _mm256_set1_epi16(1));
    }
    // hadd twice: lanes 0-3 hold groups 2k of four vectors, lanes 4-7 groups 2k + 1.
    const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(sums[0], sums[1]), _mm256_hadd_epi32(sums[2], sums[3]));
    const __m256i c = _mm256_hadd_epi32(_mm256_hadd_epi32(sums[4], sums[5]), _mm256_hadd_epi32(sums[6], sums[7]));
    const __m256i g = _mm256_packs_epi32(a, c);  // groups 0 2 4 .. 14 | 1 3 5 .. 15 (|sum| <= 2048)
    const __m128i even = _mm256_castsi256_si128(g), odd = _mm256_extracti128_si256(g, 1);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(b.bsums), _mm_unpacklo_epi16(even, odd));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(b.bsums + 8), _mm_unpackhi_epi16(even, odd));
    b.d = 1.0f / iscale;
  }
}

DType activation_type(DType weight) {
  switch (weight) {
    case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: return DType::Q8_0;
    case DType::Q4_1: case DType::Q5_1: return DType::Q8_1;
    case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
      return DType::Q8_K;
    default: return DType::F32;
  }
}

void Kernels::quantize_activations(DType weight, const float* x, void* dst, int64_t n) const {
  const DType at = activation_type(weight);
  const int64_t nb = n / dtype_info(at).block_size;
  (void)row_bytes(at, n);  // throws unless n is whole blocks
  switch (at) {
    case DType::Q8_0: t_->quantize_q8_0(x, static_cast<BlockQ8_0*>(dst), nb); return;
    case DType::Q8_1: t_->quantize_q8_1(x, static_cast<BlockQ8_1*>(dst), nb); return;
    case DType::Q8_K: t_->quantize_q8_K(x, static_cast<BlockQ8_K*>(dst), nb); return;
    default: std::memcpy(dst, x, size_t(n) * sizeof(float)); return;
  }
}

}  // namespace kvstash
