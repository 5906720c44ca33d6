// The lossless scheme. Each f16's low byte is stored raw (close to uniform); its high byte (sign,
// exponent, top two mantissa bits) is coded relative to its channel: the sign as agreement with
// the channel mean's sign, the magnitude byte as the difference from the channel's RMS magnitude
// byte. Those symbols have much the same distribution in every channel and layer, so the rANS
// tables are shared by all sections of a kind (K or V) in the chunk (stored once in the chunk's
// prelude) and chosen by context: the channel's shape (how far its mean is from zero against its
// RMS), the RoPE pair partner's difference (odd channels) and the mean difference of the row's
// channels so far.
#pragma once
#include <cstdint>
#include <vector>

#include "codec/rans.h"
#include "codec/section.h"

namespace kvstash::codec {

constexpr int kLosslessContexts = 75;

// A section's symbols and contexts before the shared tables exist.
struct LosslessSection {
  std::vector<uint8_t> head;  // channel info, escapes and low bytes, stored before the stream
  std::vector<uint8_t> sym;
  std::vector<uint16_t> ctx;
  std::vector<uint64_t> counts;  // kLosslessContexts x 256
};
LosslessSection lossless_prepare(const SectionIn& in);
// Tables for all sections of a kind from their summed counts.
std::vector<std::vector<uint32_t>> lossless_tables(const std::vector<uint64_t>& counts);
void lossless_finish(const LosslessSection& s, const std::vector<RansEncoder>& tables, std::vector<uint8_t>& out);
void lossless_decode(ByteReader& r, const std::vector<RansDecoder>& tables, const SectionOut& out);

}  // namespace kvstash::codec
