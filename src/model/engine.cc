// The llama forward pass. Reads like the paper: embed, then per layer
// x += Attention(RMSNorm(x)); x += FFN(RMSNorm(x)); then RMSNorm and the output matrix.
//
// A forward pass is one ThreadPool::parallel_steps call (one hand-off to the worker threads): a
// list of steps, each split between the threads and started when the one before is done. Per
// layer: RMS norm + quantization of the input, the q/k/v products (with rope and the K/V store on
// the thread that computed the rows), attention per (token, KV head) (quantizing its output for
// wo), wo (+ residual), RMS norm + quantization, gate/up (with swiglu and the quantization for
// down), down (+ residual). Every output element is computed by one thread in a fixed order, so
// results do not depend on the split between threads nor on the batch.
#include "kvstash/engine.h"

#include <algorithm>
#include <cmath>

#include "kvstash/error.h"
#include "kvstash/kernels.h"
#include "model/ops.h"

namespace kvstash {

// A weight times activation rows quantized for it, into out (row t at out + t * out_stride). The
// activations are in buffer `act` (Scratch::act_in[act], or act_mid for kMid), row t at
// t * act_stride bytes.
struct Engine::Product {
  const Weight* w = nullptr;
  int act = 0;
  size_t act_stride = 0;
  float* out = nullptr;
  int64_t out_stride = 0;
  int64_t groups = 0;  // row groups (the work items of a product step)
};

// What the steps of one layer read and write, fixed before the pass starts (buffers do not move
// while the threads run).
struct Engine::LayerPlan {
  Product qkv[3];
  bool wo_fused = false;  // the attention step quantizes its output for wo
  Product wo, gate_up[2], down;
  int64_t unit = 0;  // gate/up rows per work item: whole quantization blocks of down's input
};

struct Engine::Scratch {
  std::vector<float> x, xn, q, k, v, attn, logits;
  std::vector<uint8_t> act_in[3];  // a step's input rows quantized, one buffer per activation type
  std::vector<uint8_t> act_mid;    // quantized by a step for the next: attention -> wo, gate/up -> down
  std::vector<float> ffn;          // per thread: the gate and up rows of one unit, all new tokens
  std::vector<float> scores;       // per thread: attention rows of one KV head's query heads
  std::vector<int32_t> positions;  // per new token (row)
  std::vector<Sequence*> row_seq;   // the sequence of each row
  std::vector<int64_t> row_slot;    // the row's slot in its sequence
  std::vector<int64_t> out_rows;    // rows whose logits are computed, in order
  int64_t score_stride = 0;         // floats per query head's row in `scores`: the longest sequence
  std::vector<Token> batch_tokens;  // forward_batch's tokens, row order
  std::vector<float> rope;         // per new token: cos and sin of each rotated pair
  std::vector<float> gathered;     // budgeted: per new token and KV head, attention on each entry
  std::vector<LayerPlan> plan;
  Product out;
  std::vector<int64_t> items;      // work items of each step
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

// Below this many bytes of work, a whole pass runs on the calling thread: waking the pool would
// cost about as long.
constexpr size_t kInlineBytes = size_t(32) << 10;
// The matmul kernels' row tile: product steps split a weight's rows at multiples of it.
constexpr int64_t kRowGroup = 4;
constexpr int kMid = 3;  // Product::act of act_mid

// The steps of a layer, and those after the last layer.
enum LayerStep : int {
  kAttnNorm, kQkv, kRope, kAttention, kGatherFold, kWoInput, kWo, kFfnNorm, kFfnUp, kDown, kLayerSteps
};
enum FinalStep : int { kOutNorm, kOutput, kFinalSteps };

size_t weight_bytes(const Weight& w) { return size_t(w.rows) * w.row_stride; }

void grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}
void grow(std::vector<uint8_t>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

// Prefetches the first min(rows, block) rows of an f16 block. The scores and values passes walk
// a KV head's blocks, which lie apart (a block holds every layer) and, after the weights have
// streamed through, come from memory: without this each block would start with a run of misses
// that the hardware prefetcher, stopping at page boundaries, does not hide.
template <int Locality>
void prefetch_rows(const uint16_t* rows, int64_t n_rows, int64_t block_rows, int64_t dim) {
  const char* p = reinterpret_cast<const char*>(rows);
  const size_t bytes = size_t(std::min(n_rows, block_rows) * dim) * sizeof(uint16_t);
  for (size_t o = 0; o < bytes; o += 64) {
    __builtin_prefetch(p + o, 0, Locality);
    asm volatile("");  // GCC deletes a loop of prefetches alone as having no effect
  }
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
  const bool budgeted = seq.budgeted();
  if (!budgeted) check_fits(seq, n);
  if (budgeted && o.attention)
    throw Error(ErrorKind::InvalidArgument, "attention reports are for sequences without a KV budget");
  // A budgeted sequence evicts at fixed token counts: split the batch there, so that results do
  // not depend on how the caller split the input.
  const bool gather = budgeted && scores_attention(seq.book()->budget.policy);
  std::vector<float>& logits = s_->logits;
  grow(logits, size_t((o.all_logits ? n : 1) * c.n_vocab));
  for (int64_t at = 0; at < n;) {
    if (budgeted && seq.eviction_due()) seq.evict(key_rotator());  // a restored state may stop right at a point
    // An attention report's rows span the whole call: one pass.
    int64_t chunk = o.attention ? n : std::min(n - at, kMaxChunk);
    if (budgeted) {
      chunk = std::min({chunk, seq.room(), gather ? kGatherChunk : chunk});
      check_fits(seq, chunk);
    }
    // Logits only where the caller gets them: every row, or the last token's.
    float* out = o.all_logits ? &logits[size_t(at * c.n_vocab)] : at + chunk == n ? logits.data() : nullptr;
    forward_chunk(seq, tokens + at, chunk, out, o.all_logits, o.attention, gather);
    at += chunk;
  }
  if (budgeted && seq.eviction_due()) seq.evict(key_rotator());
  return logits.data();
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
    grow(s_->logits, size_t(model_.config().n_vocab));
    for (int64_t at = 0; at < w; at += kGatherChunk) {
      const int64_t chunk = std::min(kGatherChunk, w - at);
      forward_chunk(seq, last.data() + at, chunk, at + chunk == w ? s_->logits.data() : nullptr, false, nullptr,
                    true);
    }
    last_logits = s_->logits.data();
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

// ---- Planning: buffers and work items, before the threads start ----

void Engine::assign_inputs(Product* ps, int count, int64_t n, size_t need[3]) const {
  DType types[3];
  int used = 0;
  for (int i = 0; i < count; ++i) {
    const DType at = activation_type(ps[i].w->type);
    int b = 0;
    while (b < used && types[b] != at) ++b;
    if (b == used) types[used++] = at;
    ps[i].act = b;
    ps[i].act_stride = row_bytes(at, ps[i].w->cols);
    need[b] = std::max(need[b], ps[i].act_stride * size_t(n));
  }
}

void Engine::plan(int64_t n, int64_t n_out, bool logits) {
  const ModelConfig& c = model_.config();
  Scratch& s = *s_;
  const int64_t q_dim = int64_t(c.n_head) * c.head_dim, kv_dim = int64_t(c.n_head_kv) * c.head_dim;
  const int64_t span = int64_t(c.n_head / c.n_head_kv) * c.head_dim;  // query heads of one KV head
  size_t need[3] = {0, 0, 0}, mid = 0, ffn = 0;
  auto product = [&](const Weight& w, float* out, int64_t out_stride) {
    Product p;
    p.w = &w;
    p.out = out;
    p.out_stride = out_stride;
    p.groups = (w.rows + kRowGroup - 1) / kRowGroup;
    return p;
  };
  s.plan.resize(size_t(c.n_layer));
  for (int il = 0; il < c.n_layer; ++il) {
    const LayerWeights& w = model_.layer(il);
    LayerPlan& L = s.plan[size_t(il)];
    L.qkv[0] = product(w.wq, s.q.data(), q_dim);
    L.qkv[1] = product(w.wk, s.k.data(), kv_dim);
    L.qkv[2] = product(w.wv, s.v.data(), kv_dim);
    assign_inputs(L.qkv, 3, n, need);
    L.wo = product(w.wo, s.xn.data(), c.n_embd);
    const DType wo_in = activation_type(w.wo.type);
    L.wo_fused = span % dtype_info(wo_in).block_size == 0;
    if (L.wo_fused) {
      L.wo.act = kMid;
      L.wo.act_stride = row_bytes(wo_in, q_dim);
      mid = std::max(mid, L.wo.act_stride * size_t(n));
    } else {
      assign_inputs(&L.wo, 1, n, need);
    }
    L.gate_up[0] = product(w.w_gate, nullptr, 0);
    L.gate_up[1] = product(w.w_up, nullptr, 0);
    assign_inputs(L.gate_up, 2, n, need);
    const DType down_in = activation_type(w.w_down.type);
    const int64_t block = dtype_info(down_in).block_size;
    L.unit = block % kRowGroup == 0 ? block : block * kRowGroup;
    ffn = std::max(ffn, size_t(2 * L.unit * n));
    L.down = product(w.w_down, s.xn.data(), c.n_embd);
    L.down.act = kMid;
    L.down.act_stride = row_bytes(down_in, c.n_ff);
    mid = std::max(mid, L.down.act_stride * size_t(n));
  }
  if (logits) {
    s.out = product(model_.output(), nullptr, c.n_vocab);
    assign_inputs(&s.out, 1, n_out, need);
  }
  for (int b = 0; b < 3; ++b) grow(s.act_in[b], need[b]);
  grow(s.act_mid, mid);
  grow(s.ffn, size_t(pool_.size()) * ffn);
}

// ---- The forward pass ----

void Engine::forward_chunk(Sequence& seq, const Token* tokens, int64_t n, float* logits, bool all_logits,
                           std::vector<float>* attention, bool gather) {
  Scratch& s = *s_;
  s.positions.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) s.positions[size_t(i)] = seq.next_position() + int32_t(i);
  const int64_t first = seq.append(tokens, s.positions.data(), n);
  s.row_seq.assign(size_t(n), &seq);
  s.row_slot.resize(size_t(n));
  for (int64_t t = 0; t < n; ++t) s.row_slot[size_t(t)] = first + t;
  s.out_rows.clear();
  if (logits)
    for (int64_t t = all_logits ? 0 : n - 1; t < n; ++t) s.out_rows.push_back(t);
  run_rows(tokens, n, logits, attention, gather);
}

const float* Engine::forward_batch(const BatchItem* items, int count) {
  const ModelConfig& c = model_.config();
  Scratch& s = *s_;
  int64_t n = 0, n_out = 0;
  for (int i = 0; i < count; ++i) {
    const BatchItem& it = items[i];
    if (!it.seq || it.n <= 0) throw Error(ErrorKind::InvalidArgument, "batched forward pass: an item without tokens");
    if (&it.seq->pool() != &kv_)
      throw Error(ErrorKind::InvalidArgument, "forward pass: the sequence belongs to another engine");
    if (it.seq->budgeted())
      throw Error(ErrorKind::InvalidArgument, "batched forward passes are for sequences without a KV budget");
    for (int j = 0; j < i; ++j)
      if (items[j].seq == it.seq) throw Error(ErrorKind::InvalidArgument, "batched forward pass: a sequence appears twice");
    if (int64_t(it.seq->next_position()) + it.n > int64_t(kMaxPosition))
      throw Error(ErrorKind::InvalidArgument, "positions past " + std::to_string(kMaxPosition) + " are not supported");
    for (int64_t t = 0; t < it.n; ++t)
      if (it.tokens[t] < 0 || it.tokens[t] >= c.n_vocab)
        throw Error(ErrorKind::InvalidArgument, "token id " + std::to_string(it.tokens[t]) + " is outside the vocabulary");
    check_fits(*it.seq, it.n);
    n += it.n;
    n_out += it.logits ? 1 : 0;
  }
  if (n == 0) throw Error(ErrorKind::InvalidArgument, "forward pass needs at least one token");
  if (n > kMaxBatchTokens)
    throw Error(ErrorKind::InvalidArgument, "batched forward pass of " + std::to_string(n) + " tokens: at most " +
                                                std::to_string(kMaxBatchTokens));
  s.positions.resize(size_t(n));
  s.row_seq.resize(size_t(n));
  s.row_slot.resize(size_t(n));
  s.out_rows.clear();
  std::vector<Token>& tokens = s.batch_tokens;
  tokens.resize(size_t(n));
  int appended = 0;
  try {
    for (int64_t i = 0, row = 0; i < count; ++i, ++appended) {
      const BatchItem& it = items[i];
      for (int64_t t = 0; t < it.n; ++t) s.positions[size_t(row + t)] = it.seq->next_position() + int32_t(t);
      const int64_t first = it.seq->append(it.tokens, &s.positions[size_t(row)], it.n);
      for (int64_t t = 0; t < it.n; ++t) {
        s.row_seq[size_t(row + t)] = it.seq;
        s.row_slot[size_t(row + t)] = first + t;
        tokens[size_t(row + t)] = it.tokens[t];
      }
      row += it.n;
      if (it.logits) s.out_rows.push_back(row - 1);
    }
  } catch (...) {  // the pool ran out of blocks: leave every sequence as it was
    for (int i = 0; i < appended; ++i) items[i].seq->pop(items[i].n);
    throw;
  }
  grow(s.logits, size_t(n_out * c.n_vocab));
  run_rows(tokens.data(), n, n_out ? s.logits.data() : nullptr, nullptr, false);
  return s.logits.data();
}

// The rows (s.row_seq, s.row_slot, s.positions, s.out_rows) are set and appended to their sequences.
void Engine::run_rows(const Token* tokens, int64_t n, float* logits, std::vector<float>* attention, bool gather) {
  const ModelConfig& c = model_.config();
  Scratch& s = *s_;
  // Attention reports and gathering are for one sequence (forward_chunk): rows of its size.
  const int64_t n_seq = s.row_seq[0]->size();
  s.score_stride = 0;
  for (int64_t t = 0; t < n; ++t) s.score_stride = std::max(s.score_stride, s.row_seq[size_t(t)]->size());

  const int group = c.n_head / c.n_head_kv;
  const int64_t q_dim = int64_t(c.n_head) * c.head_dim, kv_dim = int64_t(c.n_head_kv) * c.head_dim;
  grow(s.x, size_t(n * c.n_embd));
  grow(s.xn, size_t(n * c.n_embd));
  grow(s.q, size_t(n * q_dim));
  grow(s.k, size_t(n * kv_dim));
  grow(s.v, size_t(n * kv_dim));
  grow(s.attn, size_t(n * q_dim));
  grow(s.rope, size_t(n * c.n_rot));
  grow(s.scores, size_t(pool_.size()) * size_t(group) * size_t(s.score_stride));
  if (attention) attention->assign(size_t(n * n_seq), 0.0f);
  if (gather) grow(s.gathered, size_t(n * c.n_head_kv * n_seq));
  const int64_t n_out = int64_t(s.out_rows.size());
  plan(n, n_out, logits != nullptr);
  if (logits) s.out.out = logits;

  for (int64_t t = 0; t < n; ++t)  // the same angles in every layer
    rope_angles(s.positions[size_t(t)], c.n_rot, model_.rope_inv_freq(), &s.rope[size_t(t * c.n_rot)]);
  const Weight& embd = model_.token_embd();
  for (int64_t t = 0; t < n; ++t)
    dequantize_row(embd.type, embd.row(tokens[t]), &s.x[size_t(t * c.n_embd)], c.n_embd);

  // Work items of every step; an empty step is skipped.
  const bool fused_rope = c.head_dim % 2 == 0;  // row groups then never split a rope pair
  const int steps = c.n_layer * kLayerSteps + kFinalSteps;
  s.items.assign(size_t(steps), 0);
  size_t bytes = 0;
  for (int il = 0; il < c.n_layer; ++il) {
    const LayerPlan& L = s.plan[size_t(il)];
    int64_t* it = &s.items[size_t(il * kLayerSteps)];
    it[kAttnNorm] = n;
    it[kQkv] = L.qkv[0].groups + L.qkv[1].groups + L.qkv[2].groups;
    it[kRope] = fused_rope ? 0 : n;
    it[kAttention] = attention ? n : n * c.n_head_kv;
    it[kGatherFold] = gather ? c.n_head_kv : 0;
    it[kWoInput] = L.wo_fused ? 0 : n;
    it[kWo] = L.wo.groups;
    it[kFfnNorm] = n;
    it[kFfnUp] = (c.n_ff + L.unit - 1) / L.unit;
    it[kDown] = L.down.groups;
    for (const Weight* w : {L.qkv[0].w, L.qkv[1].w, L.qkv[2].w, L.wo.w, L.gate_up[0].w, L.gate_up[1].w, L.down.w})
      bytes += weight_bytes(*w);
  }
  int64_t* fin = &s.items[size_t(c.n_layer * kLayerSteps)];
  fin[kOutNorm] = n_out;
  fin[kOutput] = logits ? s.out.groups : 0;

  auto step = [&](int si, int64_t b, int64_t e, int thread) {
    if (si >= c.n_layer * kLayerSteps) {
      if (si - c.n_layer * kLayerSteps == kOutNorm) {
        for (int64_t t = b; t < e; ++t)
          norm_input(&s.x[size_t(s.out_rows[size_t(t)] * c.n_embd)], model_.output_norm().data(), &s.out, 1, t);
      } else {
        product_rows(&s.out, 1, n_out, b, e, [](int, int64_t, int64_t) {});
      }
      return;
    }
    const int il = si / kLayerSteps;
    const LayerPlan& L = s.plan[size_t(il)];
    switch (si % kLayerSteps) {
      case kAttnNorm:
        for (int64_t t = b; t < e; ++t)
          norm_input(&s.x[size_t(t * c.n_embd)], model_.layer(il).attn_norm.data(), L.qkv, 3, t);
        break;
      case kQkv: qkv_rows(il, n, b, e, fused_rope); break;
      case kRope:
        for (int64_t t = b; t < e; ++t) rope_and_store(il, t);
        break;
      case kAttention: attention_items(il, n_seq, attention, gather, b, e, thread); break;
      case kGatherFold: fold_gathered(il, n, b, e); break;
      case kWoInput:
        for (int64_t t = b; t < e; ++t) quantize_input(&L.wo, 1, &s.attn[size_t(t * q_dim)], t);
        break;
      case kWo: product_rows(&L.wo, 1, n, b, e, [&](int, int64_t r0, int64_t r1) { add_rows(n, r0, r1); }); break;
      case kFfnNorm:
        for (int64_t t = b; t < e; ++t)
          norm_input(&s.x[size_t(t * c.n_embd)], model_.layer(il).ffn_norm.data(), L.gate_up, 2, t);
        break;
      case kFfnUp: ffn_units(il, n, b, e, thread); break;
      case kDown: product_rows(&L.down, 1, n, b, e, [&](int, int64_t r0, int64_t r1) { add_rows(n, r0, r1); }); break;
    }
  };
  if (bytes < kInlineBytes) {
    for (int si = 0; si < steps; ++si)
      if (s.items[size_t(si)] > 0) step(si, 0, s.items[size_t(si)], 0);
  } else {
    pool_.parallel_steps(s.items.data(), steps, step);
  }
}

// ---- The steps ----

uint8_t* Engine::act(const Product& p) {
  return p.act == kMid ? s_->act_mid.data() : s_->act_in[p.act].data();
}

void Engine::quantize_input(const Product* ps, int count, const float* row, int64_t t) {
  for (int i = 0; i < count; ++i) {
    bool done = false;  // products sharing an activation type share the buffer
    for (int j = 0; j < i; ++j) done = done || ps[j].act == ps[i].act;
    if (!done)
      k_.quantize_activations(ps[i].w->type, row, act(ps[i]) + size_t(t) * ps[i].act_stride, ps[i].w->cols);
  }
}

void Engine::norm_input(const float* x, const float* weight, const Product* ps, int count, int64_t t) {
  const ModelConfig& c = model_.config();
  float* xn = &s_->xn[size_t(t * c.n_embd)];
  rms_norm(x, weight, c.n_embd, c.rms_eps, xn);
  quantize_input(ps, count, xn, t);
}

template <class Done>
void Engine::product_rows(const Product* ps, int count, int64_t n, int64_t b, int64_t e, Done&& done) {
  // Items [b, e) are row groups of the products one after the other. Never split the reduction:
  // each output element is one vec_dot, whichever thread computes it.
  int64_t g0 = 0;
  for (int i = 0; i < count; g0 += ps[i].groups, ++i) {
    const int64_t gb = std::max(b, g0) - g0, ge = std::min(e, g0 + ps[i].groups) - g0;
    if (gb >= ge) continue;
    const Product& p = ps[i];
    const int64_t r0 = gb * kRowGroup, r1 = std::min(p.w->rows, ge * kRowGroup);
    k_.matmul_rows(p.w->type, p.w->cols, p.w->data, p.w->row_stride, r0, r1, act(p), p.act_stride, n, p.out,
                   p.out_stride);
    done(i, r0, r1);
  }
}

void Engine::add_rows(int64_t n, int64_t r0, int64_t r1) {
  Scratch& s = *s_;
  const int64_t d = model_.config().n_embd;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = r0; r < r1; ++r) s.x[size_t(t * d + r)] += s.xn[size_t(t * d + r)];
}

void Engine::store_rows(int il, int64_t t, bool key, int64_t e0, int64_t e1) {
  const ModelConfig& c = model_.config();
  const int hd = c.head_dim;
  const int64_t kv_dim = int64_t(c.n_head_kv) * hd;
  const float* row = (key ? s_->k : s_->v).data() + t * kv_dim;
  const Sequence& seq = *s_->row_seq[size_t(t)];
  KvPool& kv = seq.pool();
  const int32_t block = seq.block_of(s_->row_slot[size_t(t)]);
  const int64_t slot = seq.slot_of(s_->row_slot[size_t(t)]);
  for (int64_t e = e0; e < e1;) {  // head by head
    const int h = int(e / hd);
    const int64_t end = std::min(e1, int64_t(h + 1) * hd);
    uint16_t* dst = key ? kv.k(block, il, h) : kv.v(block, il, h);
    k_.f32_to_f16_row(row + e, dst + slot * hd + (e - int64_t(h) * hd), end - e);
    e = end;
  }
}

void Engine::qkv_rows(int il, int64_t n, int64_t b, int64_t e, bool fused_rope) {
  const ModelConfig& c = model_.config();
  Scratch& s = *s_;
  const int hd = c.head_dim;
  const int64_t q_dim = int64_t(c.n_head) * hd, kv_dim = int64_t(c.n_head_kv) * hd;
  product_rows(s.plan[size_t(il)].qkv, 3, n, b, e, [&](int i, int64_t r0, int64_t r1) {
    if (!fused_rope) return;  // the rope step follows
    for (int64_t t = 0; t < n; ++t) {
      const float* angles = &s.rope[size_t(t * c.n_rot)];
      if (i == 0) rope_span(&s.q[size_t(t * q_dim)], r0, r1, hd, c.n_rot, angles);
      if (i == 1) rope_span(&s.k[size_t(t * kv_dim)], r0, r1, hd, c.n_rot, angles);
      if (i != 0) store_rows(il, t, i == 1, r0, r1);
    }
  });
}

void Engine::rope_and_store(int il, int64_t t) {
  const ModelConfig& c = model_.config();
  Scratch& s = *s_;
  const int64_t q_dim = int64_t(c.n_head) * c.head_dim, kv_dim = int64_t(c.n_head_kv) * c.head_dim;
  const int32_t pos = s.positions[size_t(t)];
  rope(&s.q[size_t(t * q_dim)], c.n_head, c.head_dim, c.n_rot, pos, model_.rope_inv_freq());
  rope(&s.k[size_t(t * kv_dim)], c.n_head_kv, c.head_dim, c.n_rot, pos, model_.rope_inv_freq());
  store_rows(il, t, true, 0, kv_dim);
  store_rows(il, t, false, 0, kv_dim);
}

// Grouped-query causal attention: new token t sees entries 0..slot of its sequence; query head
// h reads KV head h / (n_head / n_head_kv). K and V come from the f16 cache. The unit of work is
// one KV head of one token: its query heads (contiguous in q) read each K and V row once.
void Engine::attend(int il, int64_t t, int kvh, float* p, float* row_sum) {
  const ModelConfig& c = model_.config();
  Scratch& s = *s_;
  const int group = c.n_head / c.n_head_kv, hd = c.head_dim;
  const float scale = 1.0f / std::sqrt(float(hd));
  const int64_t q_dim = int64_t(c.n_head) * hd, span = int64_t(group) * hd, n_seq = s.score_stride;
  const Sequence& seq = *s.row_seq[size_t(t)];
  const KvPool& kv = seq.pool();
  const int64_t bt = kv.shape().block_tokens, n_see = s.row_slot[size_t(t)] + 1;
  auto k_rows = [&](int64_t j) { return kv.k(seq.block_of(j), il, kvh); };
  auto v_rows = [&](int64_t j) { return kv.v(seq.block_of(j), il, kvh); };
  // Scores (head g's row at p + g * n_seq), K fetched two blocks ahead and V into L2 on the way.
  const float* q = &s.q[size_t(t * q_dim + kvh * span)];
  for (int64_t j = 0; j < std::min(n_see, 2 * bt); j += bt) prefetch_rows<3>(k_rows(j), n_see - j, bt, hd);
  for (int64_t j = 0; j < n_see; j += bt) {
    if (j + 2 * bt < n_see) prefetch_rows<3>(k_rows(j + 2 * bt), n_see - j - 2 * bt, bt, hd);
    prefetch_rows<2>(v_rows(j), n_see - j, bt, hd);
    k_.attention_scores_f16_group(q, hd, group, k_rows(j), std::min(bt, n_see - j), hd, scale, p + j, n_seq);
  }
  for (int g = 0; g < group; ++g) k_.softmax(p + g * n_seq, n_see);
  if (row_sum)  // the query heads' attention, summed in head order
    for (int g = 0; g < group; ++g)
      for (int64_t j = 0; j < n_see; ++j) row_sum[j] += p[g * n_seq + j];
  float* out = &s.attn[size_t(t * q_dim + kvh * span)];
  std::fill(out, out + span, 0.0f);
  for (int64_t j = 0; j < n_see; j += bt) {
    if (j + bt < n_see) prefetch_rows<3>(v_rows(j + bt), n_see - j - bt, bt, hd);
    k_.attention_values_f16_group(p + j, n_seq, group, v_rows(j), std::min(bt, n_see - j), hd, out, hd);
  }
  const LayerPlan& L = s.plan[size_t(il)];
  if (L.wo_fused)  // whole quantization blocks of wo's input
    k_.quantize_activations(L.wo.w->type, out,
                            s.act_mid.data() + size_t(t) * L.wo.act_stride +
                                row_bytes(activation_type(L.wo.w->type), kvh * span),
                            span);
}

void Engine::attention_items(int il, int64_t n_seq, std::vector<float>* attention, bool gather, int64_t b,
                             int64_t e, int thread) {
  const ModelConfig& c = model_.config();
  Scratch& s = *s_;
  float* p = &s.scores[size_t(thread) * size_t(c.n_head / c.n_head_kv) * size_t(s.score_stride)];
  if (attention) {
    // Reporting attention: one thread owns each token's row, summing heads in a fixed order.
    for (int64_t t = b; t < e; ++t)
      for (int kvh = 0; kvh < c.n_head_kv; ++kvh) attend(il, t, kvh, p, &(*attention)[size_t(t * n_seq)]);
    return;
  }
  for (int64_t i = b; i < e; ++i) {
    float* row = nullptr;
    if (gather) {  // this (token, KV head)'s attention on each entry
      row = &s.gathered[size_t(i * n_seq)];
      std::fill(row, row + n_seq, 0.0f);
    }
    attend(il, i / c.n_head_kv, int(i % c.n_head_kv), p, row);
  }
}

// Folds the gathered attention into each lane's scores, token by token (a fixed order).
void Engine::fold_gathered(int il, int64_t n, int64_t b, int64_t e) {
  const ModelConfig& c = model_.config();
  Sequence& seq = *s_->row_seq[0];  // gathering is for one sequence
  const int64_t n_seq = seq.size(), first = s_->row_slot[0];
  EvictionBook& book = *seq.book();
  const bool last_only = book.budget.policy == EvictionPolicy::Tova;
  for (int64_t kvh = b; kvh < e; ++kvh) {
    std::vector<float>& lane = book.score[size_t(il) * size_t(c.n_head_kv) + size_t(kvh)];
    for (int64_t t = last_only ? n - 1 : 0; t < n; ++t) {
      const float* row = &s_->gathered[size_t((t * c.n_head_kv + kvh) * n_seq)];
      if (last_only)
        std::copy(row, row + n_seq, lane.begin());
      else
        for (int64_t j = 0; j <= first + t; ++j) lane[size_t(j)] += row[j];
    }
  }
}

// Units of gate/up rows that are whole quantization blocks of down's input: a thread computes a
// unit's gate and up rows (all new tokens) into its own scratch, applies swiglu and quantizes.
void Engine::ffn_units(int il, int64_t n, int64_t b, int64_t e, int thread) {
  const ModelConfig& c = model_.config();
  Scratch& s = *s_;
  const LayerPlan& L = s.plan[size_t(il)];
  const int64_t unit = L.unit;
  float* gate = &s.ffn[size_t(thread) * s.ffn.size() / size_t(pool_.size())];
  float* up = gate + unit * n;
  const DType down_in = activation_type(L.down.w->type);
  for (int64_t u = b; u < e; ++u) {
    const int64_t r0 = u * unit, rows = std::min<int64_t>(c.n_ff, r0 + unit) - r0;
    for (int i = 0; i < 2; ++i) {  // rows [r0, r0 + rows) of the weight, as rows 0.. of the unit
      const Product& p = L.gate_up[i];
      const Weight& m = *p.w;
      k_.matmul_rows(m.type, m.cols, m.data + size_t(r0) * m.row_stride, m.row_stride, 0, rows, act(p), p.act_stride,
                     n, i == 0 ? gate : up, unit);
    }
    for (int64_t t = 0; t < n; ++t) {
      swiglu(gate + t * unit, up + t * unit, rows);
      k_.quantize_activations(L.down.w->type, gate + t * unit,
                              s.act_mid.data() + size_t(t) * L.down.act_stride + row_bytes(down_in, r0), rows);
    }
  }
}

}  // namespace kvstash
