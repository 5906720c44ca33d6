#include "server/scheduler.h"

#include <algorithm>
#include <functional>

#include "kvstash/generate.h"
#include "kvstash/prefix.h"
#include "kvstash/state.h"
#include "kvstash/tokenizer.h"
#include "server/openai_request.h"
#include "session/stop_text.h"

namespace kvstash::server {

namespace {
using Clock = std::chrono::steady_clock;
double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// The token's log-probability and the `top` most likely tokens (lowest id first on ties), found
// in one scan that keeps them in order: top is at most 20.
TokenInfo token_info(const float* logits, int n_vocab, Token id, int top) {
  const LogSoftmax lp(logits, n_vocab);
  TokenInfo info{id, lp(logits[id]), {}};
  std::vector<Token> best;
  best.reserve(size_t(top) + 1);
  for (Token t = 0; t < n_vocab && top > 0; ++t) {
    if (int(best.size()) == top && logits[t] <= logits[best.back()]) continue;
    auto at = std::find_if(best.begin(), best.end(), [&](Token b) { return logits[t] > logits[b]; });
    best.insert(at, t);
    if (int(best.size()) > top) best.pop_back();
  }
  for (Token t : best) info.top.emplace_back(t, lp(logits[t]));
  return info;
}

size_t common_prefix(const std::vector<Token>& a, const std::vector<Token>& b) {
  const size_t n = std::min(a.size(), b.size());
  return size_t(std::mismatch(a.begin(), a.begin() + long(n), b.begin()).first - a.begin());
}
}  // namespace

// ---- Job ----

bool Job::next(std::vector<Piece>& out) {
  out.clear();
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return !pieces_.empty() || done_; });
  out.swap(pieces_);
  return !(done_ && out.empty());
}

void Job::push(Piece p) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    pieces_.push_back(std::move(p));
  }
  cv_.notify_all();
}

void Job::finish() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    done_ = true;
  }
  cv_.notify_all();
}

// ---- A running request ----

struct Scheduler::Running {
  explicit Running(Engine& engine) : seq(engine.new_sequence()) {}
  std::shared_ptr<Job> job;
  JobSpec spec;
  Clock::time_point first_token;
  Sequence seq;
  size_t fed = 0;      // prompt tokens in seq
  Token pending = -1;  // sampled, fed by the next pass
  bool finished = false;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<TextStream> stream;
  std::string text, piece;  // all text so far; what the current token released
  std::function<void(const std::string&)> on_text = [this](const std::string& s) { piece += s; };
  std::unique_ptr<StopText> stop;
  bool prefilling() const { return fed < spec.tokens.size(); }
};

Scheduler::Scheduler(Engine& engine, const SchedulerOptions& options) : engine_(engine), o_(options) {
  if (o_.parallel < 1 || o_.parallel > kMaxParallel)
    throw Error(ErrorKind::InvalidArgument, "--parallel must be between 1 and " + std::to_string(kMaxParallel));
  if (o_.queue_limit < 0) throw Error(ErrorKind::InvalidArgument, "--queue must be >= 0");
  if (o_.prefill_chunk < 1) throw Error(ErrorKind::InvalidArgument, "--prefill-chunk must be >= 1");
  o_.prefill_chunk = std::min(o_.prefill_chunk, Engine::kMaxBatchTokens - o_.parallel);
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::shared_ptr<Job> Scheduler::submit(JobSpec spec) {
  auto job = std::make_shared<Job>();
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (draining_ || stop_) throw HttpError(503, "server_shutting_down", "the server is shutting down");
    // Jobs pass through the queue: free running places count on top of the waiting limit.
    if (int64_t(queue_.size()) >= o_.queue_limit + std::max<int64_t>(0, o_.parallel - n_running_))
      throw HttpError(503, "server_overloaded",
                      "the server is busy: " + std::to_string(queue_.size()) + " requests are waiting; retry later");
    job->submitted_ = Clock::now();
    queue_.emplace_back(job, std::move(spec));
  }
  cv_.notify_all();
  return job;
}

void Scheduler::drain() {
  std::unique_lock<std::mutex> lk(mu_);
  draining_ = true;
  idle_.wait(lk, [&] { return queue_.empty() && n_running_ == 0; });
}

Scheduler::Load Scheduler::load() const {
  Load l;
  {
    std::lock_guard<std::mutex> lk(mu_);
    l.queued = int64_t(queue_.size());
  }
  l.active = n_running_;
  l.kv_blocks_used = kv_used_;
  l.kv_blocks_total = engine_.kv_pool().n_blocks();
  l.resident = n_resident_;
  return l;
}

