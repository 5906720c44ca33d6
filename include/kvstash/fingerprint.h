// The identity of a model: 128 bits that change whenever anything the forward pass or the
// tokenizer reads changes (docs/format-kvs.md, "Model fingerprint"). A state carries the
// fingerprint of the model that made it and is refused by any other.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kvstash {

struct Fingerprint {
  std::array<uint8_t, 16> bytes{};  // the xxh3-128 digest in canonical (big-endian) order

  std::string hex() const;  // 32 lowercase hex digits
  // nullopt unless s is exactly 32 lowercase hex digits.
  static std::optional<Fingerprint> from_hex(std::string_view s);
  bool operator==(const Fingerprint&) const = default;
};

}  // namespace kvstash
