// The kernel set of each SIMD level and the process's choice of one.
#include <cstdlib>
#include <cstring>
#include <string>

#include "kvstash/error.h"
#include "kvstash/kernels.h"
#include "tensor/cpu_features.h"
#include "tensor/kernels_impl.h"

namespace kvstash {

SimdLevel Kernels::best_level() {
  static const SimdLevel best = [] {
    const detail::CpuFeatures f = detail::cpu_features();
    if (f.avx512) return SimdLevel::AVX512;
    return f.avx2 && f.fma && f.f16c ? SimdLevel::AVX2 : SimdLevel::Scalar;
  }();
  return best;
}

const Kernels& Kernels::at(SimdLevel level) {
  static constexpr Kernels scalar(SimdLevel::Scalar, detail::kScalarKernels);
  static constexpr Kernels avx2(SimdLevel::AVX2, detail::kAvx2Kernels);
  static const Kernels avx512(SimdLevel::AVX512, detail::avx512_kernels());
  switch (level) {
    case SimdLevel::Scalar: return scalar;
    case SimdLevel::AVX2:
      if (best_level() < SimdLevel::AVX2)
        throw Error(ErrorKind::NotSupported, "SIMD level avx2 needs AVX2, FMA and F16C, which this CPU lacks");
      return avx2;
    case SimdLevel::AVX512:
      if (best_level() < SimdLevel::AVX512)
        throw Error(ErrorKind::NotSupported,
                    "SIMD level avx512 needs AVX-512 F, BW, VL, DQ and VNNI, which this CPU lacks");
      return avx512;
  }
  throw Error(ErrorKind::InvalidArgument, "unknown SIMD level " + std::to_string(int(level)));
}

const Kernels& Kernels::active() {
  // A throwing initializer leaves it unset: a bad KVSTASH_SIMD fails every call alike.
  static const Kernels& k = at(parse_simd_level(std::getenv("KVSTASH_SIMD"), best_level()));
  return k;
}

const char* Kernels::name() const {
  switch (level_) {
    case SimdLevel::AVX2: return "avx2";
    case SimdLevel::AVX512: return "avx512";
    default: return "scalar";
  }
}

SimdLevel parse_simd_level(const char* value, SimdLevel best) {
  if (value == nullptr || *value == '\0') return best;
  SimdLevel level;
  if (std::strcmp(value, "scalar") == 0) {
    level = SimdLevel::Scalar;
  } else if (std::strcmp(value, "avx2") == 0) {
    level = SimdLevel::AVX2;
  } else if (std::strcmp(value, "avx512") == 0) {
    level = SimdLevel::AVX512;
  } else {
    throw Error(ErrorKind::InvalidArgument,
                "KVSTASH_SIMD=" + std::string(value) + ": expected scalar, avx2 or avx512");
  }
  if (level > best)
    throw Error(ErrorKind::NotSupported,
                "KVSTASH_SIMD=" + std::string(value) + ": this CPU lacks " +
                    (level == SimdLevel::AVX2 ? "AVX2, FMA or F16C" : "AVX-512 F, BW, VL, DQ or VNNI"));
  return level;
}

float Kernels::vec_dot(DType weight, int64_t n, const void* w_row, const void* act) const {
  const detail::KernelTable& k = *t_;
  const int64_t block = dtype_info(weight).block_size;
  if (n % block != 0) (void)row_bytes(weight, n);  // throws: not whole blocks
  const int64_t nb = n / block;
  switch (weight) {
    case DType::F32: return k.dot_f32(static_cast<const float*>(act), static_cast<const float*>(w_row), n);
    case DType::F16:
      return k.dot_f32_f16(static_cast<const float*>(act), static_cast<const uint16_t*>(w_row), n);
    case DType::BF16:
      return k.dot_f32_bf16(static_cast<const float*>(act), static_cast<const uint16_t*>(w_row), n);
    case DType::Q4_0: return k.dot_q4_0(w_row, act, nb);
    case DType::Q4_1: return k.dot_q4_1(w_row, act, nb);
    case DType::Q5_0: return k.dot_q5_0(w_row, act, nb);
    case DType::Q5_1: return k.dot_q5_1(w_row, act, nb);
    case DType::Q8_0: return k.dot_q8_0(w_row, act, nb);
    case DType::Q4_K: return k.dot_q4_K(w_row, act, nb);
    case DType::Q5_K: return k.dot_q5_K(w_row, act, nb);
    case DType::Q6_K: return k.dot_q6_K(w_row, act, nb);
    default: break;
  }
  throw Error(ErrorKind::NotSupported, "no dot product for weight type " + dtype_name(uint32_t(weight)));
}

void Kernels::matmul_rows(DType weight, int64_t cols, const void* w, size_t w_stride, int64_t r0,
                          int64_t r1, const void* act, size_t act_stride, int64_t n, float* out,
                          int64_t out_stride) const {
  if (r0 >= r1 || n <= 0) return;
  if (const detail::MatmulFn fast = t_->matmul_of(weight); fast && cols % dtype_info(weight).block_size == 0) {
    fast(cols, w, w_stride, r0, r1, act, act_stride, n, out, out_stride);
    return;
  }
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  const uint8_t* ab = static_cast<const uint8_t*>(act);
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t t = 0; t < n; ++t)
      out[t * out_stride + r] = vec_dot(weight, cols, wb + size_t(r) * w_stride, ab + size_t(t) * act_stride);
}

