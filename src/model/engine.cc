// The llama forward pass. Reads like the paper: embed, then per layer
// x += Attention(RMSNorm(x)); x += FFN(RMSNorm(x)); then RMSNorm and the output matrix.
#include "kvstash/engine.h"

#include <algorithm>
#include <cmath>

#include "kvstash/error.h"
#include "kvstash/kernels.h"
#include "model/ops.h"

namespace kvstash {

struct Engine::Scratch {
  std::vector<float> x, xn, q, k, v, attn, gate, up, logits;
  std::vector<uint8_t> act;       // activations quantized for the weight type at hand
  std::vector<float> scores;      // per thread: one row of attention scores
  std::vector<int32_t> positions;
  std::vector<float> gathered;      // budgeted: per new token and KV head, attention on each entry
  std::vector<float> stream_logits; // budgeted with all_logits: the logits of every chunk
};

namespace {
const EngineOptions& checked(const EngineOptions& o) {
  if (o.n_ctx < 0 || o.n_ctx > KvPool::kMaxTokens)
    throw Error(ErrorKind::InvalidArgument, "context of " + std::to_string(o.n_ctx) +
                                                " tokens: must be between 1 and " + std::to_string(KvPool::kMaxTokens));
  if (o.block_tokens <= 0 || o.block_tokens > KvPool::kMaxBlockTokens)
    throw Error(ErrorKind::InvalidArgument, "KV block of " + std::to_string(o.block_tokens) +
                                                " tokens: must be between 1 and " + std::to_string(KvPool::kMaxBlockTokens));
  if (o.kv_tokens < 0 || o.kv_tokens > KvPool::kMaxTokens)
    throw Error(ErrorKind::InvalidArgument, "KV pool of " + std::to_string(o.kv_tokens) + " tokens: must be between 0 and " +
                                                std::to_string(KvPool::kMaxTokens));
  return o;
}
}  // namespace

Engine::Engine(const Model& model, ThreadPool& threads, const EngineOptions& options)
    : model_(model),
      pool_(threads),
      k_(options.simd ? Kernels::at(*options.simd) : Kernels::active()),
      n_ctx_(checked(options).n_ctx > 0 ? options.n_ctx : std::min<int64_t>(model.config().n_ctx_train, 4096)),
      kv_(KvShape{model.config().n_layer, model.config().n_head_kv, model.config().head_dim,
                  options.block_tokens},
          options.kv_tokens > 0 ? options.kv_tokens : n_ctx_ + 2 * options.block_tokens),
      s_(std::make_unique<Scratch>()) {}

Engine::~Engine() = default;

static void grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

void Engine::matmul(const Weight& w, const float* x, int64_t n, float* out) {
  const Weight* ws[1] = {&w};
  float* outs[1] = {out};
  matmul(ws, outs, 1, x, n);
}

// Products of `count` weights (same type and width) with the same input rows: the activations
// are quantized once, and one parallel_for covers the row groups of all of them.
void Engine::matmul(const Weight* const* ws, float* const* outs, int count, const float* x, int64_t n) {
  const Weight& w0 = *ws[0];
  for (int i = 1; i < count; ++i)
    if (ws[i]->type != w0.type || ws[i]->cols != w0.cols) {
      for (int j = 0; j < count; ++j) matmul(*ws[j], x, n, outs[j]);
      return;
    }
  const size_t stride = row_bytes(activation_type(w0.type), w0.cols);
  if (s_->act.size() < stride * size_t(n)) s_->act.resize(stride * size_t(n));
  uint8_t* act = s_->act.data();
  pool_.parallel_for(n, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t)
      k_.quantize_activations(w0.type, x + t * w0.cols, act + size_t(t) * stride, w0.cols);
  });
  // Split across groups of 4 output rows (the kernel's row tile), never across the reduction.
  constexpr int64_t kRowGroup = 4;
  int64_t groups[4] = {0, 0, 0, 0};  // first group of weight i (prefix sums)
  for (int i = 0; i < count; ++i) groups[i + 1] = groups[i] + (ws[i]->rows + kRowGroup - 1) / kRowGroup;
  pool_.parallel_for(groups[count], [&](int64_t b, int64_t e, int) {
    for (int i = 0; i < count; ++i) {
      const int64_t gb = std::max(b, groups[i]) - groups[i], ge = std::min(e, groups[i + 1]) - groups[i];
      if (gb >= ge) continue;
      const Weight& w = *ws[i];
      k_.matmul_rows(w.type, w.cols, w.data, w.row_stride, gb * kRowGroup, std::min(w.rows, ge * kRowGroup),
                  act, stride, n, outs[i], w.rows);
    }
  });
}

