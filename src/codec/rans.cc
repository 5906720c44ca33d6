#include "codec/rans.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace kvstash::codec {

namespace {
constexpr uint32_t kLow = 1u << 16;  // states live in [kLow, 2^32)
}

std::vector<uint32_t> normalize_freqs(const std::vector<uint64_t>& counts) {
  const uint64_t total = std::accumulate(counts.begin(), counts.end(), uint64_t(0));
  std::vector<uint32_t> f(counts.size(), 0);
  if (total == 0) throw Error(ErrorKind::Internal, "normalize_freqs: no symbols");
  int64_t sum = 0;
  for (size_t s = 0; s < counts.size(); ++s) {
    if (!counts[s]) continue;
    // Round down in 128-bit-safe integer arithmetic (counts fit in 40 bits here).
    f[s] = uint32_t(std::max<uint64_t>(1, counts[s] * kProbScale / total));
    sum += f[s];
  }
  // Order symbols by count (then index) so that the adjustments are deterministic.
  std::vector<int> order;
  for (size_t s = 0; s < counts.size(); ++s)
    if (counts[s]) order.push_back(int(s));
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    return counts[size_t(a)] != counts[size_t(b)] ? counts[size_t(a)] > counts[size_t(b)] : a < b;
  });
  // Hand out what flooring left over, largest counts first; take back (never below 1) if over.
  for (size_t i = 0; sum < int64_t(kProbScale); i = (i + 1) % order.size()) {
    ++f[size_t(order[i])];
    ++sum;
  }
  while (sum > int64_t(kProbScale)) {
    bool took = false;
    for (int s : order) {
      if (sum == int64_t(kProbScale)) break;
      if (f[size_t(s)] > 1) { --f[size_t(s)]; --sum; took = true; }
    }
    if (!took) throw Error(ErrorKind::Internal, "normalize_freqs: too many symbols");
  }
  return f;
}

void write_freqs(ByteWriter& w, const std::vector<uint32_t>& freqs) {
  size_t n = freqs.size();
  while (n > 0 && freqs[n - 1] == 0) --n;
  w.u8(uint32_t(n - 1));
  for (size_t s = 0; s < n;) {
    w.varint(freqs[s]);
    if (freqs[s]) {
      ++s;
      continue;
    }
    size_t run = 1;  // a zero is followed by the count of further zeros
    while (s + run < n && freqs[s + run] == 0) ++run;
    w.varint(uint32_t(run - 1));
    s += run;
  }
}

std::vector<uint32_t> read_freqs(ByteReader& r, int max_symbols) {
  const int n = int(r.u8("frequency table")) + 1;
  if (n > max_symbols) corrupt("frequency table has " + std::to_string(n) + " symbols, at most " +
                               std::to_string(max_symbols) + " allowed");
  std::vector<uint32_t> f(static_cast<size_t>(n), 0);
  uint32_t sum = 0;
  for (size_t s = 0; s < f.size();) {
    const uint32_t x = r.varint("frequency table");
    if (x > kProbScale) corrupt("frequency out of range");
    if (x) {
      f[s++] = x;
      sum += x;
      continue;
    }
    const uint32_t more = r.varint("frequency table");
    if (more >= f.size() - s) corrupt("zero run past the end of the frequency table");
    s += 1 + more;
  }
  if (sum != kProbScale) corrupt("frequencies do not sum to 4096");
  return f;
}

RansEncoder::RansEncoder(const std::vector<uint32_t>& freqs) : freq(freqs), start(freqs.size()) {
  uint32_t c = 0;
  for (size_t s = 0; s < freqs.size(); ++s) {
    start[s] = c;
    c += freqs[s];
  }
}

void RansEncoder::encode(const uint8_t* symbols, size_t n, std::vector<uint8_t>& out) const {
  uint32_t x[4] = {kLow, kLow, kLow, kLow};
  std::vector<uint16_t> words;
  words.reserve(n / 2 + 16);
  const uint32_t* fr = freq.data();
  const uint32_t* st = start.data();
  for (size_t i = n; i-- > 0;) {
    uint32_t& s = x[i & 3];
    const uint32_t f = fr[symbols[i]];
    // Renormalise so that the coding step keeps s below 2^32.
    if (uint64_t(s) >= (uint64_t(f) << (32 - kProbBits))) {
      words.push_back(uint16_t(s));
      s >>= 16;
    }
    s = ((s / f) << kProbBits) + (s % f) + st[symbols[i]];
  }
  ByteWriter w{out};
  for (uint32_t v : x) w.u32(v);
  const size_t at = out.size();
  out.resize(at + words.size() * 2);
  uint8_t* p = out.data() + at;
  for (size_t i = words.size(); i-- > 0; p += 2) {
    p[0] = uint8_t(words[i]);
    p[1] = uint8_t(words[i] >> 8);
  }
}

RansDecoder::RansDecoder(const std::vector<uint32_t>& freqs) : slot(kProbScale) {
  if (std::accumulate(freqs.begin(), freqs.end(), 0u) != kProbScale || freqs.size() > kMaxSymbols)
    throw Error(ErrorKind::Internal, "RansDecoder: frequencies do not sum to 4096");
  uint32_t c = 0;
  for (size_t s = 0; s < freqs.size(); ++s) {
    for (uint32_t j = 0; j < freqs[s]; ++j) slot[c + j] = (freqs[s] - 1) | j << 12 | uint32_t(s) << 24;
    c += freqs[s];
  }
}

