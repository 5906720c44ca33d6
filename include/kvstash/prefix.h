// The seeds' verbs: process a prefix (a book, a document, a system prompt) once into a state, then
// generate any number of continuations from it without reading the prefix again.
//
// A continuation is appended to the prefix as text: kvstash tokenizes prefix text + continuation,
// reuses the longest common token prefix with the state and computes only the rest, so BPE merges
// across the boundary come out exactly as if the whole text had been run from scratch.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "kvstash/generate.h"
#include "kvstash/prefix_cache.h"
#include "kvstash/state.h"

namespace kvstash {

// Tokens of a prompt as `run` reads it: BOS as the model asks, special-token text parsed.
std::vector<Token> prompt_tokens(const Tokenizer& tok, const std::string& text);

// Forwards tokens[seq.size()..) in chunks of 512 (seq holds the first seq.size() of them), ends the
// prefill (SnapKV selects here) and returns the last token's logits. progress(done, total) after
// every chunk, counting the tokens seq held before.
const float* prefill(Engine& engine, Sequence& seq, const std::vector<Token>& tokens,
                     const std::function<void(int64_t, int64_t)>& progress = {});

// Runs the tokens through the model and snapshots the result (recording the engine's context).
// progress(done, total) is called after every chunk. With a budget the sequence keeps at most
// budget + interval entries per head (SnapKV selects when the prefix ends). With a cache, the
// longest cached prefix is loaded first and the new chunks are stored (unbudgeted only); `load`
// (if given) receives what the cache provided.
State process_prefix(Engine& engine, const std::vector<Token>& tokens,
                     const std::function<void(int64_t, int64_t)>& progress = {}, const KvBudget& budget = {},
                     PrefixCache* cache = nullptr, CacheLoad* load = nullptr);
// The same for text, tokenized by prompt_tokens.
State process_prefix(Engine& engine, const std::string& text,
                     const std::function<void(int64_t, int64_t)>& progress = {}, const KvBudget& budget = {});

// Calls fn(i, logits) with the logits that predict tokens[i] when `tokens` continue the state: i = 0
// gets the state's last logits, i > 0 the state's cache plus tokens[0..i) (fed in calls of `chunk`
// tokens; the logits do not depend on it). The engine's context must hold the state and the
// tokens (ResourceExhausted). A budgeted state keeps evicting as the tokens are fed.
void continuation_logits(Engine& engine, const State& state, const std::vector<Token>& tokens,
                         const std::function<void(int64_t, const float*)>& fn, int64_t chunk = 512);
// Perplexity of `tokens` as the continuation of the state (every token scored; windows = 1): the
// quality measure of a lossy state (codec level, KV budget) against the exact one.
PerplexityResult perplexity_after(Engine& engine, const State& state, const std::vector<Token>& tokens,
                                  int64_t chunk = 512);

struct Continuation {
  GenerateResult result;
  int64_t reused_tokens = 0;  // cache entries taken from the state or the prefix cache
  CacheLoad cache;            // what the prefix cache provided (use_cache)
};

// A state restored once into the engine; every continuation runs in a fork of it (copy-on-write,
// the prefix's K/V blocks are shared, never copied).
class LoadedPrefix {
 public:
  // Validates the state against the engine's model (throws Error; nothing is changed on error).
  LoadedPrefix(Engine& engine, const State& state);
  // From a .kvs file in one pass over its K/V (load_state_into): the same checks and errors as
  // LoadedPrefix(engine, load_state(path)), about twice as fast.
  LoadedPrefix(Engine& engine, const std::string& kvs_path);

  const std::string& text() const { return text_; }
  // Continuations also load cached chunks beyond the state from `cache` and store their new ones
  // (nullptr: none). The cache must outlive its use here.
  void use_cache(PrefixCache* cache) { cache_ = cache; }
  int64_t size() const { return base_.n_processed(); }  // tokens the state has read

  // Continues the prefix text with `text`. A budgeted state that has evicted entries cannot be cut
  // back, so where prefix + text does not tokenize as the state's tokens followed by more, `text`
  // is tokenized on its own and appended.
  Continuation generate(const std::string& text, const GenerateOptions& options,
                        const std::function<void(const std::string&)>& on_text = {});
  // Generates after the given full token sequence, reusing the longest common prefix with the state
  // (InvalidArgument if that means cutting a budgeted state that cannot be cut).
  Continuation generate_tokens(const std::vector<Token>& tokens, const GenerateOptions& options,
                               const std::function<void(const std::string&)>& on_text = {});

 private:
  void take(const State& state);  // logits and text of the restored state
  size_t common_prefix(const std::vector<Token>& tokens) const;
  bool can_cut_to(size_t n) const;
  Engine& engine_;
  Sequence base_;
  std::vector<float> logits_;
  std::string text_;
  PrefixCache* cache_ = nullptr;
};

}  // namespace kvstash
