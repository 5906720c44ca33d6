// Model fingerprint: xxh3-128 over the architecture metadata and every tensor (name, type, shape,
// data) in the order of the GGUF tensor directory. Byte layout of the hashed stream:
// docs/format-kvs.md, "Model fingerprint".
#include <xxhash.h>

#include <bit>
#include <cstdio>
#include <cstring>

#include "kvstash/error.h"
#include "kvstash/model.h"
#include "kvstash/state.h"

namespace kvstash {

StateArch state_arch(const ModelConfig& c) {
  return StateArch{c.n_layer, c.n_head, c.n_head_kv, c.head_dim, c.n_rot, c.n_vocab,
                   c.rope_base, c.rope_linear_scale};
}

namespace {

class Hasher {
 public:
  Hasher() : state_(XXH3_createState()) {
    if (!state_ || XXH3_128bits_reset(state_) != XXH_OK) throw Error("cannot start xxh3");
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
  void str(const std::string& s) {
    u64(s.size());
    bytes(s.data(), s.size());
  }
  std::string hex() const {
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(state_));
    char out[33];
    for (int i = 0; i < 16; ++i) std::snprintf(out + 2 * i, 3, "%02x", c.digest[i]);
    return std::string(out, 32);
  }

 private:
  XXH3_state_t* state_;
};

}  // namespace

std::string model_fingerprint(const Model& model) {
  const GgufFile& f = model.gguf();
  const StateArch a = state_arch(model.config());
  Hasher h;
  h.str("kvstash.model_fingerprint.v1");
  h.str(f.get_string("general.architecture", ""));
  for (int v : {a.n_layer, a.n_head, a.n_head_kv, a.head_dim, a.n_rot, a.n_vocab}) h.u32(uint32_t(v));
  h.f32(a.rope_base);
  h.f32(a.rope_linear_scale);
  h.u32(uint32_t(model.tokenizer().n_vocab()));
  h.u64(f.tensors().size());
  for (const GgufTensor& t : f.tensors()) {
    h.str(t.name);
    h.u32(t.type_id);
    h.u32(uint32_t(t.shape.size()));
    for (int64_t d : t.shape) h.u64(uint64_t(d));
    h.u64(t.nbytes);
    h.bytes(t.data, t.nbytes);
  }
  return h.hex();
}

}  // namespace kvstash