const float* Engine::forward(Sequence& seq, const Token* tokens, int64_t n, const ForwardOptions& o) {
  const ModelConfig& c = model_.config();
  if (n <= 0) throw Error(ErrorKind::InvalidArgument, "forward pass needs at least one token");
  if (&seq.pool() != &kv_)
    throw Error(ErrorKind::InvalidArgument, "forward pass: the sequence belongs to another engine");
  if (int64_t(seq.next_position()) + n > int64_t(kMaxPosition))
    throw Error(ErrorKind::InvalidArgument, "positions past " + std::to_string(kMaxPosition) + " are not supported");
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= c.n_vocab)
      throw Error(ErrorKind::InvalidArgument, "token id " + std::to_string(tokens[i]) + " is outside the vocabulary");
  if (!seq.budgeted()) {
    check_fits(seq, n);
    return forward_chunk(seq, tokens, n, o.all_logits, o.attention, false);
  }
  if (o.attention) throw Error(ErrorKind::InvalidArgument, "attention reports are for sequences without a KV budget");
  // Evictions fall at fixed token counts: split the batch there, so that results do not depend on
  // how the caller split the input.
  const bool gather = scores_attention(seq.book()->budget.policy);
  const float* logits = nullptr;
  for (int64_t at = 0; at < n;) {
    if (seq.eviction_due()) seq.evict(key_rotator());  // a restored state may stop right at a point
    const int64_t chunk = std::min({n - at, seq.room(), gather ? kGatherChunk : n});
    check_fits(seq, chunk);
    logits = forward_chunk(seq, tokens + at, chunk, o.all_logits, nullptr, gather);
    if (o.all_logits) {
      if (at == 0) s_->stream_logits.resize(size_t(n * c.n_vocab));
      std::copy(logits, logits + chunk * c.n_vocab, s_->stream_logits.begin() + at * c.n_vocab);
    }
    at += chunk;
  }
  if (seq.eviction_due()) seq.evict(key_rotator());
  return o.all_logits ? s_->stream_logits.data() : logits;
}

const float* Engine::end_prefill(Sequence& seq, const float* last_logits) {
  const EvictionBook* b = seq.book();
  if (!b || b->budget.policy != EvictionPolicy::SnapKV || b->selected) return last_logits;
  if (seq.size() > b->budget.budget) {
    // The observation window's queries are gone: run its tokens again (bitwise the same K/V and
    // logits, by batch invariance), this time gathering their attention.
    const int64_t w = std::min<int64_t>(b->budget.snapkv_window, seq.size());
    const std::vector<Token> last(seq.tokens().end() - w, seq.tokens().end());
    seq.truncate(seq.size() - w);
    for (int64_t at = 0; at < w; at += kGatherChunk)
      last_logits = forward_chunk(seq, last.data() + at, std::min(kGatherChunk, w - at), false, nullptr, true);
  }
  seq.select_after_prefill(key_rotator());
  return last_logits;
}

KeyRotator Engine::key_rotator() const {
  const ModelConfig& c = model_.config();
  return [this, &c, x = std::vector<float>(size_t(c.head_dim))](uint16_t* key, int32_t delta) mutable {
    k_.f16_to_f32_row(key, x.data(), c.head_dim);
    rope(x.data(), 1, c.head_dim, c.n_rot, delta, model_.rope_inv_freq());
    k_.f32_to_f16_row(x.data(), key, c.head_dim);
  };
}

void Engine::check_fits(const Sequence& seq, int64_t n) const {
  if (seq.size() + n > n_ctx_)
    throw Error(ErrorKind::ResourceExhausted, std::to_string(seq.size() + n) + " tokens do not fit the context of " +
                                                  std::to_string(n_ctx_) + " tokens");
}

