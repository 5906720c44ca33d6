// Text generation and scoring on top of Engine: prefill a prompt, then sample token by token.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kvstash/engine.h"
#include "kvstash/sampler.h"

namespace kvstash {

struct GenerateOptions {
  int n_predict = 128;  // -1: until an end-of-generation token or a full context
  SamplingParams sampling;
  int64_t prefill_chunk = 512;  // tokens per forward call while prefilling (results do not depend on it)
  bool ignore_eos = false;      // end-of-generation tokens are never sampled (llama.cpp's --ignore-eos)
  // Generation stops as soon as the text contains one of these; the text returned and streamed ends
  // before it (text that could begin one is held back until it cannot). Empty strings are ignored.
  std::vector<std::string> stop;
};

struct GenerateResult {
  // Generated ids (an end-of-generation token is not included; the tokens of a stop string are).
  std::vector<Token> tokens;
  std::string text;
  int64_t prompt_tokens = 0;
  // "length" (n_predict reached), "eos", "stop" (a stop string), or "context" (the context is full)
  std::string stop_reason;
  double time_to_first_token_ms = 0;
  double prefill_tokens_per_s = 0;
  double decode_tokens_per_s = 0;
};

// Appends `prompt` to `seq` (which may already hold a prefix) and generates up to n_predict tokens
// (or until the context is full). Throws InvalidArgument for n_predict < -1 or an empty prompt
// without last_logits, ResourceExhausted when the prompt does not fit the context.
// An empty prompt continues from `last_logits`, the logits of seq's last entry.
// on_text receives complete UTF-8 pieces as they are produced.
GenerateResult generate(Engine& engine, Sequence& seq, const std::vector<Token>& prompt,
                        const GenerateOptions& options,
                        const std::function<void(const std::string&)>& on_text = {},
                        const float* last_logits = nullptr);

struct PerplexityResult {
  double perplexity = 0;
  double mean_nll = 0;
  int64_t tokens = 0;   // tokens in the text
  int64_t scored = 0;   // tokens whose log-likelihood was counted
  int64_t windows = 0;
  double tokens_per_s = 0;
};

// Consecutive non-overlapping windows of ctx tokens, each from an empty cache; every token after
// a window's first is scored. perplexity = exp(mean negative log-likelihood).
PerplexityResult perplexity(Engine& engine, const std::vector<Token>& tokens, int64_t ctx);

// The whole text as one stream (StreamingLLM's method): every token after the first is scored
// with the cache of everything before it — a budgeted sequence (budget enabled) that evicts as it
// goes, or the full cache (which then must hold the text: the engine's context). Fed in chunks of
// `chunk` tokens with all logits (0: the budget's interval, or 512 without a budget; the result does
// not depend on it). windows = 1. Throws InvalidArgument for fewer than 2 tokens, an invalid
// budget or SnapKV (it selects once when a prompt ends; a stream has no prompt end).
PerplexityResult perplexity_stream(Engine& engine, const std::vector<Token>& tokens, const KvBudget& budget,
                                   int64_t chunk = 0);

// log(softmax(logits)) in double: one pass for the normalizer, then any entry.
struct LogSoftmax {
  LogSoftmax(const float* logits, int n_vocab);
  double operator()(float logit) const { return double(logit) - max_ - log_sum_; }

 private:
  double max_ = 0, log_sum_ = 0;
};
// log(softmax(logits)[target]).
inline double log_prob(const float* logits, int n_vocab, Token target) {
  return LogSoftmax(logits, n_vocab)(logits[target]);
}

}  // namespace kvstash