// A stream starts with the four decoder states and ends, fully read, with all four back at kLow
// (where the encoder started): anything else is a damaged or crafted stream.
static void read_states(ByteReader& r, uint32_t (&x)[4]) {
  for (auto& v : x) {
    v = r.u32("rANS state");
    if (v < kLow) corrupt("rANS state out of range");
  }
}
static void check_end(const uint8_t* p, const uint8_t* end, const uint32_t (&x)[4]) {
  if (p != end || x[0] != kLow || x[1] != kLow || x[2] != kLow || x[3] != kLow)
    corrupt("rANS stream does not end where it should");
}

void RansDecoder::decode(const uint8_t* data, size_t size, uint8_t* symbols, size_t n) const {
  ByteReader r{data, data + size};
  uint32_t x[4];
  read_states(r, x);
  const uint8_t* p = r.p;
  const uint8_t* end = r.end;
  const uint32_t* tab = slot.data();
  auto step = [&](uint32_t& s, size_t i) {
    const uint32_t e = tab[s & (kProbScale - 1)];
    symbols[i] = uint8_t(e >> 24);
    s = ((e & 4095) + 1) * (s >> kProbBits) + ((e >> 12) & 4095);
    if (s < kLow) {
      if (p + 2 > end) corrupt("truncated rANS stream");
      s = s << 16 | uint32_t(p[0]) | uint32_t(p[1]) << 8;
      p += 2;
    }
  };
  // Branchless renormalisation (the branch is taken about half the time at 2 bits per symbol, so
  // it would mispredict): each state reads the next word only if it needs it; four steps read at
  // most 8 bytes, so the fast loop runs while 8 remain and the checked loop finishes the stream.
  auto fast = [&](uint32_t& s, size_t i) {
    const uint32_t e = tab[s & (kProbScale - 1)];
    symbols[i] = uint8_t(e >> 24);
    s = ((e & 4095) + 1) * (s >> kProbBits) + ((e >> 12) & 4095);
    const uint32_t need = s < kLow;
    const uint32_t word = uint32_t(p[0]) | uint32_t(p[1]) << 8;
    s = need ? (s << 16 | word) : s;
    p += 2 * need;
  };
  size_t i = 0;
  for (; i + 4 <= n && end - p >= 8; i += 4) {
    fast(x[0], i);
    fast(x[1], i + 1);
    fast(x[2], i + 2);
    fast(x[3], i + 3);
  }
  for (; i + 4 <= n; i += 4) {
    step(x[0], i);
    step(x[1], i + 1);
    step(x[2], i + 2);
    step(x[3], i + 3);
  }
  for (; i < n; ++i) step(x[i & 3], i);
  check_end(p, end, x);
}

void rans_encode_multi(const std::vector<RansEncoder>& tables, const uint8_t* symbols,
                       const uint16_t* ctx, size_t n, std::vector<uint8_t>& out) {
  uint32_t x[4] = {kLow, kLow, kLow, kLow};
  std::vector<uint16_t> words;
  words.reserve(n / 2 + 16);
  for (size_t i = n; i-- > 0;) {
    uint32_t& s = x[i & 3];
    const RansEncoder& t = tables[ctx[i]];
    const uint32_t f = t.freq[symbols[i]];
    if (uint64_t(s) >= (uint64_t(f) << (32 - kProbBits))) {
      words.push_back(uint16_t(s));
      s >>= 16;
    }
    s = ((s / f) << kProbBits) + (s % f) + t.start[symbols[i]];
  }
  ByteWriter w{out};
  for (uint32_t v : x) w.u32(v);
  for (size_t i = words.size(); i-- > 0;) w.u16(words[i]);
}

void rans_decode_multi(const std::vector<RansDecoder>& tables, const uint16_t* ctx, const uint8_t* data,
                       size_t size, uint8_t* symbols, size_t n) {
  ByteReader r{data, data + size};
  uint32_t x[4];
  read_states(r, x);
  const uint8_t* p = r.p;
  const uint8_t* end = r.end;
  for (size_t i = 0; i < n; ++i) {
    uint32_t& s = x[i & 3];
    const uint32_t e = tables[ctx[i]].slot[s & (kProbScale - 1)];
    symbols[i] = uint8_t(e >> 24);
    s = ((e & 4095) + 1) * (s >> kProbBits) + ((e >> 12) & 4095);
    if (s < kLow) {
      if (p + 2 > end) corrupt("truncated rANS stream");
      s = s << 16 | uint32_t(p[0]) | uint32_t(p[1]) << 8;
      p += 2;
    }
  }
  check_end(p, end, x);
}

RansStreamDecoder::RansStreamDecoder(ByteReader& r) {
  read_states(r, x_);
  p_ = r.p;
  end_ = r.end;
}

void RansStreamDecoder::finish() const { check_end(p_, end_, x_); }

double rans_cost_bits(const std::vector<uint64_t>& counts, const std::vector<uint32_t>& freqs) {
  double bits = 0;
  for (size_t s = 0; s < counts.size(); ++s)
    if (counts[s]) bits += double(counts[s]) * (kProbBits - std::log2(double(freqs[s])));
  return bits;
}

}  // namespace kvstash::codec
