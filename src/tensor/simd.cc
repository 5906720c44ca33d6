// Run-time choice of the kernel set, and the public entry points that dispatch to it.
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "kvstash/error.h"
#include "kvstash/kernels.h"
#include "tensor/kernels_impl.h"

namespace kvstash {

namespace {

SimdLevel best_level() {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  return avx2 ? SimdLevel::AVX2 : SimdLevel::Scalar;
}

SimdLevel default_level() {
  const char* env = std::getenv("KVSTASH_SIMD");
  if (env != nullptr && std::strcmp(env, "scalar") == 0) return SimdLevel::Scalar;
  return best_level();
}

const detail::KernelTable* table_for(SimdLevel level) {
  return level == SimdLevel::AVX2 ? &detail::kAvx2Kernels : &detail::kScalarKernels;
}

std::atomic<const detail::KernelTable*> g_kernels{nullptr};

}  // namespace

namespace detail {
const KernelTable& active_kernels() {
  const KernelTable* k = g_kernels.load(std::memory_order_acquire);
  if (k == nullptr) {
    static const KernelTable* initial = table_for(default_level());  // env read once
    const KernelTable* expected = nullptr;
    g_kernels.compare_exchange_strong(expected, initial, std::memory_order_acq_rel);
    k = g_kernels.load(std::memory_order_acquire);
  }
  return *k;
}
}  // namespace detail

SimdLevel simd_level() {
  return &detail::active_kernels() == &detail::kAvx2Kernels ? SimdLevel::AVX2 : SimdLevel::Scalar;
}

void set_simd_level(SimdLevel level) {
  if (level == SimdLevel::AVX2 && best_level() != SimdLevel::AVX2) level = SimdLevel::Scalar;
  g_kernels.store(table_for(level), std::memory_order_release);
}

float vec_dot(DType weight, int64_t n, const void* w_row, const void* act) {
  const detail::KernelTable& k = detail::active_kernels();
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

void matmul_rows(DType weight, int64_t cols, const void* w, size_t w_stride, int64_t r0, int64_t r1,
                 const void* act, size_t act_stride, int64_t n, float* out, int64_t out_stride) {
  if (r0 >= r1 || n <= 0) return;
  if (&detail::active_kernels() == &detail::kAvx2Kernels &&
      detail::matmul_rows_avx2(weight, cols, w, w_stride, r0, r1, act, act_stride, n, out, out_stride))
    return;
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  const uint8_t* ab = static_cast<const uint8_t*>(act);
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t t = 0; t < n; ++t)
      out[t * out_stride + r] = vec_dot(weight, cols, wb + size_t(r) * w_stride, ab + size_t(t) * act_stride);
}

void attention_scores_f16(const float* q, const uint16_t* rows, int64_t n, int64_t dim, float scale,
                          float* scores) {
  if (&detail::active_kernels() == &detail::kAvx2Kernels &&
      detail::attention_scores_f16_avx2(q, rows, n, dim, scale, scores))
    return;
  for (int64_t j = 0; j < n; ++j) scores[j] = dot_f32_f16(q, rows + j * dim, dim) * scale;
}

void attention_values_f16(const float* p, const uint16_t* rows, int64_t n, int64_t dim, float* out) {
  if (&detail::active_kernels() == &detail::kAvx2Kernels &&
      detail::attention_values_f16_avx2(p, rows, n, dim, out))
    return;
  for (int64_t j = 0; j < n; ++j) axpy_f16(p[j], rows + j * dim, out, dim);
}

float dot_f32_f16(const float* a, const uint16_t* b, int64_t n) {
  return detail::active_kernels().dot_f32_f16(a, b, n);
}

void axpy_f16(float alpha, const uint16_t* x, float* y, int64_t n) {
  detail::active_kernels().axpy_f16(alpha, x, y, n);
}

float dot_f32(const float* a, const float* b, int64_t n) {
  return detail::active_kernels().dot_f32(a, b, n);
}

}  // namespace kvstash
