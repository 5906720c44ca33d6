// Lossy sections. Each channel (head, dim) gets a step = level factor x the channel's robust RMS
// in this chunk (snapped to the step grid) and an offset (its mean, as a whole number of steps);
// a value becomes the zigzag of round(x / step) - offset. Symbols past the alphabet, and values
// that are not finite, become the escape symbol and are stored exactly (the attention sink's huge
// values). All symbols of a section share one rANS table: after normalising by the channel's
// step their distributions are alike, so the table costs a few bytes per section, not per channel.
//
// Rows (one head's values of one token) far outside their channels' spread, the attention sink's
// above all, are stored exactly: a whole row off by a few steps hurts every later query.
//
// Section: per channel u8 step code + varint zigzag(offset); varint count of exact rows, each as
// varint gap from the previous row index (h * count + t) and head_dim raw f16; frequency table;
// varint escape count and the escaped f16 values; the rANS stream (the rest of the section).
// An exact row's symbols are coded as zeros.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "codec/lossy_quant.h"
#include "codec/rans.h"
#include "codec/section.h"
#include "kvstash/kernels.h"

namespace kvstash::codec {

namespace {

constexpr int32_t kMaxOffset = 1 << 20;
constexpr double kExactRowZ2 = 16;  // mean squared z-score over a row's channels (z = 4 RMS)

struct ChannelStats {
  float mean = 0, rms = 0;
};

// Mean and RMS about it, then again over the values within 4 RMS of the first mean, so that one
// huge token (the attention sink) does not set the step of the whole channel. double accumulation
// in a fixed order: deterministic.
ChannelStats robust_stats(const float* x, int64_t count, int stride) {
  double s = 0, s2 = 0;
  for (int64_t t = 0; t < count; ++t) {
    const double v = x[t * stride];
    if (std::isfinite(v)) s += v;
  }
  const double m0 = s / double(count);
  for (int64_t t = 0; t < count; ++t) {
    const double v = x[t * stride];
    if (std::isfinite(v)) s2 += (v - m0) * (v - m0);
  }
  const double r0 = std::sqrt(s2 / double(count));
  double n = 0;
  s = 0;
  for (int64_t t = 0; t < count; ++t) {
    const double v = x[t * stride];
    if (std::isfinite(v) && std::fabs(v - m0) <= 4 * r0) { s += v; n += 1; }
  }
  if (n == 0) return {float(m0), float(r0)};
  const double m = s / n;
  s2 = 0;
  for (int64_t t = 0; t < count; ++t) {
    const double v = x[t * stride];
    if (std::isfinite(v) && std::fabs(v - m0) <= 4 * r0) s2 += (v - m) * (v - m);
  }
  return {float(m), float(std::sqrt(s2 / n))};
}

float group_factor(const LossyParams& p, int layer, int n_layer, bool is_v) {
  const std::vector<float>& g = is_v ? p.v : p.k;
  return g[size_t(layer_group(layer, n_layer, int(g.size())))];
}

}  // namespace

void encode_lossy(const LossyParams& p, const SectionIn& in, std::vector<uint8_t>& out) {
  const int D = in.head_dim;
  const size_t H = in.head.size(), T = size_t(in.count);
  const uint32_t esc = uint32_t(p.alphabet - 1);
  const float factor = group_factor(p, in.layer, in.n_layer, in.is_v);
  std::vector<float> step(H * size_t(D));
  std::vector<int32_t> offset(H * size_t(D));
  std::vector<float> mean(H * size_t(D)), rms(H * size_t(D));
  std::vector<float> xf(H * T * size_t(D));  // the section in f32, [h][t][c]
  for (size_t h = 0; h < H; ++h)
    for (size_t i = 0; i < T * size_t(D); ++i) xf[h * T * size_t(D) + i] = f16_to_f32(in.head[h][i]);
  ByteWriter w{out};
  for (size_t h = 0; h < H; ++h)
    for (int c = 0; c < D; ++c) {
      const ChannelStats st = robust_stats(xf.data() + h * T * size_t(D) + size_t(c), in.count, D);
      mean[h * size_t(D) + size_t(c)] = st.mean;
      rms[h * size_t(D) + size_t(c)] = st.rms;
      const uint32_t code = code_of_step(st.rms * factor);
      const float s = step_of_code(code);
      const float m = std::nearbyint(st.mean / s);
      const int32_t off = std::fabs(m) < float(kMaxOffset) ? int32_t(m) : 0;
      step[h * size_t(D) + size_t(c)] = s;
      offset[h * size_t(D) + size_t(c)] = off;
      w.u8(code);
      w.varint(zigzag(off));
    }
  // Rows whose mean squared z-score (against the channels' robust mean and RMS) exceeds 16.
  std::vector<uint32_t> exact_rows;
  for (size_t h = 0; h < H; ++h)
    for (size_t t = 0; t < T; ++t) {
      double z2 = 0;
      for (int c = 0; c < D; ++c) {
        const size_t ch = h * size_t(D) + size_t(c);
        const double d = (double(xf[(h * T + t) * size_t(D) + size_t(c)]) - double(mean[ch])) /
                         std::max(double(rms[ch]), 1e-30);
        z2 += std::isfinite(d) ? d * d : 1e30;
      }
      if (z2 > kExactRowZ2 * D) exact_rows.push_back(uint32_t(h * T + t));
    }
  w.varint(uint32_t(exact_rows.size()));
  uint32_t prev_row = 0;
  for (uint32_t row : exact_rows) {
    w.varint(row - prev_row);
    prev_row = row;
    const uint16_t* src = in.head[row / T] + (row % T) * size_t(D);
    for (int c = 0; c < D; ++c) w.u16(src[c]);
  }
  std::vector<uint8_t> row_exact(H * T, 0);
  for (uint32_t row : exact_rows) row_exact[row] = 1;
  std::vector<uint8_t> sym(H * T * size_t(D));
  std::vector<uint16_t> escaped;
  std::vector<uint64_t> counts(size_t(p.alphabet), 0);
  for (size_t h = 0; h < H; ++h)
    for (size_t t = 0; t < T; ++t)
      for (int c = 0; c < D; ++c) {
        const size_t ch = h * size_t(D) + size_t(c);
        const uint16_t bits = in.head[h][t * size_t(D) + size_t(c)];
        const float x = xf[(h * T + t) * size_t(D) + size_t(c)];
        uint32_t z = esc;
        if (row_exact[h * T + t]) {
          sym[(h * T + t) * size_t(D) + size_t(c)] = 0;
          ++counts[0];
          continue;
        }
        const float r = x / step[ch];
        if (std::isfinite(r) && std::fabs(r) < float(1 << 22)) {
          const int32_t q = int32_t(std::nearbyint(r)) - offset[ch];
          const uint32_t zz = zigzag(q);
          // The decoded value must stay finite in f16 (a step near the f16 limit could round past it).
          if (zz < esc && std::fabs(float(offset[ch] + q) * step[ch]) <= 65504.0f) z = zz;
        }
        if (z == esc) escaped.push_back(bits);
        sym[(h * T + t) * size_t(D) + size_t(c)] = uint8_t(z);
        ++counts[z];
      }
  const std::vector<uint32_t> freqs = normalize_freqs(counts);
  write_freqs(w, freqs);
  w.varint(uint32_t(escaped.size()));
  for (uint16_t e : escaped) w.u16(e);
  RansEncoder(freqs).encode(sym.data(), sym.size(), out);
}

void decode_lossy(const LossyParams& p, ByteReader& r, const SectionOut& out) {
  const int D = out.head_dim;
  const size_t H = out.head.size(), T = size_t(out.count);
  const uint32_t esc = uint32_t(p.alphabet - 1);
  std::vector<float> step(H * size_t(D));
  std::vector<int32_t> offset(H * size_t(D));
  for (size_t ch = 0; ch < H * size_t(D); ++ch) {
    step[ch] = step_of_code(r.u8("channel steps"));
    const int32_t off = unzigzag(r.varint("channel offsets"));
    if (off <= -kMaxOffset || off >= kMaxOffset) corrupt("channel offset out of range");
    offset[ch] = off;
  }
  const size_t n_rows = r.varint("exact row count");
  if (n_rows > H * T) corrupt("more exact rows than rows");
  std::vector<std::pair<size_t, const uint8_t*>> rows(n_rows);
  size_t row = 0;
  for (size_t i = 0; i < n_rows; ++i) {
    row += r.varint("exact rows");
    if (row >= H * T || (i > 0 && row == rows[i - 1].first)) corrupt("exact row index out of range");
    rows[i] = {row, r.take(2 * size_t(D), "exact rows")};
  }
  const std::vector<uint32_t> freqs = read_freqs(r, p.alphabet);
  const RansDecoder dec(freqs);
  const size_t dec_symbols = freqs.size();  // symbols the stream can hold
  const bool has_escape = dec_symbols == size_t(p.alphabet) && freqs.back() > 0;
  const size_t n_esc = r.varint("escape count");
  if (n_esc > H * T * size_t(D)) corrupt("more escapes than values");
  const uint8_t* esc_bytes = r.take(2 * n_esc, "escaped values");
  std::vector<uint8_t> sym(H * T * size_t(D));
  dec.decode(r.p, r.left(), sym.data(), sym.size());
  r.p = r.end;
  // Each channel's decoded f16 per symbol: the same f32 product and rounding as value by value,
  // computed once per (channel, symbol) so that the loop over values is a table lookup.
  const size_t A = dec_symbols;
  std::vector<uint16_t> lut(H * size_t(D) * A);
  for (size_t ch = 0; ch < H * size_t(D); ++ch)
    for (size_t z = 0; z < A; ++z)
      lut[ch * A + z] = f32_to_f16(float(offset[ch] + unzigzag(uint32_t(z))) * step[ch]);
  size_t e = 0;
  for (size_t h = 0; h < H; ++h) {
    uint16_t* dst = out.head[h];
    const uint8_t* s = sym.data() + h * T * size_t(D);
    const uint16_t* hl = lut.data() + h * size_t(D) * A;
    for (size_t t = 0; t < T; ++t, dst += D, s += D) {
      for (int c = 0; c < D; ++c) dst[c] = hl[size_t(c) * A + s[c]];
      if (has_escape)
        for (int c = 0; c < D; ++c)
          if (s[c] == esc) {
            if (e == n_esc) corrupt("more escape symbols than escaped values");
            dst[c] = uint16_t(esc_bytes[2 * e] | esc_bytes[2 * e + 1] << 8);
            ++e;
          }
    }
  }
  if (e != n_esc) corrupt("fewer escape symbols than escaped values");
  for (const auto& [ri, src] : rows) {
    uint16_t* dst = out.head[ri / T] + (ri % T) * size_t(D);
    for (int c = 0; c < D; ++c) dst[c] = uint16_t(src[2 * c] | src[2 * c + 1] << 8);
  }
}

}  // namespace kvstash::codec
