#include "kvstash/thread_pool.h"

#include "kvstash/error.h"

#include <algorithm>
#include <chrono>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KVSTASH_PAUSE() _mm_pause()
#else
#define KVSTASH_PAUSE() ((void)0)
#endif

namespace kvstash {

namespace {
// How long a worker spins for the next job before it sleeps.
constexpr auto kSpinTime = std::chrono::microseconds(50);
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = std::max(1u, std::thread::hardware_concurrency());
  if (n_threads > kMaxThreads)
    throw Error(ErrorKind::InvalidArgument, std::to_string(n_threads) + " threads: at most " +
                                                std::to_string(kMaxThreads) + " are supported");
  n_threads_ = n_threads;
  for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_seq_cst);
  generation_.store((generation_.load(std::memory_order_relaxed) + 1) & 0xFFFFFFFF,
                    std::memory_order_seq_cst);
  {
    std::lock_guard<std::mutex> lock(mu_);
  }
  start_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

// next_chunk_ packs (generation & 0xFFFFFF) << 40 | chunk count << 20 | next unclaimed chunk, so a
// claim (one compare-exchange) is valid only for the job it was published with; until that claimed
// chunk is done the caller cannot move on, so job_call_, job_fn_ and job_n_ stay that job's.
constexpr uint64_t kGenShift = 40, kCountShift = 20, kField = (uint64_t(1) << 20) - 1;

// Claims chunks of the job of generation gen until none is left (or the job is over).
void ThreadPool::run_chunks(uint64_t gen, int index) {
  const uint64_t tag = (gen & 0xFFFFFF) << kGenShift;
  uint64_t v = next_chunk_.load(std::memory_order_acquire);
  for (;;) {
    if ((v >> kGenShift) << kGenShift != tag) return;
    const int64_t count = int64_t((v >> kCountShift) & kField), c = int64_t(v & kField);
    if (c >= count) return;
    if (!next_chunk_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel)) continue;
    const int64_t n = job_n_;
    const int64_t begin = n * c / count, end = n * (c + 1) / count;
    // An exception must not leave a worker (std::terminate) nor unwind the caller while other
    // threads still run the job: keep the first, skip the remaining chunks, rethrow at the end.
    if (begin < end && !failed_.load(std::memory_order_relaxed)) {
      try {
        job_call_(job_fn_, begin, end, index);
      } catch (...) {
        if (!failed_.exchange(true, std::memory_order_acq_rel)) error_ = std::current_exception();
      }
    }
    done_chunks_.fetch_add(1, std::memory_order_acq_rel);
    v = next_chunk_.load(std::memory_order_acquire);
  }
}

// Makes the new generation visible and wakes sleeping workers. A worker increments sleepers_
// before its last look at generation_ (both seq_cst), so either it sees the new generation or we
// see it asleep and notify under the mutex it waits with.
void ThreadPool::publish() {
  generation_.store((generation_.load(std::memory_order_relaxed) + 1) & 0xFFFFFFFF,
                    std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> lock(mu_); }
    start_cv_.notify_all();
  }
}

void ThreadPool::run(int64_t n, Trampoline call, void* fn) {
  if (n <= 0) return;
  if (n_threads_ == 1 || n == 1) {
    call(fn, 0, n, 0);
    return;
  }
  const uint64_t gen = (generation_.load(std::memory_order_relaxed) + 1) & 0xFFFFFFFF;
  job_call_ = call;
  job_fn_ = fn;
  job_n_ = n;
  job_chunks_ = std::min<int64_t>(n, int64_t(n_threads_) * 8);
  done_chunks_.store(0, std::memory_order_relaxed);
  failed_.store(false, std::memory_order_relaxed);
  error_ = nullptr;
  next_chunk_.store(((gen & 0xFFFFFF) << kGenShift) | (uint64_t(job_chunks_) << kCountShift),
                    std::memory_order_release);
  publish();
  run_chunks(gen, 0);
  for (unsigned spins = 0; done_chunks_.load(std::memory_order_acquire) != job_chunks_; ++spins) {
    if (spins < 4096) KVSTASH_PAUSE();
    else std::this_thread::yield();
  }
  job_fn_ = nullptr;
  if (failed_.load(std::memory_order_acquire)) std::rethrow_exception(std::exchange(error_, nullptr));
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    if (gen == seen) {
      const auto start = std::chrono::steady_clock::now();
      for (unsigned spins = 1;; ++spins) {
        KVSTASH_PAUSE();
        gen = generation_.load(std::memory_order_acquire);
        if (gen != seen) break;
        if (spins % 256 == 0 && std::chrono::steady_clock::now() - start > kSpinTime) {
          std::unique_lock<std::mutex> lock(mu_);
          sleepers_.fetch_add(1, std::memory_order_seq_cst);
          while ((gen = generation_.load(std::memory_order_seq_cst)) == seen) start_cv_.wait(lock);
          sleepers_.fetch_sub(1, std::memory_order_relaxed);
          break;
        }
      }
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = gen;
    run_chunks(gen, index);
  }
}

}  // namespace kvstash
