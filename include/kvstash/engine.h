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

class Engine {
 public:
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

 private:
  struct Scratch;
  static constexpr int64_t kGatherChunk = 256;  // tokens per pass while gathering attention (bounds scratch)
  const float* forward_chunk(Sequence& seq, const Token* tokens, int64_t n, bool all_logits,
                             std::vector<float>* attention, bool gather);
  void check_fits(const Sequence& seq, int64_t n) const;
  KeyRotator key_rotator() const;
  void layer(int il, Sequence& seq, int64_t first, int64_t n, std::vector<float>* attention, bool gather);
  void attention(int il, Sequence& seq, int64_t first, int64_t n, std::vector<float>* attention, bool gather);
  void matmul(const Weight& w, const float* x, int64_t n, float* out);
  void matmul(const Weight* const* ws, float* const* outs, int count, const float* x, int64_t n);  // count <= 3

  const Model& model_;
  ThreadPool& pool_;
  const Kernels& k_;
  int64_t n_ctx_;
  KvPool kv_;
  std::unique_ptr<Scratch> s_;
};

}  // namespace kvstash
