#include "kvstash/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "kvstash/error.h"
#include "session/stop_text.h"

namespace kvstash {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

GenerateResult generate(Engine& engine, Sequence& seq, const std::vector<Token>& prompt,
                        const GenerateOptions& o, const std::function<void(const std::string&)>& on_text,
                        const float* last_logits) {
  if (prompt.empty() && !last_logits) throw Error(ErrorKind::InvalidArgument, "prompt is empty");
  if (o.n_predict < -1)
    throw Error(ErrorKind::InvalidArgument, "-n must be -1 (until end of generation or a full context) or >= 0, got " +
                                                std::to_string(o.n_predict));
  // A budgeted sequence evicts as it goes; only a sequence that holds the whole prompt must fit it.
  if (!seq.evicts_as_it_goes() && seq.size() + int64_t(prompt.size()) > engine.n_ctx())
    throw Error(ErrorKind::ResourceExhausted, "prompt of " + std::to_string(seq.size() + int64_t(prompt.size())) +
                " tokens does not fit the context of " + std::to_string(engine.n_ctx()) + " tokens");
  const Tokenizer& tok = engine.model().tokenizer();
  const int n_vocab = engine.model().config().n_vocab;
  Sampler sampler(o.sampling);
  EosMask mask(tok, n_vocab, o.ignore_eos);
  GenerateResult r;
  r.prompt_tokens = int64_t(prompt.size());

  const auto t0 = std::chrono::steady_clock::now();
  const float* logits = last_logits;
  for (size_t at = 0; at < prompt.size(); at += size_t(o.prefill_chunk)) {
    const int64_t n = std::min<int64_t>(o.prefill_chunk, int64_t(prompt.size() - at));
    logits = engine.forward(seq, &prompt[at], n);
  }
  if (!prompt.empty()) logits = engine.end_prefill(seq, logits);
  const double prefill_s = seconds_since(t0);
  if (!prompt.empty()) r.prefill_tokens_per_s = double(prompt.size()) / std::max(prefill_s, 1e-9);

  TextStream stream(tok);
  StopText text(o.stop, on_text);
  std::vector<Token> history = seq.tokens();
  const auto t1 = std::chrono::steady_clock::now();
  const bool unlimited = o.n_predict < 0;
  r.stop_reason = "length";
  bool stopped = false;
  for (int i = 0; unlimited || i < o.n_predict; ++i) {
    const Token next = sampler.sample(mask.apply(logits), n_vocab, history);
    if (i == 0) r.time_to_first_token_ms = 1000.0 * seconds_since(t0);
    if (tok.is_end_of_generation(next)) {
      r.stop_reason = "eos";
      break;
    }
    r.tokens.push_back(next);
    history.push_back(next);
    if ((stopped = text.append(r.text, stream.push(next)))) break;
    if (unlimited || i + 1 < o.n_predict) {
      // A budgeted sequence evicts before its slots run out; its stream has no end here.
      if (!seq.evicts_as_it_goes() && seq.size() + 1 > engine.n_ctx()) {
        r.stop_reason = "context";
        break;
      }
      logits = engine.forward(seq, &next, 1);
    }
  }
  if (!stopped) stopped = text.append(r.text, stream.flush());
  if (stopped) r.stop_reason = "stop";
  text.finish(r.text);
  const double decode_s = seconds_since(t1);
  if (r.tokens.size() > 1) r.decode_tokens_per_s = double(r.tokens.size() - 1) / std::max(decode_s, 1e-9);
  return r;
}

LogSoftmax::LogSoftmax(const float* logits, int n_vocab) {
  float max = logits[0];
  for (int i = 1; i < n_vocab; ++i) max = std::max(max, logits[i]);
  double sum = 0;
  for (int i = 0; i < n_vocab; ++i) sum += std::exp(double(logits[i]) - double(max));
  max_ = double(max);
  log_sum_ = std::log(sum);
}

PerplexityResult perplexity(Engine& engine, const std::vector<Token>& tokens, int64_t ctx) {
  if (ctx < 2) throw Error(ErrorKind::InvalidArgument, "perplexity window (-c/--ctx-size) must be at least 2 tokens");
  if (ctx > engine.n_ctx())
    throw Error(ErrorKind::InvalidArgument, "perplexity window of " + std::to_string(ctx) +
                                                " tokens exceeds the context of " + std::to_string(engine.n_ctx()));
  if (tokens.size() < 2) throw Error(ErrorKind::InvalidArgument, "text has fewer than 2 tokens");
  const int n_vocab = engine.model().config().n_vocab;
  PerplexityResult r;
  r.tokens = int64_t(tokens.size());
  double nll = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t at = 0; at + 1 < tokens.size(); at += size_t(ctx)) {
    const int64_t n = std::min<int64_t>(ctx, int64_t(tokens.size() - at));
    Sequence seq = engine.new_sequence();
    const float* logits = engine.forward(seq, &tokens[at], n, ForwardOptions{.all_logits = true});
    for (int64_t i = 1; i < n; ++i) nll -= log_prob(logits + (i - 1) * n_vocab, n_vocab, tokens[at + size_t(i)]);
    r.scored += n - 1;
    ++r.windows;
  }
  r.tokens_per_s = double(r.tokens) / std::max(seconds_since(t0), 1e-9);
  r.mean_nll = nll / double(r.scored);
  r.perplexity = std::exp(r.mean_nll);
  return r;
}

}  // namespace kvstash