void Kernels::softmax(float* x, int64_t n) const { t_->softmax(x, n); }

void Kernels::attention_scores_f16(const float* q, const uint16_t* rows, int64_t n, int64_t dim,
                                   float scale, float* scores) const {
  if (t_->attention_scores_f16 && t_->attention_scores_f16(q, rows, n, dim, scale, scores)) return;
  for (int64_t j = 0; j < n; ++j) scores[j] = t_->dot_f32_f16(q, rows + j * dim, dim) * scale;
}

void Kernels::attention_values_f16(const float* p, const uint16_t* rows, int64_t n, int64_t dim,
                                   float* out) const {
  if (t_->attention_values_f16 && t_->attention_values_f16(p, rows, n, dim, out)) return;
  for (int64_t j = 0; j < n; ++j) t_->axpy_f16(p[j], rows + j * dim, out, dim);
}

void Kernels::attention_scores_f16_group(const float* q, int64_t q_stride, int heads, const uint16_t* rows,
                                         int64_t n, int64_t dim, float scale, float* scores,
                                         int64_t s_stride) const {
  if (t_->attention_scores_f16_group &&
      t_->attention_scores_f16_group(q, q_stride, heads, rows, n, dim, scale, scores, s_stride))
    return;
  for (int h = 0; h < heads; ++h) attention_scores_f16(q + h * q_stride, rows, n, dim, scale, scores + h * s_stride);
}

void Kernels::attention_values_f16_group(const float* p, int64_t p_stride, int heads, const uint16_t* rows,
                                         int64_t n, int64_t dim, float* out, int64_t out_stride) const {
  if (t_->attention_values_f16_group &&
      t_->attention_values_f16_group(p, p_stride, heads, rows, n, dim, out, out_stride))
    return;
  for (int h = 0; h < heads; ++h) attention_values_f16(p + h * p_stride, rows, n, dim, out + h * out_stride);
}

float Kernels::dot_f32_f16(const float* a, const uint16_t* b, int64_t n) const {
  return t_->dot_f32_f16(a, b, n);
}
void Kernels::axpy_f16(float alpha, const uint16_t* x, float* y, int64_t n) const {
  t_->axpy_f16(alpha, x, y, n);
}
float Kernels::dot_f32(const float* a, const float* b, int64_t n) const { return t_->dot_f32(a, b, n); }
void Kernels::f16_to_f32_row(const uint16_t* src, float* dst, int64_t n) const {
  t_->f16_to_f32_row(src, dst, n);
}
void Kernels::f32_to_f16_row(const float* src, uint16_t* dst, int64_t n) const {
  t_->f32_to_f16_row(src, dst, n);
}

}  // namespace kvstash
