// Store keys (xxh3-128 chains) and byte sizes.
#include <cmath>
#include <cstring>
#include <xxhash.h>

#include "kvstash/error.h"
#include "kvstash/fingerprint.h"
#include "kvstash/store.h"

namespace kvstash {

namespace {
StoreKey digest(XXH128_hash_t h) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  StoreKey k;
  std::memcpy(k.bytes.data(), c.digest, 16);
  return k;
}
}  // namespace

// Same 16 bytes and spelling as a model fingerprint.
std::string StoreKey::hex() const { return Fingerprint{bytes}.hex(); }

std::optional<StoreKey> StoreKey::from_hex(std::string_view s) {
  const std::optional<Fingerprint> f = Fingerprint::from_hex(s);
  if (!f) return std::nullopt;
  return StoreKey{f->bytes};
}

size_t StoreKeyHash::operator()(const StoreKey& k) const {
  size_t h;
  std::memcpy(&h, k.bytes.data(), sizeof h);  // already a strong hash
  return h;
}

StoreKey chain_key(const StoreKey& parent, const void* data, size_t size) {
  XXH3_state_t* st = XXH3_createState();
  if (!st) throw std::bad_alloc();
  XXH3_128bits_reset(st);
  XXH3_128bits_update(st, parent.bytes.data(), parent.bytes.size());
  XXH3_128bits_update(st, data, size);
  const StoreKey k = digest(XXH3_128bits_digest(st));
  XXH3_freeState(st);
  return k;
}

StoreKey seed_key(std::string_view text) { return digest(XXH3_128bits(text.data(), text.size())); }

uint64_t parse_byte_size(const std::string& text) {
  const auto bad = [&] {
    return Error(ErrorKind::InvalidArgument,
                 "'" + text + "' is not a byte size (a number with an optional K, M, G or T suffix, e.g. 512M)");
  };
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    throw bad();
  }
  std::string unit = text.substr(used);
  for (char& c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();
  if (unit.size() == 2 && unit[1] == 'I') unit.pop_back();  // KiB, MiB...: binary, as K, M
  double scale = 1;
  if (unit == "K") scale = 1024.0;
  else if (unit == "M") scale = 1024.0 * 1024;
  else if (unit == "G") scale = 1024.0 * 1024 * 1024;
  else if (unit == "T") scale = 1024.0 * 1024 * 1024 * 1024;
  else if (!unit.empty() && unit != "B") throw bad();
  const double bytes = v * scale;
  if (!std::isfinite(bytes) || bytes < 0 || bytes >= 1.8e19) throw bad();
  return uint64_t(bytes);
}

}  // namespace kvstash
