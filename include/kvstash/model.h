// A llama-architecture model loaded from GGUF: its configuration, weights (in place in the
// mmapped file) and tokenizer.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvstash/dtype.h"
#include "kvstash/fingerprint.h"
#include "kvstash/gguf.h"
#include "kvstash/tokenizer.h"

namespace kvstash {

struct ModelConfig {
  std::string arch = "llama";
  int n_layer = 0;
  int n_embd = 0;
  int n_ff = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int n_vocab = 0;
  int64_t n_ctx_train = 0;
  float rms_eps = 1e-5f;
  float rope_base = 10000.0f;
  float rope_linear_scale = 1.0f;  // positions are divided by this (rope.scaling.type linear)
  int n_rot = 0;                   // rotated dimensions per head (rope.dimension_count)
};

// Reads the llama hyper-parameters from GGUF metadata; throws Error naming what is missing.
ModelConfig config_from_gguf(const GgufFile& file);
// The fingerprint of a model file with its resolved configuration (docs/format-kvs.md).
Fingerprint compute_fingerprint(const GgufFile& file, const ModelConfig& config);

// A weight matrix of `rows` rows of `cols` elements, stored row after row in `type`.
struct Weight {
  DType type = DType::F32;
  int64_t cols = 0;
  int64_t rows = 0;
  size_t row_stride = 0;  // bytes
  const uint8_t* data = nullptr;
  const uint8_t* row(int64_t r) const { return data + size_t(r) * row_stride; }
};

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm;
  Weight wq, wk, wv, wo, w_gate, w_up, w_down;
};

struct ModelOptions {
  // Dequantize every weight matrix to f32 at load (4 bytes per weight), so that matrix products take
  // f32 activations instead of 8-bit ones: the arithmetic of Hugging Face transformers on the same
  // GGUF (which dequantizes it), for states that transformers continues as it would its own. Slower
  // and bigger; the fingerprint is the file's, as the weights' values are the same.
  bool float_weights = false;
};

class Model {
 public:
  // Loads and validates a GGUF model and computes its fingerprint (one pass over the weights);
  // throws Error with a one-line cause.
  static std::unique_ptr<Model> load(const std::string& path, const ModelOptions& options = {});

  const ModelConfig& config() const { return config_; }
  const Fingerprint& fingerprint() const { return fingerprint_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const GgufFile& gguf() const { return *file_; }

  const Weight& token_embd() const { return token_embd_; }
  const Weight& output() const { return output_; }  // token_embd when tied
  const std::vector<float>& output_norm() const { return output_norm_; }
  const LayerWeights& layer(int i) const { return layers_[size_t(i)]; }
  // Inverse RoPE frequencies per rotated pair, llama-3 frequency factors applied.
  const std::vector<double>& rope_inv_freq() const { return rope_inv_freq_; }

 private:
  Model() = default;
  std::unique_ptr<GgufFile> file_;
  std::unique_ptr<Tokenizer> tokenizer_;
  ModelConfig config_;
  Fingerprint fingerprint_;
  Weight token_embd_, output_;
  std::vector<float> output_norm_;
  std::vector<LayerWeights> layers_;
  std::vector<double> rope_inv_freq_;
  std::vector<std::vector<float>> float_weights_;  // ModelOptions::float_weights: the dequantized matrices
};

// The model path used when none is given: $KVSTASH_MODEL, else the one the set-up fetched.
std::string default_model_path();

}  // namespace kvstash
