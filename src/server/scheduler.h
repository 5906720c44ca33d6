// Continuous batching for the server: up to `parallel` requests share one engine and its KV pool.
// One thread runs the passes; each pass is one Engine::forward_batch over the next token of every
// decoding request plus chunks of waiting prompts (so a long prompt does not stall the others).
// The engine is batch-invariant, so a request's tokens do not depend on what runs beside it.
//
// Prefix reuse: finished requests leave their sequences in the pool ("resident", dropped least
// recently used when blocks run short); a new request forks the resident with the longest common
// prefix (copy-on-write, no K/V copied), then loads further chunks from the prefix store.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kvstash/engine.h"
#include "kvstash/error.h"
#include "kvstash/prefix_cache.h"
#include "kvstash/sampler.h"

namespace kvstash::server {

struct JobSpec {
  std::vector<Token> tokens;  // the prompt (with state_path: the text continuing the state's, see below)
  std::string prompt_text;    // with state_path: appended to the state's text and tokenized again
  std::string state_path;     // continue this .kvs state ("" none); loaded when the job starts
  std::string save_path;      // prefill only (max_tokens 0) and save the state here, atomically
  int64_t max_tokens = 16;    // -1: until end of generation or a full context
  SamplingParams sampling;
  std::vector<std::string> stop;
  int logprobs = -1;  // alternatives reported per token; -1: no log-probabilities
};

struct TokenInfo {  // a generated token's log-probability and the top alternatives (logprobs >= 0)
  Token id = 0;
  double logprob = 0;
  std::vector<std::pair<Token, double>> top;
};

struct Piece {  // what one generated token added: text (may be empty while held back) and info
  std::string text;
  bool has_info = false;
  TokenInfo info;
};

// A request's progress, shared by the scheduler (writer) and the HTTP thread (reader).
class Job {
 public:
  // Waits until pieces or the end are there; moves the pieces into `out`. False once done and empty.
  bool next(std::vector<Piece>& out);
  void cancel() { cancelled_ = true; }  // the client went away: the scheduler drops the job
  bool cancelled() const { return cancelled_; }

  // Valid once next() returned false.
  bool failed = false;
  ErrorKind error_kind = ErrorKind::Internal;
  std::string error;
  std::string stop_reason;  // generate()'s: "length", "eos", "stop", "context"
  int64_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  double queue_s = 0, ttft_s = 0, decode_s = 0;  // waiting; submission to first token; first to last token

 private:
  friend class Scheduler;
  void push(Piece p);
  void finish();
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Piece> pieces_;
  bool done_ = false;
  std::atomic<bool> cancelled_{false};
  std::chrono::steady_clock::time_point submitted_;
};

struct SchedulerOptions {
  int parallel = 4;          // requests computed at once
  int queue_limit = 64;      // requests waiting beyond those; more are refused
  int64_t prefill_chunk = 256;  // prompt tokens per pass, all waiting prompts together
  int max_residents = 64;    // finished sequences kept for reuse
  PrefixCache* cache = nullptr;  // the prefix store, or none
};

class Scheduler {
 public:
  static constexpr int kMaxParallel = 256;  // decode rows per pass leave room for prefill chunks
  Scheduler(Engine& engine, const SchedulerOptions& options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a job. Throws HttpError 503 when `queue_limit` jobs wait already, or once draining.
  std::shared_ptr<Job> submit(JobSpec spec);
  // Refuses new jobs and returns when every queued and running job has finished.
  void drain();

  struct Load {
    int64_t active = 0, queued = 0, kv_blocks_used = 0, kv_blocks_total = 0, resident = 0;
  };
  Load load() const;

 private:
  struct Running;
  void loop();
  void start(Running& r);
  void step();
  void emit(Running& r, const float* logits);
  void finish(std::unique_ptr<Running> r, const Error* error);
  void make_room(int64_t blocks);  // drops least recently used residents until `blocks` are free (or none is left)
  void keep_resident(Sequence seq);

  Engine& engine_;
  SchedulerOptions o_;
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_;
  std::deque<std::pair<std::shared_ptr<Job>, JobSpec>> queue_;
  std::vector<std::unique_ptr<Running>> running_;  // the loop thread's; its size is read under mu_
  std::atomic<int64_t> n_running_{0}, kv_used_{0}, n_resident_{0};
  struct Resident {
    Sequence seq;
    uint64_t used;
  };
  std::vector<Resident> residents_;
  uint64_t clock_ = 0;
  bool draining_ = false, stop_ = false;
  std::thread thread_;
};

}  // namespace kvstash::server
