#include "kvstash/model.h"

#include <cmath>
#include <cstdlib>

#include "kvstash/error.h"
#include "kvstash/kernels.h"

namespace kvstash {

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = shape.empty() ? "[]" : "";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "x" : "") + std::to_string(shape[i]);
  return s;
}

Weight matrix(const GgufFile& f, const std::string& name, int64_t cols, int64_t rows) {
  const GgufTensor& t = f.tensor(name);
  const DTypeInfo& info = dtype_info(t.type_id);
  if (!info.supported)
    throw Error(ErrorKind::NotSupported,
                f.path() + ": tensor '" + name + "' has unsupported tensor type " + dtype_name(t.type_id));
  if (t.shape.size() != 2 || t.shape[0] != cols || t.shape[1] != rows)
    throw Error(ErrorKind::Corruption, f.path() + ": tensor '" + name + "' has shape " + shape_text(t.shape) +
                                           ", expected " + std::to_string(cols) + "x" + std::to_string(rows));
  return Weight{t.type(), cols, rows, row_bytes(t.type(), cols), t.data};
}

std::vector<float> vector_f32(const GgufFile& f, const std::string& name, int64_t n) {
  const GgufTensor& t = f.tensor(name);
  if (t.shape.size() != 1 || t.elements() != n || !dtype_info(t.type_id).supported)
    throw Error(ErrorKind::Corruption, f.path() + ": tensor '" + name + "' must hold " + std::to_string(n) +
                                           " values, not " + shape_text(t.shape) + " " + dtype_name(t.type_id));
  std::vector<float> out(static_cast<size_t>(n));
  dequantize_row(t.type(), t.data, out.data(), n);
  return out;
}

// Replaces w by its f32 values in storage the model owns.
void dequantize_weight(Weight& w, std::vector<std::vector<float>>& store) {
  if (w.type == DType::F32) return;
  std::vector<float>& values = store.emplace_back(size_t(w.rows) * size_t(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) dequantize_row(w.type, w.row(r), values.data() + size_t(r) * size_t(w.cols), w.cols);
  w = Weight{DType::F32, w.cols, w.rows, size_t(w.cols) * sizeof(float), reinterpret_cast<const uint8_t*>(values.data())};
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path, const ModelOptions& options) {
  std::unique_ptr<Model> m(new Model());
  m->file_ = GgufFile::open(path);
  const GgufFile& f = *m->file_;
  m->config_ = config_from_gguf(f);
  ModelConfig& c = m->config_;
  m->tokenizer_ = Tokenizer::from_gguf(f);

  const GgufTensor& embd = f.tensor("token_embd.weight");
  if (embd.shape.size() != 2 || embd.shape[1] != m->tokenizer_->n_vocab())
    throw Error(ErrorKind::Corruption, path + ": token_embd.weight has shape " + shape_text(embd.shape) +
                                           ", expected " + std::to_string(c.n_embd) + "x" +
                                           std::to_string(m->tokenizer_->n_vocab()) + " (the vocabulary)");
  c.n_vocab = m->tokenizer_->n_vocab();
  m->token_embd_ = matrix(f, "token_embd.weight", c.n_embd, c.n_vocab);
  m->output_ = f.find_tensor("output.weight") ? matrix(f, "output.weight", c.n_embd, c.n_vocab)
                                               : m->token_embd_;
  m->output_norm_ = vector_f32(f, "output_norm.weight", c.n_embd);

  const int64_t q_dim = int64_t(c.n_head) * c.head_dim, kv_dim = int64_t(c.n_head_kv) * c.head_dim;
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights l;
    l.attn_norm = vector_f32(f, p + "attn_norm.weight", c.n_embd);
    l.ffn_norm = vector_f32(f, p + "ffn_norm.weight", c.n_embd);
    l.wq = matrix(f, p + "attn_q.weight", c.n_embd, q_dim);
    l.wk = matrix(f, p + "attn_k.weight", c.n_embd, kv_dim);
    l.wv = matrix(f, p + "attn_v.weight", c.n_embd, kv_dim);
    l.wo = matrix(f, p + "attn_output.weight", q_dim, c.n_embd);
    l.w_gate = matrix(f, p + "ffn_gate.weight", c.n_embd, c.n_ff);
    l.w_up = matrix(f, p + "ffn_up.weight", c.n_embd, c.n_ff);
    l.w_down = matrix(f, p + "ffn_down.weight", c.n_ff, c.n_embd);
    m->layers_.push_back(std::move(l));
  }

  // theta_i = pos / linear_scale * base^(-2i/n_rot) / freq_factor_i (llama-3 stores the factors).
  const int n_pairs = c.n_rot / 2;
  std::vector<float> factors(size_t(n_pairs), 1.0f);
  if (f.find_tensor("rope_freqs.weight")) factors = vector_f32(f, "rope_freqs.weight", n_pairs);
  for (float x : factors)
    if (!(std::isfinite(x) && x > 0))
      throw Error(ErrorKind::Corruption, path + ": rope_freqs.weight holds " + std::to_string(x) +
                                             ", not a positive frequency factor");
  for (int i = 0; i < n_pairs; ++i)
    m->rope_inv_freq_.push_back(std::pow(double(c.rope_base), -2.0 * i / c.n_rot) /
                                double(factors[size_t(i)]) / double(c.rope_linear_scale));
  m->fingerprint_ = compute_fingerprint(f, c);
  if (options.float_weights) {
    const bool tied = m->output_.data == m->token_embd_.data;
    dequantize_weight(m->token_embd_, m->float_weights_);
    if (tied) m->output_ = m->token_embd_;
    else dequantize_weight(m->output_, m->float_weights_);
    for (LayerWeights& l : m->layers_)
      for (Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) dequantize_weight(*w, m->float_weights_);
  }
  return m;
}

std::string default_model_path() {
  if (const char* env = std::getenv("KVSTASH_MODEL"); env && *env) return env;
  return KVSTASH_DEFAULT_MODEL;
}

}  // namespace kvstash