const float* Engine::forward_chunk(Sequence& seq, const Token* tokens, int64_t n, bool all_logits,
                                   std::vector<float>* attention, bool gather) {
  const ModelConfig& c = model_.config();
  Scratch& s = *s_;
  s.positions.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) s.positions[size_t(i)] = seq.next_position() + int32_t(i);
  const int64_t first = seq.append(tokens, s.positions.data(), n);

  const int64_t q_dim = int64_t(c.n_head) * c.head_dim, kv_dim = int64_t(c.n_head_kv) * c.head_dim;
  grow(s.x, size_t(n * c.n_embd));
  grow(s.xn, size_t(n * std::max<int64_t>(c.n_embd, q_dim)));
  grow(s.q, size_t(n * q_dim));
  grow(s.k, size_t(n * kv_dim));
  grow(s.v, size_t(n * kv_dim));
  grow(s.attn, size_t(n * q_dim));
  grow(s.gate, size_t(n * c.n_ff));
  grow(s.up, size_t(n * c.n_ff));
  grow(s.scores, size_t(pool_.size() * n_ctx_));
  if (attention) attention->assign(size_t(n * seq.size()), 0.0f);
  if (gather) grow(s.gathered, size_t(n * c.n_head_kv * seq.size()));

  const Weight& embd = model_.token_embd();
  for (int64_t t = 0; t < n; ++t)
    dequantize_row(embd.type, embd.row(tokens[t]), &s.x[size_t(t * c.n_embd)], c.n_embd);
  for (int il = 0; il < c.n_layer; ++il) layer(il, seq, first, n, attention, gather);

  const int64_t n_out = all_logits ? n : 1;
  const float* last = &s.x[size_t((n - n_out) * c.n_embd)];
  for (int64_t t = 0; t < n_out; ++t)
    rms_norm(last + t * c.n_embd, model_.output_norm().data(), c.n_embd, c.rms_eps,
             &s.xn[size_t(t * c.n_embd)]);
  grow(s.logits, size_t(n_out * c.n_vocab));
  matmul(model_.output(), s.xn.data(), n_out, s.logits.data());
  return s.logits.data();
}

void Engine::layer(int il, Sequence& seq, int64_t first, int64_t n, std::vector<float>* attention, bool gather) {
  const ModelConfig& c = model_.config();
  const LayerWeights& w = model_.layer(il);
  Scratch& s = *s_;
  const int64_t q_dim = int64_t(c.n_head) * c.head_dim, kv_dim = int64_t(c.n_head_kv) * c.head_dim;

  for (int64_t t = 0; t < n; ++t)
    rms_norm(&s.x[size_t(t * c.n_embd)], w.attn_norm.data(), c.n_embd, c.rms_eps, &s.xn[size_t(t * c.n_embd)]);
  {
    const Weight* qkv[3] = {&w.wq, &w.wk, &w.wv};
    float* out[3] = {s.q.data(), s.k.data(), s.v.data()};
    matmul(qkv, out, 3, s.xn.data(), n);
  }
  for (int64_t t = 0; t < n; ++t) {
    const int32_t pos = s.positions[size_t(t)];
    rope(&s.q[size_t(t * q_dim)], c.n_head, c.head_dim, c.n_rot, pos, model_.rope_inv_freq());
    rope(&s.k[size_t(t * kv_dim)], c.n_head_kv, c.head_dim, c.n_rot, pos, model_.rope_inv_freq());
    store_kv(k_, seq.pool(), seq.block_of(first + t), seq.slot_of(first + t), il, c.n_head_kv, c.head_dim,
             &s.k[size_t(t * kv_dim)], &s.v[size_t(t * kv_dim)]);
  }
  this->attention(il, seq, first, n, attention, gather);
  matmul(w.wo, s.attn.data(), n, s.xn.data());
  for (int64_t i = 0; i < n * c.n_embd; ++i) s.x[size_t(i)] += s.xn[size_t(i)];

  for (int64_t t = 0; t < n; ++t)
    rms_norm(&s.x[size_t(t * c.n_embd)], w.ffn_norm.data(), c.n_embd, c.rms_eps, &s.xn[size_t(t * c.n_embd)]);
  {
    const Weight* gate_up[2] = {&w.w_gate, &w.w_up};
    float* out[2] = {s.gate.data(), s.up.data()};
    matmul(gate_up, out, 2, s.xn.data(), n);
  }
  swiglu(s.gate.data(), s.up.data(), n * c.n_ff);
  matmul(w.w_down, s.gate.data(), n, s.xn.data());
  for (int64_t i = 0; i < n * c.n_embd; ++i) s.x[size_t(i)] += s.xn[size_t(i)];
}

