#include "context.h"

#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "kvstash/error.h"

namespace kvstash::cli {

int64_t context_size(const ContextRequest& r) {
  const std::string train = std::to_string(r.n_ctx_train);
  if (r.ctx_size > 0) {
    if (r.ctx_size > r.n_ctx_train && !r.beyond_training)
      throw Error(ErrorKind::InvalidArgument, "--ctx-size " + std::to_string(r.ctx_size) +
                                                  " is beyond the model's training context of " + train +
                                                  " tokens (add --ctx-beyond-training to use it anyway)");
    return r.ctx_size;
  }
  if (r.must_fit > r.n_ctx_train && !r.beyond_training)
    throw Error(ErrorKind::InvalidArgument, r.what + " of " + std::to_string(r.must_fit) +
                                                " tokens is beyond the model's training context of " + train +
                                                " tokens (add --ctx-beyond-training to run it anyway)");
  int64_t n = r.wanted < 0 ? r.n_ctx_train : r.wanted;
  if (!r.beyond_training) n = std::min(n, r.n_ctx_train);
  return std::max<int64_t>({n, r.must_fit, 1});
}

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return int(std::max(1u, std::thread::hardware_concurrency()));
}

int thread_count(int requested, bool oversubscribe) {
  if (requested < 0) throw Error(ErrorKind::InvalidArgument, "--threads must be >= 0, got " + std::to_string(requested));
  const int cores = available_cores();
  if (requested == 0) return cores;
  if (requested <= cores || oversubscribe) return requested;
  // More threads than cores only wait on each other: every step of the forward pass joins them all.
  std::fprintf(stderr, "kvstash: note: using %d threads, not %d: %d cores are available (--threads-oversubscribe to insist)\n",
               cores, requested, cores);
  return cores;
}

}  // namespace kvstash::cli
