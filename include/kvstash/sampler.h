// Token sampling: greedy, or a llama.cpp-like chain (repetition penalty, top-k, top-p, min-p,
// temperature) drawing from a seeded generator whose stream is defined here, not by the standard
// library, so a seed gives the same tokens on every machine, process and thread count.
#pragma once
#include <cstdint>
#include <vector>

#include "kvstash/types.h"

namespace kvstash {

struct SamplingParams {
  float temperature = 0.8f;  // <= 0: greedy (argmax, lowest id on ties)
  int top_k = 40;            // <= 0: off
  float top_p = 0.95f;       // >= 1: off
  float min_p = 0.05f;       // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off
  int repeat_last_n = 64;
  uint64_t seed = 0;
};

// Validates ranges; throws Error("--top-p must be in (0, 1], got 1.5") style messages.
void validate(const SamplingParams& p);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // history: the tokens so far (for the repetition penalty). Throws InvalidArgument for a NaN or
  // +inf logit (-inf is allowed: it masks a token).
  Token sample(const float* logits, int n_vocab, const std::vector<Token>& history);
  const SamplingParams& params() const { return p_; }

 private:
  double next_uniform();  // [0, 1), xoshiro256** stream seeded by splitmix64(seed)
  SamplingParams p_;
  uint64_t state_[4];
  struct Candidate {
    float logit;
    Token id;
  };
  std::vector<Candidate> cand_;
  std::vector<float> probs_;
};

}  // namespace kvstash