// Grouped-query causal attention: new token t sees entries 0..first+t of the sequence; query head
// h reads KV head h / (n_head / n_head_kv). K and V come from the f16 cache.
void Engine::attention(int il, Sequence& seq, int64_t first, int64_t n, std::vector<float>* attention,
                       bool gather) {
  const ModelConfig& c = model_.config();
  Scratch& s = *s_;
  const int group = c.n_head / c.n_head_kv;
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  const int64_t q_dim = int64_t(c.n_head) * c.head_dim, n_seq = seq.size();
  const KvPool& kv = seq.pool();
  const int bt = kv.shape().block_tokens;

  auto one_head = [&](int64_t t, int h, float* scores) {
    const float* q = &s.q[size_t(t * q_dim + h * c.head_dim)];
    float* out = &s.attn[size_t(t * q_dim + h * c.head_dim)];
    const int64_t n_see = first + t + 1;
    const int kvh = h / group;
    // Keys and values of a cache block are contiguous rows: one kernel call per block.
    for (int64_t j = 0; j < n_see; j += bt)
      k_.attention_scores_f16(q, kv.k(seq.block_of(j), il, kvh), std::min<int64_t>(bt, n_see - j),
                           c.head_dim, scale, scores + j);
    softmax(scores, n_see);
    std::fill(out, out + c.head_dim, 0.0f);
    for (int64_t j = 0; j < n_see; j += bt)
      k_.attention_values_f16(scores + j, kv.v(seq.block_of(j), il, kvh), std::min<int64_t>(bt, n_see - j),
                           c.head_dim, out);
  };

  if (gather) {
    // Each (token, KV head) is one thread's: the attention of the group's query heads, summed in
    // head order, then folded into the lane's scores token by token (a fixed order).
    pool_.parallel_for(n * c.n_head_kv, [&](int64_t b, int64_t e, int thread) {
      float* scores = &s.scores[size_t(thread * n_ctx_)];
      for (int64_t i = b; i < e; ++i) {
        const int64_t t = i / c.n_head_kv;
        const int kvh = int(i % c.n_head_kv);
        float* row = &s.gathered[size_t(i * n_seq)];
        std::fill(row, row + n_seq, 0.0f);
        for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
          one_head(t, h, scores);
          for (int64_t j = 0; j <= first + t; ++j) row[j] += scores[j];
        }
      }
    });
    EvictionBook& book = *seq.book();
    const bool last_only = book.budget.policy == EvictionPolicy::Tova;
    for (int kvh = 0; kvh < c.n_head_kv; ++kvh) {
      std::vector<float>& lane = book.score[size_t(il) * size_t(c.n_head_kv) + size_t(kvh)];
      for (int64_t t = last_only ? n - 1 : 0; t < n; ++t) {
        const float* row = &s.gathered[size_t((t * c.n_head_kv + kvh) * n_seq)];
        if (last_only)
          std::copy(row, row + n_seq, lane.begin());
        else
          for (int64_t j = 0; j <= first + t; ++j) lane[size_t(j)] += row[j];
      }
    }
    return;
  }
  if (!attention) {
    pool_.parallel_for(n * c.n_head, [&](int64_t b, int64_t e, int thread) {
      for (int64_t i = b; i < e; ++i)
        one_head(i / c.n_head, int(i % c.n_head), &s.scores[size_t(thread * n_ctx_)]);
    });
    return;
  }
  // Reporting attention: one thread owns each token's row, summing heads in a fixed order.
  pool_.parallel_for(n, [&](int64_t b, int64_t e, int thread) {
    float* scores = &s.scores[size_t(thread * n_ctx_)];
    for (int64_t t = b; t < e; ++t) {
      float* row = &(*attention)[size_t(t * n_seq)];
      for (int h = 0; h < c.n_head; ++h) {
        one_head(t, h, scores);
        for (int64_t j = 0; j <= first + t; ++j) row[j] += scores[j];
      }
    }
  });
}

}  // namespace kvstash
