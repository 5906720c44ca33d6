#include "kvstash/prefix.h"

#include <algorithm>

#include "kvstash/error.h"

namespace kvstash {

std::vector<Token> prompt_tokens(const Tokenizer& tok, const std::string& text) {
  return tok.encode(text, true, true);
}

State process_prefix(Engine& engine, const std::vector<Token>& tokens,
                     const std::function<void(int64_t, int64_t)>& progress, const KvBudget& budget,
                     PrefixCache* cache, CacheLoad* load) {
  if (tokens.empty()) throw Error(ErrorKind::InvalidArgument, "prefix is empty");
  Sequence seq = engine.new_sequence(budget);
  if (!seq.evicts_as_it_goes() && int64_t(tokens.size()) > engine.n_ctx())
    throw Error(ErrorKind::ResourceExhausted, "prefix of " + std::to_string(tokens.size()) +
                                                  " tokens does not fit the context of " +
                                                  std::to_string(engine.n_ctx()) + " tokens");
  const CacheLoad loaded = cache ? cache->load(seq, tokens) : CacheLoad{};
  const float* logits = prefill(engine, seq, tokens, progress);
  State state = snapshot(engine.model(), seq, engine.n_ctx(), logits);
  if (cache) cache->save(seq);
  if (load) *load = loaded;
  return state;
}

const float* prefill(Engine& engine, Sequence& seq, const std::vector<Token>& tokens,
                     const std::function<void(int64_t, int64_t)>& progress) {
  const float* logits = nullptr;
  constexpr size_t kChunk = 512;
  for (size_t at = size_t(seq.n_processed()); at < tokens.size(); at += kChunk) {
    const int64_t n = int64_t(std::min(kChunk, tokens.size() - at));
    logits = engine.forward(seq, &tokens[at], n);
    if (progress) progress(int64_t(at) + n, int64_t(tokens.size()));
  }
  if (logits == nullptr) throw Error(ErrorKind::InvalidArgument, "prefill: no token left to compute");
  return engine.end_prefill(seq, logits);
}

State process_prefix(Engine& engine, const std::string& text,
                     const std::function<void(int64_t, int64_t)>& progress, const KvBudget& budget) {
  return process_prefix(engine, prompt_tokens(engine.model().tokenizer(), text), progress, budget);
}

LoadedPrefix::LoadedPrefix(Engine& engine, const State& state)
    : engine_(engine), base_(engine.new_sequence()) {
  restore(state, engine.model(), engine.n_ctx(), base_);
  take(state);
}

LoadedPrefix::LoadedPrefix(Engine& engine, const std::string& kvs_path)
    : engine_(engine), base_(engine.new_sequence()) {
  take(load_state_into(kvs_path, engine.model(), engine.n_ctx(), base_, &engine.threads()));
}

void LoadedPrefix::take(const State& state) {
  logits_ = state.logits;
  const Tokenizer& tok = engine_.model().tokenizer();
  std::vector<Token> body = state.tokens;
  if (!body.empty() && body.front() == tok.bos() && tok.add_bos()) body.erase(body.begin());
  text_ = tok.decode(body, true);
}

size_t LoadedPrefix::common_prefix(const std::vector<Token>& tokens) const {
  const std::vector<Token>& cached = base_.tokens();
  const size_t limit = std::min(cached.size(), tokens.size());
  return size_t(std::mismatch(cached.begin(), cached.begin() + long(limit), tokens.begin()).first - cached.begin());
}

// Slots are the tokens read unless the state is budgeted and has evicted.
bool LoadedPrefix::can_cut_to(size_t n) const {
  return base_.size() == base_.n_processed() && base_.can_truncate(int64_t(n));
}

Continuation LoadedPrefix::generate(const std::string& text, const GenerateOptions& options,
                                    const std::function<void(const std::string&)>& on_text) {
  const Tokenizer& tok = engine_.model().tokenizer();
  std::vector<Token> tokens = prompt_tokens(tok, text_ + text);
  const std::vector<Token>& cached = base_.tokens();
  const bool extends = tokens.size() > cached.size() && std::equal(cached.begin(), cached.end(), tokens.begin());
  if (!extends && !can_cut_to(std::min(common_prefix(tokens), tokens.size() - 1))) {
    // Cannot cut back into an evicted budgeted state: append the text's own tokens.
    tokens = cached;
    const std::vector<Token> more = tok.encode(text, false, true);
    tokens.insert(tokens.end(), more.begin(), more.end());
  }
  return generate_tokens(tokens, options, on_text);
}

Continuation LoadedPrefix::generate_tokens(const std::vector<Token>& tokens, const GenerateOptions& options,
                                           const std::function<void(const std::string&)>& on_text) {
  if (tokens.empty()) throw Error(ErrorKind::InvalidArgument, "prompt is empty");
  const std::vector<Token>& cached = base_.tokens();
  size_t common = common_prefix(tokens);
  Sequence seq = base_.fork();
  Continuation c;
  if (common == tokens.size() && common == cached.size()) {
    c.reused_tokens = int64_t(common);
    c.result = kvstash::generate(engine_, seq, {}, options, on_text, logits_.data());
    return c;
  }
  // The last token must be computed again for its logits when nothing new follows it.
  if (common == tokens.size()) --common;
  if (common < cached.size()) {
    if (!can_cut_to(common))
      throw Error(ErrorKind::InvalidArgument,
                  "the prompt diverges from the budgeted state's tokens at token " + std::to_string(common) +
                      ", and a budgeted state that has scored or evicted entries cannot be cut back");
    seq.truncate(int64_t(common));
  }
  if (cache_) c.cache = cache_->load(seq, tokens);
  c.reused_tokens = std::max<int64_t>(int64_t(common), seq.n_processed());
  c.result = kvstash::generate(engine_, seq, std::vector<Token>(tokens.begin() + seq.n_processed(), tokens.end()), options,
                               on_text);
  c.result.time_to_first_token_ms += c.cache.ms;
  if (cache_) cache_->save(seq);
  return c;
}

}  // namespace kvstash
