#include "codec/lossless.h"

#include <algorithm>
#include <cmath>

#include "kvstash/kernels.h"

namespace kvstash::codec {

namespace {

constexpr uint32_t kEscape = 0;  // symbol for a magnitude difference outside [-63, 63]

int pair_bucket(int d) { return d <= -8 ? 1 : d <= -3 ? 2 : d <= 0 ? 3 : 4; }
// Mean of the row's previous differences, from their sum over c channels (c > 0).
int row_bucket(int sum, int c) {
  if (c == 0) return 0;
  return sum <= -6 * c ? 1 : sum <= -2 * c ? 2 : sum <= c ? 3 : 4;
}

// Per channel two bytes: the RMS's magnitude byte with the mean's sign (sign << 7 | magnitude),
// and the mean's f16 high byte (its magnitude against the RMS's gives the channel's shape class).
struct ChannelRef {
  uint8_t ref, mean;
};
int shape_class(ChannelRef r) {
  const int d = int(r.mean & 0x7F) - int(r.ref & 0x7F);
  return d <= -8 ? 0 : d <= -3 ? 1 : 2;
}
ChannelRef channel_ref(const uint16_t* x, int64_t count, int stride) {
  double s = 0, s2 = 0;
  for (int64_t t = 0; t < count; ++t) {
    const double v = f16_to_f32(x[t * stride]);
    if (std::isfinite(v)) { s += v; s2 += v * v; }
  }
  const float rms = float(std::sqrt(s2 / double(count)));
  const uint32_t mag = (f32_to_f16(std::min(rms, 65504.0f)) >> 8) & 0x7F;
  const float mean = float(s / double(count));
  return {uint8_t((s < 0 ? 0x80 : 0) | mag), uint8_t(f32_to_f16(std::clamp(mean, -65504.0f, 65504.0f)) >> 8)};
}

// The context of value c of a row, from the differences decoded before it.
struct RowState {
  int sum = 0, prev_d = 0;
  uint16_t ctx(int c, int shape) const {
    const int pair = c & 1 ? pair_bucket(prev_d) : 0;
    return uint16_t((shape * 5 + pair) * 5 + row_bucket(sum, c));
  }
  void add(int d) {
    sum += d;
    prev_d = d;
  }
};

}  // namespace

LosslessSection lossless_prepare(const SectionIn& in) {
  const int D = in.head_dim;
  const size_t H = in.head.size(), T = size_t(in.count);
  LosslessSection s;
  s.counts.assign(size_t(kLosslessContexts) * 256, 0);
  s.sym.resize(H * T * size_t(D));
  s.ctx.resize(s.sym.size());
  ByteWriter w{s.head};
  std::vector<uint8_t> ref(H * size_t(D));
  std::vector<int> shape(H * size_t(D));
  for (size_t h = 0; h < H; ++h)
    for (int c = 0; c < D; ++c) {
      const ChannelRef cr = channel_ref(in.head[h] + c, in.count, D);
      ref[h * size_t(D) + size_t(c)] = cr.ref;
      shape[h * size_t(D) + size_t(c)] = shape_class(cr);
      w.u8(cr.ref);
    }
  for (size_t ch = 0; ch < H * size_t(D); ch += 4) {  // shape classes, four per byte
    uint32_t b = 0;
    for (size_t j = 0; j < 4 && ch + j < H * size_t(D); ++j) b |= uint32_t(shape[ch + j]) << (2 * j);
    w.u8(b);
  }
  std::vector<uint8_t> escaped;
  for (size_t h = 0; h < H; ++h)
    for (size_t t = 0; t < T; ++t) {
      RowState row;
      for (int c = 0; c < D; ++c) {
        const size_t i = (h * T + t) * size_t(D) + size_t(c);
        const uint32_t hi = in.head[h][t * size_t(D) + size_t(c)] >> 8;
        const uint8_t r = ref[h * size_t(D) + size_t(c)];
        const int d = int(hi & 0x7F) - int(r & 0x7F);
        uint32_t sym = kEscape;
        if (d >= -63 && d <= 63) sym = ((hi ^ r) & 0x80) | uint32_t(d + 64);
        else escaped.push_back(uint8_t(hi));
        s.ctx[i] = row.ctx(c, shape[h * size_t(D) + size_t(c)]);
        s.sym[i] = uint8_t(sym);
        ++s.counts[size_t(s.ctx[i]) * 256 + sym];
        row.add(sym == kEscape ? 0 : d);
      }
    }
  w.varint(uint32_t(escaped.size()));
  w.bytes(escaped.data(), escaped.size());
  for (size_t h = 0; h < H; ++h)
    for (size_t i = 0; i < T * size_t(D); ++i) w.u8(in.head[h][i] & 0xFF);
  return s;
}

std::vector<std::vector<uint32_t>> lossless_tables(const std::vector<uint64_t>& counts) {
  std::vector<std::vector<uint32_t>> t;
  for (int k = 0; k < kLosslessContexts; ++k) {
    std::vector<uint64_t> c(counts.begin() + k * 256, counts.begin() + (k + 1) * 256);
    bool any = false;
    for (uint64_t x : c) any = any || x;
    if (!any) c[64] = 1;  // an unused context still needs a valid table
    t.push_back(normalize_freqs(c));
  }
  return t;
}

void lossless_finish(const LosslessSection& s, const std::vector<RansEncoder>& tables, std::vector<uint8_t>& out) {
  out.insert(out.end(), s.head.begin(), s.head.end());
  rans_encode_multi(tables, s.sym.data(), s.ctx.data(), s.sym.size(), out);
}

void lossless_decode(ByteReader& r, const std::vector<RansDecoder>& tables, const SectionOut& out) {
  const int D = out.head_dim;
  const size_t H = out.head.size(), T = size_t(out.count);
  const uint8_t* ref = r.take(H * size_t(D), "channel references");
  const uint8_t* shapes = r.take((H * size_t(D) + 3) / 4, "channel shapes");
  const size_t n_esc = r.varint("escape count");
  if (n_esc > H * T * size_t(D)) corrupt("more escapes than values");
  const uint8_t* esc = r.take(n_esc, "escaped bytes");
  const uint8_t* lo = r.take(H * T * size_t(D), "low bytes");
  // Contexts depend on decoded symbols, so the stream is decoded value by value here.
  ByteReader sr{r.p, r.end};
  r.p = r.end;
  RansStreamDecoder dec(sr);
  size_t e = 0;
  for (size_t h = 0; h < H; ++h)
    for (size_t t = 0; t < T; ++t) {
      RowState row;
      uint16_t* dst = out.head[h] + t * size_t(D);
      const uint8_t* lrow = lo + (h * T + t) * size_t(D);
      for (int c = 0; c < D; ++c) {
        const size_t ch = h * size_t(D) + size_t(c);
        const int shape = int(shapes[ch / 4] >> (2 * (ch % 4)) & 3);
        if (shape > 2) corrupt("bad channel shape class");
        const uint32_t sym = dec.next(tables[row.ctx(c, shape)]);
        const uint8_t rf = ref[ch];
        uint32_t hi;
        if (sym == kEscape) {
          if (e == n_esc) corrupt("more escape symbols than escaped bytes");
          hi = esc[e++];
          row.add(0);
        } else {
          const int d = int(sym & 0x7F) - 64;
          const int mag = int(rf & 0x7F) + d;
          if (mag < 0 || mag > 127) corrupt("magnitude out of range");
          hi = ((sym ^ rf) & 0x80) | uint32_t(mag);
          row.add(d);
        }
        dst[c] = uint16_t(hi << 8 | lrow[c]);
      }
    }
  dec.finish();
  if (e != n_esc) corrupt("fewer escape symbols than escaped bytes");
}

}  // namespace kvstash::codec
