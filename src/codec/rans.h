// rANS entropy coder (Duda's range asymmetric numeral systems, in the byte-exact style of ryg_rans):
// 32-bit states, 16-bit renormalisation, 12-bit probabilities, four interleaved states per stream
// (symbol i uses state i % 4, so the decoder's four dependency chains overlap). Integer arithmetic
// only: the same symbols and table give the same bytes everywhere.
//
// Stream layout: the four final encoder states (u32 LE), then the renormalisation words (u16 LE)
// in the order the decoder reads them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "codec/codec_bytes.h"

namespace kvstash::codec {

constexpr int kProbBits = 12;
constexpr uint32_t kProbScale = 1u << kProbBits;
constexpr int kMaxSymbols = 256;

// Frequencies (summing to kProbScale) for symbol counts: every symbol that occurs gets >= 1, the
// rest in proportion, rounding errors settled on the largest counts first. Deterministic. At least
// one count must be non-zero.
std::vector<uint32_t> normalize_freqs(const std::vector<uint64_t>& counts);

// Stores a frequency table compactly: symbol count - 1 (u8), then each frequency as a varint, a
// zero followed by the varint count of the zeros after it.
void write_freqs(ByteWriter& w, const std::vector<uint32_t>& freqs);
// Reads and validates one (1..max_symbols entries, sum kProbScale). Corruption otherwise.
std::vector<uint32_t> read_freqs(ByteReader& r, int max_symbols);

struct RansEncoder {
  explicit RansEncoder(const std::vector<uint32_t>& freqs);
  // Appends the stream of n symbols (each must have a non-zero frequency).
  void encode(const uint8_t* symbols, size_t n, std::vector<uint8_t>& out) const;
  std::vector<uint32_t> freq, start;
};

struct RansDecoder {
  explicit RansDecoder(const std::vector<uint32_t>& freqs);
  // Decodes exactly n symbols from [data, data + size), which must be exactly one stream.
  void decode(const uint8_t* data, size_t size, uint8_t* symbols, size_t n) const;
  // Per slot: (freq - 1) | (slot - start) << 12 | symbol << 24.
  std::vector<uint32_t> slot;
};

// Streams whose symbols each use one of several tables: symbol i is coded with tables[ctx[i]].
void rans_encode_multi(const std::vector<RansEncoder>& tables, const uint8_t* symbols,
                       const uint16_t* ctx, size_t n, std::vector<uint8_t>& out);
void rans_decode_multi(const std::vector<RansDecoder>& tables, const uint16_t* ctx, const uint8_t* data,
                       size_t size, uint8_t* symbols, size_t n);

// Decodes one symbol at a time, each with a table the caller chooses (adaptive contexts).
class RansStreamDecoder {
 public:
  explicit RansStreamDecoder(ByteReader& r);  // reads the four states; the stream is the rest of r
  uint32_t next(const RansDecoder& table) {
    uint32_t& s = x_[i_++ & 3];
    const uint32_t e = table.slot[s & (kProbScale - 1)];
    s = ((e & 4095) + 1) * (s >> kProbBits) + ((e >> 12) & 4095);
    if (s < (1u << 16)) {
      if (p_ + 2 > end_) corrupt("truncated rANS stream");
      s = s << 16 | uint32_t(p_[0]) | uint32_t(p_[1]) << 8;
      p_ += 2;
    }
    return e >> 24;
  }
  void finish() const;  // Corruption unless the stream ended exactly

 private:
  uint32_t x_[4];
  size_t i_ = 0;
  const uint8_t* p_;
  const uint8_t* end_;
};

// Exact cost in bits of coding counts with freqs (sum of -log2(freq/scale)), for tuning.
double rans_cost_bits(const std::vector<uint64_t>& counts, const std::vector<uint32_t>& freqs);

}  // namespace kvstash::codec
