// Runs a model over sequences: a thread pool, a KV block pool and scratch buffers reused by every
// call (no allocation per decoded token once the buffers have grown).
//
// Bitwise batch invariance: the logits of a position do not depend on how the tokens were split
// into calls, nor on the thread count. Every output element is computed by one thread in a fixed
// order, and attention always reads K/V back from the f16 cache, also inside a batch.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "kvstash/kernels.h"
#include "kvstash/kv_cache.h"
#include "kvstash/model.h"
#include "kvstash/thread_pool.h"

namespace kvstash {

// Bumped whenever a change makes the forward pass compute other bits for the same model and
// tokens (2: kvstash's own exp and a 16-lane sum in softmax). Stored K/V keyed by it (the prefix
// store) are then computed again rather than mixed with the new arithmetic.
inline constexpr int kArithmeticVersion = 2;

struct EngineOptions {
  int64_t n_ctx = 0;  // tokens one sequence may hold; 0: min(training context, 4096)
  int block_tokens = 32;
  // Entries the KV pool holds, all sequences together; 0: n_ctx plus two blocks, room for one
  // full-context sequence and a fork of it (the fork's copy-on-write blocks).
  int64_t kv_tokens = 0;
  std::optional<SimdLevel> simd = std::nullopt;  // kernels of this level (NotSupported if the CPU lacks it); default: Kernels::active()
};

struct ForwardOptions {
  bool all_logits = false;  // logits of every new token, not only the last
  // If set: attention each cache entry received from each new token, summed over layers and heads;
  // resized to n_new rows of seq.size() (after the call) floats.
  std::vector<float>* attention = nullptr;
};

// One sequence's new tokens in a batched forward pass.
struct BatchItem {
  Sequence* seq = nullptr;
  const Token* tokens = nullptr;
  int64_t n = 0;
  bool logits = false;  // return the logits of its last token
};

class Engine {
 public:
  static constexpr int64_t kMaxBatchTokens = 512;  // tokens of one forward_batch call, all items together

  // Validates the options (InvalidArgument) and allocates the KV pool (ResourceExhausted when
  // memory is short). The thread pool is shared, not owned: engines on one pool must not run
  // forward passes at the same time.
  Engine(const Model& model, ThreadPool& threads, const EngineOptions& options = {});
  ~Engine();

  const Model& model() const { return model_; }
  int64_t n_ctx() const { return n_ctx_; }
  int n_threads() const { return pool_.size(); }
  ThreadPool& threads() const { return pool_; }
  const Kernels& kernels() const { return k_; }
  KvPool& kv_pool() { return kv_; }
  // A sequence in this engine's pool; with a budget, it keeps at most budget + interval entries per
  // layer and KV head (n_ctx must allow that many; SnapKV holds the whole prompt until end_prefill).
  Sequence new_sequence(const KvBudget& budget = {}) { return Sequence(kv_, budget); }

  // Appends tokens (positions continue the sequence) and returns the logits: n_vocab floats for
  // the last token, or n * n_vocab with all_logits. Valid until the next call. Throws Error if the
  // sequence would exceed the context, a token is outside the vocabulary or the sequence belongs
  // to another engine's pool (the sequence is left as it was).
  // A budgeted sequence evicts whenever it holds budget + interval entries, also inside a call;
  // an error there (a fork whose pool lacks room for private copies) may leave it advanced by the
  // chunks before the eviction point.
  const float* forward(Sequence& seq, const Token* tokens, int64_t n,
                       const ForwardOptions& options = {});
  // Marks the end of a prompt whose last logits forward returned: SnapKV makes its one selection
  // here (running the observation window's tokens again to gather their attention); a no-op for
  // other sequences. Returns the last token's logits: `last_logits`, or the same values computed
  // again where the window was run again.
  const float* end_prefill(Sequence& seq, const float* last_logits);
  // One forward pass over the new tokens of several unbudgeted sequences (continuous batching):
  // each row's products and attention are computed as in forward(), so every logit is bitwise
  // what the sequence would get alone. Returns n_vocab floats per item with `logits`, in item
  // order. Throws InvalidArgument (a budgeted or repeated sequence, more than kMaxBatchTokens) or
  // ResourceExhausted (context, KV pool) with every sequence left as it was.
  const float* forward_batch(const BatchItem* items, int count);

 private:
  struct Scratch;
  static constexpr int64_t kGatherChunk = 256;  // tokens per pass while gathering attention (bounds scratch)
  // Tokens per pass otherwise: bounds the scratch buffers (activations of every layer step) the
  // way llama.cpp's micro-batch does; results do not depend on it (batch invariance).
  static constexpr int64_t kMaxChunk = 512;
  // Runs a forward pass over n new tokens. Writes the logits of every new token (all_logits) or
  // of the last one to `logits`, or none if it is null.
  void forward_chunk(Sequence& seq, const Token* tokens, int64_t n, float* logits, bool all_logits,
                     std::vector<float>* attention, bool gather);
  // The pass itself, over rows already appended to their sequences (Scratch's row map).
  void run_rows(const Token* tokens, int64_t n, float* logits, std::vector<float>* attention, bool gather);
  void check_fits(const Sequence& seq, int64_t n) const;
  KeyRotator key_rotator() const;

  // The steps of a forward pass (engine.cc).
  struct Product;
  struct LayerPlan;
  // Fixes each layer's products, activation buffers and work units, growing the buffers.
  void plan(int64_t n, int64_t n_out, bool logits);
  // Points the products at input buffers (one per activation type); need[b]: bytes buffer b needs.
  void assign_inputs(Product* ps, int count, int64_t n, size_t need[3]) const;
  uint8_t* act(const Product& p);  // its activation buffer
  void quantize_input(const Product* ps, int count, const float* row, int64_t t);
  void norm_input(const float* x, const float* weight, const Product* ps, int count, int64_t t);
  // Row groups [b, e) of ps[0..count) one after the other; done(i, r0, r1) after rows [r0, r1)
  // of product i, on the same thread.
  template <class Done>
  void product_rows(const Product* ps, int count, int64_t n, int64_t b, int64_t e, Done&& done);
  void add_rows(int64_t n, int64_t r0, int64_t r1);  // x += xn on rows [r0, r1)
  void store_rows(int il, int64_t t, bool key, int64_t e0, int64_t e1);
  void qkv_rows(int il, int64_t n, int64_t b, int64_t e, bool fused_rope);
  void rope_and_store(int il, int64_t t);
  // Attention of KV head kvh's query heads for row t, p: scratch of group rows of the score stride;
  // adds their probabilities (head order) to row_sum unless it is null.
  void attend(int il, int64_t t, int kvh, float* p, float* row_sum);
  void attention_items(int il, int64_t n_seq, std::vector<float>* attention, bool gather, int64_t b, int64_t e,
                       int thread);
  void fold_gathered(int il, int64_t n, int64_t b, int64_t e);
  void ffn_units(int il, int64_t n, int64_t b, int64_t e, int thread);

  const Model& model_;
  ThreadPool& pool_;
  const Kernels& k_;
  int64_t n_ctx_;
  KvPool kv_;
  std::unique_ptr<Scratch> s_;
};

}  // namespace kvstash
