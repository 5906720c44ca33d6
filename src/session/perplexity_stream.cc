// perplexity_stream: a text scored as one stream through a (budgeted) cache.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "kvstash/error.h"
#include "kvstash/generate.h"

namespace kvstash {

PerplexityResult perplexity_stream(Engine& engine, const std::vector<Token>& tokens, const KvBudget& budget,
                                   int64_t chunk) {
  if (tokens.size() < 2) throw Error(ErrorKind::InvalidArgument, "text has fewer than 2 tokens");
  if (budget.enabled()) {
    validate(budget);
    if (budget.policy == EvictionPolicy::SnapKV)
      throw Error(ErrorKind::InvalidArgument,
                  "--kv-policy snapkv selects once when a prompt ends; perplexity --stream has no prompt end "
                  "(choose another --kv-policy)");
  }
  if (chunk < 0) throw Error(ErrorKind::InvalidArgument, "chunk must be >= 0, got " + std::to_string(chunk));
  if (chunk == 0) chunk = budget.enabled() ? budget.interval : 512;
  // The last token is only predicted, never fed.
  const int64_t fed = int64_t(tokens.size()) - 1;
  if (!budget.enabled() && fed > engine.n_ctx())
    throw Error(ErrorKind::ResourceExhausted, "text of " + std::to_string(tokens.size()) +
                                                  " tokens does not fit the context of " +
                                                  std::to_string(engine.n_ctx()) + " tokens (or give a --kv-budget)");
  const int n_vocab = engine.model().config().n_vocab;
  PerplexityResult r;
  r.tokens = int64_t(tokens.size());
  r.windows = 1;
  double nll = 0;  // summed in stream order, as perplexity() does: one window gives the same bits
  const auto t0 = std::chrono::steady_clock::now();
  Sequence seq = engine.new_sequence(budget);
  for (int64_t at = 0; at < fed; at += chunk) {
    const int64_t n = std::min(chunk, fed - at);
    const float* logits = engine.forward(seq, &tokens[size_t(at)], n, ForwardOptions{.all_logits = true});
    for (int64_t i = 0; i < n; ++i) nll -= log_prob(logits + i * n_vocab, n_vocab, tokens[size_t(at + i + 1)]);
  }
  r.scored = fed;
  r.tokens_per_s = double(r.tokens) / std::max(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1e-9);
  r.mean_nll = nll / double(r.scored);
  r.perplexity = std::exp(r.mean_nll);
  return r;
}

}  // namespace kvstash