void Scheduler::loop() {
  for (;;) {
    std::vector<std::pair<std::shared_ptr<Job>, JobSpec>> taken;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty() || !running_.empty(); });
      if (stop_ && queue_.empty() && running_.empty()) return;
      while (int(running_.size() + taken.size()) < o_.parallel && !queue_.empty()) {
        taken.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      n_running_ = int64_t(running_.size() + taken.size());
    }
    for (auto& [job, spec] : taken) {
      auto r = std::make_unique<Running>(engine_);
      r->job = job;
      r->spec = std::move(spec);
      job->queue_s = seconds(job->submitted_, Clock::now());
      if (job->cancelled()) {
        job->stop_reason = "cancelled";
        job->finish();
        continue;
      }
      try {
        start(*r);
        running_.push_back(std::move(r));
      } catch (const Error& e) {
        finish(std::move(r), &e);
      }
    }
    if (!running_.empty()) step();
    kv_used_ = engine_.kv_pool().n_blocks() - engine_.kv_pool().free_blocks();
    std::lock_guard<std::mutex> lk(mu_);
    n_running_ = int64_t(running_.size());
    if (running_.empty() && queue_.empty()) idle_.notify_all();
  }
}

// Sets up a request: its prompt (after a named state's text), the longest resident prefix, then
// the prefix store's chunks.
void Scheduler::start(Running& r) {
  const Model& model = engine_.model();
  const Tokenizer& tok = model.tokenizer();
  JobSpec& s = r.spec;
  if (!s.state_path.empty()) {
    Sequence restored = engine_.new_sequence();
    const int64_t bt = engine_.kv_pool().shape().block_tokens;
    make_room(engine_.n_ctx() / bt + 1);
    // Into a fresh sequence: a state that fails any check leaves nothing behind.
    const State st = load_state_into(s.state_path, model, engine_.n_ctx(), restored, &engine_.threads());
    if (st.book) throw Error(ErrorKind::NotSupported, "states made with a KV budget cannot be continued by the server");
    std::vector<Token> body = st.tokens;
    if (!body.empty() && body.front() == tok.bos() && tok.add_bos()) body.erase(body.begin());
    s.tokens = prompt_tokens(tok, tok.decode(body, true) + s.prompt_text);
    keep_resident(std::move(restored));
  }
  if (s.tokens.empty()) throw Error(ErrorKind::InvalidArgument, "the prompt is empty");
  if (int64_t(s.tokens.size()) > engine_.n_ctx())
    throw Error(ErrorKind::ResourceExhausted, "the prompt has " + std::to_string(s.tokens.size()) +
                                                  " tokens; the context holds " + std::to_string(engine_.n_ctx()));
  for (Token t : s.tokens)
    if (t < 0 || t >= model.config().n_vocab)
      throw Error(ErrorKind::InvalidArgument, "token id " + std::to_string(t) + " is outside the vocabulary");
  // The longest resident prefix, leaving the last prompt token to compute (its logits are needed).
  size_t best = 0;
  Resident* from = nullptr;
  for (Resident& res : residents_) {
    const size_t c = std::min(common_prefix(res.seq.tokens(), s.tokens), s.tokens.size() - 1);
    if (c > best) best = c, from = &res;
  }
  if (from) {
    from->used = ++clock_;
    r.seq = from->seq.fork();
    r.seq.truncate(int64_t(best));
  }
  if (o_.cache) {
    const int64_t bt = engine_.kv_pool().shape().block_tokens;
    make_room(int64_t(s.tokens.size()) / bt + 2);
    o_.cache->load(r.seq, s.tokens);
  }
  r.fed = size_t(r.seq.size());
  r.job->prompt_tokens = int64_t(s.tokens.size());
  r.job->cached_tokens = r.seq.size();
  validate(s.sampling);
  r.sampler = std::make_unique<Sampler>(s.sampling);
  r.stream = std::make_unique<TextStream>(tok);
  r.stop = std::make_unique<StopText>(s.stop, r.on_text);
}

