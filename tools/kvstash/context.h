// How big a KV cache a command gets: sized to its work, never beyond the model's training context
// unless the user says so.
#pragma once
#include <cstdint>
#include <string>

namespace kvstash::cli {

struct ContextRequest {
  int64_t ctx_size = 0;  // --ctx-size; 0: sized to the work
  bool beyond_training = false;
  int64_t n_ctx_train = 0;  // the model's training context
  int64_t wanted = 0;       // tokens the work may reach; -1: as many as allowed (-n -1)
  int64_t must_fit = 0;     // tokens that must fit (the prompt or prefix)
  std::string what;         // "prompt", "prefix", ... for messages
};

// The context: --ctx-size if given, else `wanted` capped at the training context (at least
// must_fit). Throws InvalidArgument (naming --ctx-beyond-training) when --ctx-size or must_fit goes
// beyond the training context without the override.
int64_t context_size(const ContextRequest& r);

// Worker threads for --threads n (0: all available cores). More than the cores available are cut
// to that count with a one-line note on stderr unless oversubscribe.
int thread_count(int requested, bool oversubscribe);
int available_cores();

}  // namespace kvstash::cli
