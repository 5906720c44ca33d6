// CacheGen's released quantiser and coder, as the benchmark's baseline: per token one scale, the
// max |x| over every channel of every KV head of the layer (stored as f16), symmetric rounding to
// 2 * (bins / 2 - 1) + 1 levels, and one static CDF per channel per chunk stored with the chunk as
// (max bins + 1) 16-bit entries, as CacheGen ships them (its coder then uses the CDF; here the CDF's
// counts become a 12-bit rANS table).
//
// Section: per token the f16 scale; per channel the CDF; the rANS stream of symbols q + C, with
// symbol i using its channel's table.
#include <algorithm>
#include <cmath>

#include "codec/rans.h"
#include "codec/section.h"
#include "kvstash/kernels.h"

namespace kvstash::codec {

namespace {

int bins_of(const CacheGenParams& p, int layer, int n_layer, bool is_v) {
  const int num = is_v ? p.v_num : p.k_num, den = is_v ? p.v_den : p.k_den;
  const bool first = int64_t(layer) * den < int64_t(num) * n_layer;
  return is_v ? (first ? p.v_bins_first : p.v_bins_rest) : (first ? p.k_bins_first : p.k_bins_rest);
}

int cdf_entries(const CacheGenParams& p) {
  return std::max({p.k_bins_first, p.k_bins_rest, p.v_bins_first, p.v_bins_rest}) + 1;
}

// Contexts: symbol (h, t, c) uses channel h * D + c.
std::vector<uint16_t> contexts(size_t H, size_t T, int D) {
  std::vector<uint16_t> ctx(H * T * size_t(D));
  for (size_t h = 0; h < H; ++h)
    for (size_t t = 0; t < T; ++t)
      for (int c = 0; c < D; ++c) ctx[(h * T + t) * size_t(D) + size_t(c)] = uint16_t(h * size_t(D) + size_t(c));
  return ctx;
}

}  // namespace

void encode_cachegen(const CacheGenParams& p, const SectionIn& in, std::vector<uint8_t>& out) {
  const int D = in.head_dim;
  const size_t H = in.head.size(), T = size_t(in.count), NC = H * size_t(D);
  if (NC > 65536) throw Error(ErrorKind::NotSupported, "cachegen: more than 65536 channels");
  const int C = bins_of(p, in.layer, in.n_layer, in.is_v) / 2 - 1;
  const int E = cdf_entries(p);
  ByteWriter w{out};
  std::vector<float> scale(T, 0.0f);
  for (size_t t = 0; t < T; ++t) {
    uint16_t best = 0;
    float m = 0;
    for (size_t h = 0; h < H; ++h)
      for (int c = 0; c < D; ++c) {
        const uint16_t b = in.head[h][t * size_t(D) + size_t(c)] & 0x7FFF;
        const float a = f16_to_f32(b);
        if (a > m) { m = a; best = b; }  // NaN never wins; inf does (and then codes as 0)
      }
    scale[t] = m;
    w.u16(best);
  }
  std::vector<uint8_t> sym(H * T * size_t(D));
  std::vector<std::vector<uint64_t>> counts(NC, std::vector<uint64_t>(size_t(2 * C + 1), 0));
  for (size_t h = 0; h < H; ++h)
    for (size_t t = 0; t < T; ++t)
      for (int c = 0; c < D; ++c) {
        const float x = f16_to_f32(in.head[h][t * size_t(D) + size_t(c)]);
        const float k = scale[t] > 0 && std::isfinite(scale[t]) ? float(C) / scale[t] : 0.0f;
        float q = std::nearbyint(x * k);
        if (!(q >= float(-C))) q = float(-C);
        if (q > float(C)) q = float(C);
        const uint8_t s = uint8_t(int(q) + C);
        sym[(h * T + t) * size_t(D) + size_t(c)] = s;
        ++counts[h * size_t(D) + size_t(c)][s];
      }
  // The stored CDF: cdf[k] = k + floor(cum_k * (65535 - E) / T), strictly increasing so every
  // symbol keeps a non-zero count; padded with 65535 up to E entries as CacheGen's tables are.
  std::vector<RansEncoder> enc;
  enc.reserve(NC);
  for (size_t ch = 0; ch < NC; ++ch) {
    std::vector<uint64_t> model(size_t(2 * C + 1));
    uint64_t cum = 0, prev = 0;
    w.u16(0);
    for (int k = 0; k < E - 1; ++k) {
      if (k < 2 * C + 1) cum += counts[ch][size_t(k)];
      const uint64_t v = k < 2 * C + 1 ? uint64_t(k + 1) + cum * uint64_t(65535 - E) / T : 65535;
      w.u16(uint32_t(v));
      if (k < 2 * C + 1) model[size_t(k)] = v - prev;
      prev = v;
    }
    enc.emplace_back(normalize_freqs(model));
  }
  const std::vector<uint16_t> ctx = contexts(H, T, D);
  rans_encode_multi(enc, sym.data(), ctx.data(), sym.size(), out);
}

void decode_cachegen(const CacheGenParams& p, ByteReader& r, const SectionOut& out) {
  const int D = out.head_dim;
  const size_t H = out.head.size(), T = size_t(out.count), NC = H * size_t(D);
  if (NC > 65536) corrupt("cachegen: more than 65536 channels");
  const int C = bins_of(p, out.layer, out.n_layer, out.is_v) / 2 - 1;
  const int E = cdf_entries(p);
  std::vector<float> scale(T);
  for (size_t t = 0; t < T; ++t) scale[t] = f16_to_f32(uint16_t(r.u16("token scales")));
  std::vector<RansDecoder> dec;
  dec.reserve(NC);
  for (size_t ch = 0; ch < NC; ++ch) {
    std::vector<uint64_t> model(size_t(2 * C + 1));
    uint32_t prev = r.u16("channel CDFs");
    if (prev != 0) corrupt("CDF does not start at 0");
    bool any = false;
    for (int k = 0; k < E - 1; ++k) {
      const uint32_t v = r.u16("channel CDFs");
      if (v < prev) corrupt("CDF decreases");
      if (k < 2 * C + 1) {
        model[size_t(k)] = v - prev;
        any = any || v > prev;
      }
      prev = v;
    }
    if (!any) corrupt("empty CDF");
    dec.emplace_back(normalize_freqs(model));
  }
  const std::vector<uint16_t> ctx = contexts(H, T, D);
  std::vector<uint8_t> sym(H * T * size_t(D));
  rans_decode_multi(dec, ctx.data(), r.p, r.left(), sym.data(), sym.size());
  r.p = r.end;
  for (size_t h = 0; h < H; ++h)
    for (size_t t = 0; t < T; ++t)
      for (int c = 0; c < D; ++c) {
        const float q = float(int(sym[(h * T + t) * size_t(D) + size_t(c)]) - C);
        out.head[h][t * size_t(D) + size_t(c)] = f32_to_f16(q / float(C) * scale[t]);
      }
}

}  // namespace kvstash::codec
