// Weight rows of any supported type to f32, computing each element exactly as ggml's
// dequantize_row_* (and gguf-py) do in float32: q4_0 (n-8)*d; q4_1 n*d+m; q5_0 (q-16)*d;
// q5_1 q*d+m; q8_0 q*d;
// q4_K/q5_K (d*sc)*q - (dmin*m); q6_K (d*sc)*q.
#include <string>

#include "kvstash/error.h"
#include "kvstash/kernels.h"
#include "tensor/kernels_impl.h"

namespace kvstash {

using namespace detail;

namespace {

void dequant_q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = f16_to_f32(b[i].d);
    for (int l = 0; l < 16; ++l) {
      y[l] = float((b[i].qs[l] & 0x0F) - 8) * d;
      y[l + 16] = float((b[i].qs[l] >> 4) - 8) * d;
    }
  }
}

void dequant_q4_1(const BlockQ4_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = f16_to_f32(b[i].d), m = f16_to_f32(b[i].m);
    for (int l = 0; l < 16; ++l) {
      y[l] = float(b[i].qs[l] & 0x0F) * d + m;
      y[l + 16] = float(b[i].qs[l] >> 4) * d + m;
    }
  }
}

void dequant_q5_0(const BlockQ5_0* b, float* y, int64_t nb) {
  uint8_t q[kQK];
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = f16_to_f32(b[i].d);
    unpack_q5(b[i].qh, b[i].qs, q);
    for (int l = 0; l < kQK; ++l) y[l] = float(int(q[l]) - 16) * d;
  }
}

void dequant_q5_1(const BlockQ5_1* b, float* y, int64_t nb) {
  uint8_t q[kQK];
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = f16_to_f32(b[i].d), m = f16_to_f32(b[i].m);
    unpack_q5(b[i].qh, b[i].qs, q);
    for (int l = 0; l < kQK; ++l) y[l] = float(q[l]) * d + m;
  }
}

void dequant_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = f16_to_f32(b[i].d);
    for (int l = 0; l < kQK; ++l) y[l] = float(b[i].qs[l]) * d;
  }
}

// q4_K and q5_K share the scale/min scheme: 8 sub-blocks of 32 elements.
template <typename Block, void (*Unpack)(const Block&, uint8_t*)>
void dequant_k_with_mins(const Block* b, float* y, int64_t nb) {
  uint8_t q[kQKK], sc[8], mn[8];
  for (int64_t i = 0; i < nb; ++i) {
    Unpack(b[i], q);
    unpack_k4_scales(b[i].scales, sc, mn);
    const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
    for (int j = 0; j < 8; ++j) {
      const float ds = d * float(sc[j]), dm = dmin * float(mn[j]);
      for (int l = 0; l < 32; ++l, ++y) *y = ds * float(q[32 * j + l]) - dm;
    }
  }
}

void dequant_q6_K(const BlockQ6_K* b, float* y, int64_t nb) {
  uint8_t q[kQKK];
  for (int64_t i = 0; i < nb; ++i) {
    unpack_q6_K(b[i], q);
    const float d = f16_to_f32(b[i].d);
    for (int g = 0; g < 16; ++g) {
      const float ds = d * float(b[i].scales[g]);
      for (int l = 0; l < 16; ++l, ++y) *y = ds * float(int(q[16 * g + l]) - 32);
    }
  }
}

}  // namespace

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  if (!info.supported) throw Error(ErrorKind::NotSupported, "cannot dequantize tensor type " + dtype_name(uint32_t(t)));
  (void)row_bytes(t, n);  // throws the standard message unless n is whole blocks
  const int64_t nb = n / info.block_size;
  switch (t) {
    case DType::F32: {
      const float* s = static_cast<const float*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = s[i];
      return;
    }
    case DType::F16: Kernels::active().f16_to_f32_row(static_cast<const uint16_t*>(src), dst, n); return;
    case DType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::Q4_0: dequant_q4_0(static_cast<const BlockQ4_0*>(src), dst, nb); return;
    case DType::Q4_1: dequant_q4_1(static_cast<const BlockQ4_1*>(src), dst, nb); return;
    case DType::Q5_0: dequant_q5_0(static_cast<const BlockQ5_0*>(src), dst, nb); return;
    case DType::Q5_1: dequant_q5_1(static_cast<const BlockQ5_1*>(src), dst, nb); return;
    case DType::Q8_0: dequant_q8_0(static_cast<const BlockQ8_0*>(src), dst, nb); return;
    case DType::Q4_K:
      dequant_k_with_mins<BlockQ4_K, unpack_q4_K>(static_cast<const BlockQ4_K*>(src), dst, nb);
      return;
    case DType::Q5_K:
      dequant_k_with_mins<BlockQ5_K, unpack_q5_K>(static_cast<const BlockQ5_K*>(src), dst, nb);
      return;
    case DType::Q6_K: dequant_q6_K(static_cast<const BlockQ6_K*>(src), dst, nb); return;
    default: break;
  }
  throw Error(ErrorKind::NotSupported, "cannot dequantize tensor type " + dtype_name(uint32_t(t)));
}

}  // namespace kvstash
