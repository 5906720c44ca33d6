#include "model/ops.h"

#include <cmath>


namespace kvstash {

void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += double(x[i] * x[i]);
  const float scale = 1.0f / std::sqrt(float(sum / double(n)) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * scale) * weight[i];
}

void rope_angles(int32_t pos, int n_rot, const std::vector<double>& inv_freq, float* cos_sin) {
  for (int i = 0; i < n_rot / 2; ++i) {
    const double theta = double(pos) * inv_freq[size_t(i)];
    cos_sin[2 * i] = float(std::cos(theta));
    cos_sin[2 * i + 1] = float(std::sin(theta));
  }
}

void rope_span(float* x, int64_t begin, int64_t end, int head_dim, int n_rot, const float* cos_sin) {
  for (int64_t e = begin; e < end; e += 2) {
    const int64_t d = e % head_dim;  // even: pair d / 2 of its head
    if (d >= n_rot) continue;
    const float c = cos_sin[d], s = cos_sin[d + 1];
    const float x0 = x[e], x1 = x[e + 1];
    x[e] = x0 * c - x1 * s;
    x[e + 1] = x0 * s + x1 * c;
  }
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

void swiglu(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace kvstash
