// Baseline KV quantisers for docs/codec.md (see baselines.h). Plain scalar code in a fixed order: the
// figures do not depend on the machine.
#include "baselines.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "codec/kv_codec.h"
#include "kvstash/error.h"
#include "kvstash/kernels.h"

namespace kvstash::bench {
namespace {

float f16_round(float x) { return f16_to_f32(f32_to_f16(x)); }

// Runs fn(x, y, n_tokens, head_dim) on every (layer, head) lane of K (is_v false) or V of `in`,
// x the lane as floats, y where the reconstruction goes; writes y back into `out` as f16.
void for_each_lane(const State& in, State& out, bool is_v,
                   const std::function<void(const float*, float*, int64_t, int)>& fn) {
  const int64_t n = in.kv_entries();
  const int d = in.arch.head_dim;
  std::vector<float> x(size_t(n) * size_t(d)), y(x.size());
  for (int l = 0; l < in.arch.n_layer; ++l) {
    const uint16_t* src = is_v ? in.v(l) : in.k(l);
    uint16_t* dst = is_v ? out.mutable_v(l) : out.mutable_k(l);
    for (int h = 0; h < in.arch.n_head_kv; ++h) {
      const size_t base = size_t(h) * x.size();
      for (size_t i = 0; i < x.size(); ++i) x[i] = f16_to_f32(src[base + i]);
      fn(x.data(), y.data(), n, d);
      for (size_t i = 0; i < y.size(); ++i) dst[base + i] = f32_to_f16(y[i]);
    }
  }
}

State fresh_copy(const State& s) {
  if (!s.has_kv()) throw Error(ErrorKind::InvalidArgument, "baseline: the state has no K/V");
  if (s.arch.head_dim % 32 != 0)
    throw Error(ErrorKind::NotSupported, "baseline: head_dim " + std::to_string(s.arch.head_dim) + " is not a multiple of 32");
  State out = s;     // shares tokens, logits and K/V ...
  out.allocate_kv();  // ... until it gets storage of its own
  return out;
}

uint64_t lanes(const State& s) { return uint64_t(s.arch.n_layer) * uint64_t(s.arch.n_head_kv); }

}  // namespace

void per_token_row(const float* x, float* y, int n, int bits) {
  const int qmax = (1 << (bits - 1)) - 1;
  float amax = 0;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float s = f16_round(amax / float(qmax));  // the stored scale is what both sides use
  for (int i = 0; i < n; ++i) {
    const float q = s > 0 ? std::clamp(std::round(x[i] / s), float(-qmax), float(qmax)) : 0.0f;
    y[i] = q * s;
  }
}

void asym2_group(const float* x, float* y, int64_t n, int64_t stride) {
  float mn = x[0], mx = x[0];
  for (int64_t i = 1; i < n; ++i) {
    mn = std::min(mn, x[i * stride]);
    mx = std::max(mx, x[i * stride]);
  }
  const float m = f16_round(mn), s = f16_round((mx - mn) / 3.0f);
  for (int64_t i = 0; i < n; ++i) {
    const float q = s > 0 ? std::clamp(std::round((x[i * stride] - m) / s), 0.0f, 3.0f) : 0.0f;
    y[i * stride] = q * s + m;
  }
}

void q8_0_block(const float* x, float* y) {
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / ((1 << 7) - 1);
  const float id = d ? 1.0f / d : 0.0f;
  const float dh = f16_round(d);  // quantised with d, dequantised with the stored f16 d
  for (int j = 0; j < 32; ++j) y[j] = float(int8_t(std::roundf(x[j] * id))) * dh;
}

void q4_0_block(const float* x, float* y) {
  float amax = 0, max = 0;  // the value of largest magnitude, sign kept
  for (int j = 0; j < 32; ++j)
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  const float d = max / -8;
  const float id = d ? 1.0f / d : 0.0f;
  const float dh = f16_round(d);
  for (int j = 0; j < 32; ++j) {
    const int q = std::min(15, int(int8_t(x[j] * id + 8.5f)));
    y[j] = float(q - 8) * dh;
  }
}

Coded per_token(const State& s, int bits) {
  if (bits < 2 || bits > 8) throw Error(ErrorKind::InvalidArgument, "per_token: bits must be 2..8");
  Coded c{fresh_copy(s), 0};
  for (bool is_v : {false, true})
    for_each_lane(s, c.state, is_v, [&](const float* x, float* y, int64_t n, int d) {
      for (int64_t t = 0; t < n; ++t) per_token_row(x + t * d, y + t * d, d, bits);
    });
  const uint64_t rows = 2 * lanes(s) * uint64_t(s.kv_entries());
  c.kv_bytes = (rows * uint64_t(s.arch.head_dim) * uint64_t(bits) + 7) / 8 + rows * 2;
  return c;
}

Coded kivi2(const State& s, int group, int64_t recent) {
  Coded c{fresh_copy(s), 0};
  const int64_t n = s.kv_entries(), d = s.arch.head_dim;
  const int64_t nq = std::max<int64_t>(0, n - recent);  // quantised tokens; the rest stay f16
  uint64_t groups = 0;
  // Keys: per channel, groups of `group` tokens (the last group of the quantised span may be short).
  for_each_lane(s, c.state, false, [&](const float* x, float* y, int64_t, int) {
    std::copy(x, x + n * d, y);
    for (int64_t ch = 0; ch < d; ++ch)
      for (int64_t t = 0; t < nq; t += group) asym2_group(x + t * d + ch, y + t * d + ch, std::min<int64_t>(group, nq - t), d);
  });
  for (int64_t t = 0; t < nq; t += group) groups += uint64_t(d);
  // Values: per token, groups of `group` channels.
  for_each_lane(s, c.state, true, [&](const float* x, float* y, int64_t, int) {
    std::copy(x, x + n * d, y);
    for (int64_t t = 0; t < nq; ++t)
      for (int64_t ch = 0; ch < d; ch += group) asym2_group(x + t * d + ch, y + t * d + ch, std::min<int64_t>(group, d - ch), 1);
  });
  groups += uint64_t(nq) * uint64_t((d + group - 1) / group);
  const uint64_t q_values = 2 * lanes(s) * uint64_t(nq) * uint64_t(d);
  const uint64_t f16_values = 2 * lanes(s) * uint64_t(n - nq) * uint64_t(d);
  c.kv_bytes = (q_values * 2 + 7) / 8 + lanes(s) * groups * 4 + f16_values * 2;
  return c;
}

namespace {
Coded blocks32(const State& s, void (*block)(const float*, float*), uint64_t block_bytes) {
  Coded c{fresh_copy(s), 0};
  for (bool is_v : {false, true})
    for_each_lane(s, c.state, is_v, [&](const float* x, float* y, int64_t n, int d) {
      for (int64_t i = 0; i < n * d; i += 32) block(x + i, y + i);
    });
  c.kv_bytes = 2 * lanes(s) * uint64_t(s.kv_entries()) * uint64_t(s.arch.head_dim) / 32 * block_bytes;
  return c;
}
}  // namespace

Coded q8_0(const State& s) { return blocks32(s, q8_0_block, 2 + 32); }
Coded q4_0(const State& s) { return blocks32(s, q4_0_block, 2 + 16); }

Coded cachegen(const State& s, int chunk_tokens) {
  Coded c{fresh_copy(s), 0};
  const codec::LevelParams level = codec::cachegen_level();
  const int64_t n = s.kv_entries();
  codec::KvIn in;
  codec::KvOut out;
  for (int l = 0; l < s.arch.n_layer; ++l) {
    in.k.push_back(s.k(l));
    in.v.push_back(s.v(l));
    out.k.push_back(c.state.mutable_k(l));
    out.v.push_back(c.state.mutable_v(l));
  }
  in.stride = out.stride = n;
  for (int64_t first = 0; first < n; first += chunk_tokens) {
    const codec::ChunkShape shape{s.arch.n_layer, s.arch.n_head_kv, s.arch.head_dim, std::min<int64_t>(chunk_tokens, n - first)};
    in.first = out.first = first;
    const std::vector<uint8_t> bytes = codec::encode_chunk(shape, in, level);
    codec::decode_chunk(shape, bytes.data(), bytes.size(), level, out);
    c.kv_bytes += bytes.size();
  }
  return c;
}

}  // namespace kvstash::bench
