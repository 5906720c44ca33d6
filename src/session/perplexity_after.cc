// Scoring a text as the continuation of a state: the quality measure for codecs and budgets alike.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "kvstash/error.h"
#include "kvstash/prefix.h"

namespace kvstash {

void continuation_logits(Engine& engine, const State& state, const std::vector<Token>& tokens,
                         const std::function<void(int64_t, const float*)>& fn, int64_t chunk) {
  if (state.size() == 0) throw Error(ErrorKind::InvalidArgument, "the state is empty: nothing to continue");
  if (tokens.empty()) throw Error(ErrorKind::InvalidArgument, "the continuation has no tokens");
  if (chunk <= 0) throw Error(ErrorKind::InvalidArgument, "chunk must be > 0, got " + std::to_string(chunk));
  const int n_vocab = engine.model().config().n_vocab;
  Sequence seq = engine.new_sequence();
  restore(state, engine.model(), engine.n_ctx(), seq);
  // The last token is only predicted, never fed.
  const int64_t fed = int64_t(tokens.size()) - 1;
  if (!seq.evicts_as_it_goes() && seq.size() + fed > engine.n_ctx())
    throw Error(ErrorKind::ResourceExhausted, "state of " + std::to_string(seq.size()) + " entries and " +
                                                  std::to_string(tokens.size()) +
                                                  " continuation tokens do not fit the context of " +
                                                  std::to_string(engine.n_ctx()) + " tokens");
  fn(0, state.logits.data());
  for (int64_t at = 0; at < fed; at += chunk) {
    const int64_t n = std::min(chunk, fed - at);
    const float* logits = engine.forward(seq, &tokens[size_t(at)], n, ForwardOptions{.all_logits = true});
    for (int64_t i = 0; i < n; ++i) fn(at + i + 1, logits + i * n_vocab);
  }
}

PerplexityResult perplexity_after(Engine& engine, const State& state, const std::vector<Token>& tokens,
                                  int64_t chunk) {
  const int n_vocab = engine.model().config().n_vocab;
  PerplexityResult r;
  r.tokens = int64_t(tokens.size());
  r.windows = 1;
  double nll = 0;
  const auto t0 = std::chrono::steady_clock::now();
  continuation_logits(engine, state, tokens,
                      [&](int64_t i, const float* logits) { nll -= log_prob(logits, n_vocab, tokens[size_t(i)]); },
                      chunk);
  r.scored = r.tokens;
  r.tokens_per_s = double(r.tokens) / std::max(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1e-9);
  r.mean_nll = nll / double(r.scored);
  r.perplexity = std::exp(r.mean_nll);
  return r;
}

}  // namespace kvstash
