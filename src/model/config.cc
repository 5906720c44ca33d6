#include <cmath>

#include "kvstash/error.h"
#include "kvstash/model.h"
#include "util/quote.h"

namespace kvstash {

namespace {
int positive_int(const GgufFile& f, const std::string& key, uint64_t def, bool required) {
  if (required && !f.find(key)) throw Error(ErrorKind::NotFound, f.path() + ": missing metadata key '" + key + "'");
  const uint64_t v = f.get_uint(key, def);
  if (v == 0 || v > (1u << 30))
    throw Error(ErrorKind::Corruption, f.path() + ": metadata key '" + key + "' has invalid value " + std::to_string(v));
  return int(v);
}
}  // namespace

ModelConfig config_from_gguf(const GgufFile& f) {
  ModelConfig c;
  c.arch = f.get_string("general.architecture", "");
  if (c.arch.empty()) throw Error(ErrorKind::NotFound, f.path() + ": missing metadata key 'general.architecture'");
  if (c.arch != "llama")
    throw Error(ErrorKind::NotSupported, f.path() + ": unsupported architecture " + quote(c.arch) + " (kvstash runs llama)");
  const std::string a = c.arch + ".";
  c.n_layer = positive_int(f, a + "block_count", 0, true);
  c.n_embd = positive_int(f, a + "embedding_length", 0, true);
  c.n_ff = positive_int(f, a + "feed_forward_length", 0, true);
  c.n_head = positive_int(f, a + "attention.head_count", 0, true);
  c.n_head_kv = positive_int(f, a + "attention.head_count_kv", uint64_t(c.n_head), false);
  if (c.n_head % c.n_head_kv != 0)
    throw Error(ErrorKind::Corruption, f.path() + ": head_count " + std::to_string(c.n_head) +
                " is not a multiple of head_count_kv " + std::to_string(c.n_head_kv));
  if (c.n_embd % c.n_head != 0)
    throw Error(ErrorKind::Corruption, f.path() + ": embedding_length is not a multiple of head_count");
  c.head_dim = positive_int(f, a + "attention.key_length", uint64_t(c.n_embd / c.n_head), false);
  c.n_rot = positive_int(f, a + "rope.dimension_count", uint64_t(c.head_dim), false);
  if (c.n_rot > c.head_dim || c.n_rot % 2 != 0)
    throw Error(ErrorKind::Corruption, f.path() + ": rope.dimension_count " + std::to_string(c.n_rot) + " does not fit head size");
  c.n_ctx_train = positive_int(f, a + "context_length", 2048, false);
  c.rms_eps = float(f.get_float(a + "attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_base = float(f.get_float(a + "rope.freq_base", 10000.0));
  if (!(std::isfinite(c.rms_eps) && c.rms_eps > 0) || !(std::isfinite(c.rope_base) && c.rope_base > 0))
    throw Error(ErrorKind::Corruption, f.path() + ": layer_norm_rms_epsilon and rope.freq_base must be positive");
  const std::string scaling = f.get_string(a + "rope.scaling.type", "none");
  if (scaling == "linear") {
    c.rope_linear_scale = float(f.get_float(a + "rope.scaling.factor", 1.0));
    if (!(std::isfinite(c.rope_linear_scale) && c.rope_linear_scale > 0)) throw Error(ErrorKind::Corruption, f.path() + ": invalid rope.scaling.factor");
  } else if (scaling != "none") {
    throw Error(ErrorKind::NotSupported, f.path() + ": unsupported rope scaling type " + quote(scaling));
  }
  return c;
}

}  // namespace kvstash
