// Model fingerprint: xxh3-128 over every configuration value the forward pass uses, every
// tokenizer metadata value, and every tensor (name, type, shape, data). Byte layout of the hashed
// stream: docs/format-kvs.md, "Model fingerprint"; bump the version string for any change to it.
#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include "kvstash/error.h"
#include "kvstash/model.h"

namespace kvstash {

std::string Fingerprint::hex() const {
  static const char* const kHex = "0123456789abcdef";
  std::string s;
  for (uint8_t b : bytes) s += {kHex[b >> 4], kHex[b & 15]};
  return s;
}

std::optional<Fingerprint> Fingerprint::from_hex(std::string_view s) {
  if (s.size() != 32) return std::nullopt;
  auto nibble = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
  Fingerprint f;
  for (size_t i = 0; i < 16; ++i) {
    const int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    f.bytes[i] = uint8_t(hi << 4 | lo);
  }
  return f;
}

namespace {

class Hasher {
 public:
  Hasher() : state_(XXH3_createState()) {
    if (!state_ || XXH3_128bits_reset(state_) != XXH_OK) throw std::bad_alloc();
  }
  ~Hasher() { XXH3_freeState(state_); }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  void bytes(const void* p, size_t n) { XXH3_128bits_update(state_, p, n); }
  void u32(uint32_t v) {
    uint8_t b[4];
    for (int i = 0; i < 4; ++i) b[i] = uint8_t(v >> (8 * i));
    bytes(b, 4);
  }
  void u64(uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; ++i) b[i] = uint8_t(v >> (8 * i));
    bytes(b, 8);
  }
  void f32(float f) { u32(std::bit_cast<uint32_t>(f)); }
  void f64(double f) { u64(std::bit_cast<uint64_t>(f)); }
  void str(std::string_view s) {
    u64(s.size());
    bytes(s.data(), s.size());
  }
  // A GGUF value as stored: type, then its contents (arrays: element type, count, elements).
  void value(const GgufValue& v) {
    u32(uint32_t(v.type));
    switch (v.type) {
      case GgufType::STRING: str(v.s); return;
      case GgufType::FLOAT32: case GgufType::FLOAT64: f64(v.f); return;
      case GgufType::ARRAY:
        u32(uint32_t(v.array_type));
        u64(v.u);
        for (const std::string& s : v.strings) str(s);
        for (int64_t i : v.ints) u64(uint64_t(i));
        for (double f : v.floats) f64(f);
        return;
      default: u64(v.is_negative ? uint64_t(v.i) : v.u); return;  // integers and bools
    }
  }
  Fingerprint digest() const {
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(state_));
    Fingerprint f;
    std::memcpy(f.bytes.data(), c.digest, 16);
    return f;
  }

 private:
  XXH3_state_t* state_;
};

}  // namespace

Fingerprint compute_fingerprint(const GgufFile& f, const ModelConfig& c) {
  Hasher h;
  h.str("kvstash.model_fingerprint.v2");
  h.str(c.arch);
  for (int v : {c.n_layer, c.n_embd, c.n_ff, c.n_head, c.n_head_kv, c.head_dim, c.n_rot, c.n_vocab})
    h.u32(uint32_t(v));
  for (float v : {c.rms_eps, c.rope_base, c.rope_linear_scale}) h.f32(v);
  // Tokenizer metadata (everything the tokenizer reads is under tokenizer.ggml.), sorted by key.
  std::vector<const GgufValue*> tok;
  for (const GgufValue& v : f.metadata())
    if (v.key.rfind("tokenizer.ggml.", 0) == 0) tok.push_back(&v);
  std::sort(tok.begin(), tok.end(), [](const GgufValue* a, const GgufValue* b) { return a->key < b->key; });
  h.u64(tok.size());
  for (const GgufValue* v : tok) {
    h.str(v->key);
    h.value(*v);
  }
  h.u64(f.tensors().size());
  for (const GgufTensor& t : f.tensors()) {
    h.str(t.name);
    h.u32(t.type_id);
    h.u32(uint32_t(t.shape.size()));
    for (int64_t d : t.shape) h.u64(uint64_t(d));
    h.u64(t.nbytes);
    h.bytes(t.data, t.nbytes);
  }
  return h.digest();
}

}  // namespace kvstash