void Scheduler::step() {
  // Requests whose clients went away end here (their sequences stay for reuse).
  for (size_t i = 0; i < running_.size();) {
    if (running_[i]->job->cancelled()) {
      running_[i]->job->stop_reason = "cancelled";
      finish(std::move(running_[i]), nullptr);
      running_.erase(running_.begin() + long(i));
    } else {
      ++i;
    }
  }
  if (running_.empty()) return;
  std::vector<BatchItem> items;
  std::vector<Running*> owner;
  const int64_t bt = engine_.kv_pool().shape().block_tokens;
  int64_t blocks = 0;
  auto add = [&](Running& r, const Token* t, int64_t n, bool logits) {
    items.push_back(BatchItem{&r.seq, t, n, logits});
    owner.push_back(&r);
    blocks += (r.seq.size() % bt + n + bt - 1) / bt + 1;  // new blocks, and a shared one copied
  };
  for (auto& r : running_)
    if (!r->prefilling()) add(*r, &r->pending, 1, true);
  int64_t budget = o_.prefill_chunk;
  for (auto& r : running_) {
    if (!r->prefilling() || budget == 0) continue;
    const int64_t n = std::min<int64_t>(budget, int64_t(r->spec.tokens.size() - r->fed));
    add(*r, &r->spec.tokens[r->fed], n, r->fed + size_t(n) == r->spec.tokens.size());
    budget -= n;
  }
  make_room(blocks);
  const float* logits = nullptr;
  try {
    logits = engine_.forward_batch(items.data(), int(items.size()));
  } catch (const Error& e) {  // nothing was computed: end the requests of this pass
    for (Running* r : owner)
      for (auto& p : running_)
        if (p.get() == r) finish(std::move(p), &e);
    running_.erase(std::remove(running_.begin(), running_.end(), nullptr), running_.end());
    return;
  }
  const int n_vocab = engine_.model().config().n_vocab;
  for (size_t i = 0; i < items.size(); ++i) {
    Running& r = *owner[i];
    if (r.prefilling()) r.fed += size_t(items[i].n);
    if (!items[i].logits) continue;
    if (r.spec.max_tokens == 0) {
      if (!r.spec.save_path.empty()) save_state(snapshot(engine_.model(), r.seq, engine_.n_ctx(), logits), r.spec.save_path);
      r.job->stop_reason = "length";
      r.finished = true;
    } else {
      emit(r, logits);
    }
    logits += n_vocab;
  }
  for (auto& p : running_)
    if (p->finished) finish(std::move(p), nullptr);
  running_.erase(std::remove(running_.begin(), running_.end(), nullptr), running_.end());
}

// Samples the next token from the logits of r's last entry, as generate() does.
void Scheduler::emit(Running& r, const float* logits) {
  const Tokenizer& tok = engine_.model().tokenizer();
  const int n_vocab = engine_.model().config().n_vocab;
  Job& job = *r.job;
  // seq holds the prompt and every token generated before this one: the history, as in generate().
  const Token next = r.sampler->sample(logits, n_vocab, r.seq.tokens());
  const auto now = Clock::now();
  if (job.completion_tokens == 0) {  // no earlier call: an end-of-generation token ends the job
    r.first_token = now;
    job.ttft_s = seconds(job.submitted_, now);
  }
  bool stopped = false;
  if (tok.is_end_of_generation(next)) {
    job.stop_reason = "eos";
  } else {
    ++job.completion_tokens;
    Piece p;
    r.piece.clear();
    stopped = r.stop->append(r.text, r.stream->push(next));
    p.text = r.piece;
    if (r.spec.logprobs >= 0) {
      p.has_info = true;
      p.info = token_info(logits, n_vocab, next, r.spec.logprobs);
    }
    job.push(std::move(p));
    if (stopped) {
      job.stop_reason = "stop";
    } else if (r.spec.max_tokens >= 0 && job.completion_tokens >= r.spec.max_tokens) {
      job.stop_reason = "length";
    } else if (r.seq.size() + 1 > engine_.n_ctx()) {
      job.stop_reason = "context";
    } else {
      r.pending = next;
      return;
    }
  }
  r.finished = true;
  job.decode_s = seconds(r.first_token, now);
  r.piece.clear();
  if (!stopped && r.stop->append(r.text, r.stream->flush())) job.stop_reason = "stop";
  r.stop->finish(r.text);
  if (!r.piece.empty()) job.push(Piece{r.piece, false, {}});
}

void Scheduler::finish(std::unique_ptr<Running> r, const Error* error) {
  Job& job = *r->job;
  if (error) {
    job.failed = true;
    job.error_kind = error->kind();
    job.error = error->what();
  } else if (r->seq.size() > 0) {
    if (o_.cache) o_.cache->save(r->seq);
    keep_resident(std::move(r->seq));
  }
  job.finish();
}

void Scheduler::make_room(int64_t blocks) {
  KvPool& kv = engine_.kv_pool();
  while (kv.free_blocks() < blocks && !residents_.empty()) {
    auto lru = std::min_element(residents_.begin(), residents_.end(),
                                [](const Resident& a, const Resident& b) { return a.used < b.used; });
    residents_.erase(lru);
  }
  n_resident_ = int64_t(residents_.size());
}

void Scheduler::keep_resident(Sequence seq) {
  // A resident whose tokens this one continues adds nothing: it is replaced.
  for (size_t i = 0; i < residents_.size();) {
    const std::vector<Token>& t = residents_[i].seq.tokens();
    if (t.size() <= size_t(seq.size()) && common_prefix(t, seq.tokens()) == t.size())
      residents_.erase(residents_.begin() + long(i));
    else
      ++i;
  }
  residents_.push_back(Resident{std::move(seq), ++clock_});
  if (int(residents_.size()) > o_.max_residents)
    residents_.erase(std::min_element(residents_.begin(), residents_.end(),
                                      [](const Resident& a, const Resident& b) { return a.used < b.used; }));
  n_resident_ = int64_t(residents_.size());
}

}  // namespace kvstash::server
