#include "model/ops.h"

#include <cmath>

#include "kvstash/kernels.h"

namespace kvstash {

void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += double(x[i] * x[i]);
  const float scale = 1.0f / std::sqrt(float(sum / double(n)) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * scale) * weight[i];
}

void rope(float* x, int n_heads, int head_dim, int n_rot, int32_t pos, const std::vector<double>& inv_freq) {
  for (int i = 0; i < n_rot / 2; ++i) {
    const double theta = double(pos) * inv_freq[size_t(i)];
    const float c = float(std::cos(theta)), s = float(std::sin(theta));
    for (int h = 0; h < n_heads; ++h) {
      float* p = x + size_t(h) * size_t(head_dim) + size_t(2 * i);
      const float x0 = p[0], x1 = p[1];
      p[0] = x0 * c - x1 * s;
      p[1] = x0 * s + x1 * c;
    }
  }
}

void softmax(float* x, int64_t n) {
  float max = x[0];
  for (int64_t i = 1; i < n; ++i) max = x[i] > max ? x[i] : max;
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += double(x[i]);
  }
  const float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void swiglu(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void store_kv(const Kernels& kernels, KvPool& pool, int32_t block, int slot, int layer, int n_head_kv,
              int head_dim, const float* key, const float* v) {
  for (int h = 0; h < n_head_kv; ++h) {
    const size_t at = size_t(slot) * size_t(head_dim);
    kernels.f32_to_f16_row(key + size_t(h) * size_t(head_dim), pool.k(block, layer, h) + at, head_dim);
    kernels.f32_to_f16_row(v + size_t(h) * size_t(head_dim), pool.v(block, layer, h) + at, head_dim);
  }
}

}  // namespace kvstash
