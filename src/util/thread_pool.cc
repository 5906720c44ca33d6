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
// Chunks of a step per thread: a few, so that a thread the OS has descheduled holds up little
// work, and not many, since each claim is an atomic operation on a line all threads share.
constexpr int64_t kChunksPerThread = 4;
constexpr int64_t kMaxChunksPerStep = 128;
// How long a thread inside a job spins for the step before its chunk (or the job's end) before the
// caller yields and a worker sleeps: longer than most steps of a decode token.
constexpr auto kWaitSpinTime = std::chrono::microseconds(200);

// next_chunk_: tag (the job's generation, 24 bits) | chunk count (20 bits) | next unclaimed chunk.
constexpr int kTagShift = 40, kCountShift = 20;
constexpr uint64_t kField = (uint64_t(1) << 20) - 1;
// First item of chunk i of a step of n items in `chunks` chunks. With many items per chunk the
// chunks shrink (sizes falling linearly to about a tenth of the mean): threads take the big ones
// first, and the last ones, which decide when the step ends, are short.
int64_t chunk_begin(int64_t n, int64_t i, int64_t chunks) {
  if (n < 8 * chunks) return n * i / chunks;
  // f(x) = 1.1x - 0.1x^2 ... times n: f'(x) falls from 1.9 to 0.1 times the mean chunk size.
  const int64_t m = chunks, left = m - i;
  return n - (n * left * (m + 9 * left)) / (10 * m * m);
}

uint64_t tag_of(uint64_t v) { return v >> kTagShift; }
int64_t count_of(uint64_t v) { return int64_t((v >> kCountShift) & kField); }
int64_t next_of(uint64_t v) { return int64_t(v & kField); }
}  // namespace

ThreadPool::ThreadPool(int n_threads) : first_chunk_(new std::atomic<int64_t>[kMaxSteps + 1]) {
  if (n_threads <= 0) n_threads = std::max(1u, std::thread::hardware_concurrency());
  if (n_threads > kMaxThreads)
    throw Error(ErrorKind::InvalidArgument, std::to_string(n_threads) + " threads: at most " +
                                                std::to_string(kMaxThreads) + " are supported");
  n_threads_ = n_threads;
  for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_seq_cst);
  generation_.store((generation_.load(std::memory_order_relaxed) + 1) & 0xFFFFFF, std::memory_order_seq_cst);
  {
    std::lock_guard<std::mutex> lock(mu_);
  }
  start_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

// Makes the new generation visible and wakes sleeping workers. A worker increments sleepers_
// before its last look at generation_ (both seq_cst), so either it sees the new generation or we
// see it asleep and notify under the mutex it waits with.
void ThreadPool::publish(uint64_t gen) {
  generation_.store(gen, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> lock(mu_); }
    start_cv_.notify_all();
  }
}

void ThreadPool::run(const int64_t* items, int count, Trampoline call, void* fn) {
  for (int at = 0; at < count; at += kMaxSteps) run_job(items, at, std::min(count - at, kMaxSteps), call, fn);
}

void ThreadPool::run_job(const int64_t* items, int offset, int count, Trampoline call, void* fn) {
  int busy = 0;  // steps with more than one item
  for (int s = 0; s < count; ++s) busy += items[offset + s] > 1;
  if (n_threads_ == 1 || busy == 0) {
    for (int s = 0; s < count; ++s)
      if (items[offset + s] > 0) call(fn, offset + s, 0, items[offset + s], 0);
    return;
  }
  const int64_t per_step = std::min<int64_t>(int64_t(n_threads_) * kChunksPerThread, kMaxChunksPerStep);
  int64_t chunks = 0;
  for (int s = 0; s < count; ++s) {
    first_chunk_[s].store(chunks, std::memory_order_relaxed);
    chunks += std::min(std::max<int64_t>(items[offset + s], 0), per_step);
  }
  first_chunk_[count].store(chunks, std::memory_order_relaxed);
  const uint64_t gen = (generation_.load(std::memory_order_relaxed) + 1) & 0xFFFFFF;
  job_call_ = call;
  job_fn_ = fn;
  job_items_ = items;
  job_offset_ = offset;
  job_steps_.store(count, std::memory_order_relaxed);
  done_chunks_.store(0, std::memory_order_relaxed);
  failed_.store(false, std::memory_order_relaxed);
  error_ = nullptr;
  next_chunk_.store((gen << kTagShift) | (uint64_t(chunks) << kCountShift), std::memory_order_release);
  publish(gen);
  run_chunks(gen, 0);
  const uint64_t end = next_chunk_.load(std::memory_order_acquire);
  wait_progress(end, chunks, false, 0);
  job_fn_ = nullptr;
  if (failed_.load(std::memory_order_acquire)) std::rethrow_exception(std::exchange(error_, nullptr));
}

int ThreadPool::step_of(int64_t chunk) const {
  int lo = 0, hi = job_steps_.load(std::memory_order_relaxed);  // first_chunk_[lo] <= chunk < first_chunk_[hi]
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    (first_chunk_[mid].load(std::memory_order_relaxed) <= chunk ? lo : hi) = mid;
  }
  return lo;
}

// Chunks are claimed in order, and only once the steps before theirs are done: a thread waiting
// for a step holds no claim, so a waiter that the OS deschedules (or that sleeps) holds up no one.
// Until a claim succeeds, what a thread reads of the job may belong to a newer job; the claim (a
// compare-exchange on the whole word, tag included) fails then, and the thread reads again. After
// it, the job cannot end before the claimed chunk is done, so job_* stay the claimed job's.
void ThreadPool::run_chunks(uint64_t gen, int index) {
  uint64_t v = next_chunk_.load(std::memory_order_acquire);
  for (;;) {
    if (tag_of(v) != gen) return;
    const int64_t c = next_of(v);
    if (c >= count_of(v)) return;
    const int step = step_of(c);
    const int64_t first = first_chunk_[step].load(std::memory_order_relaxed);
    if (done_chunks_.load(std::memory_order_acquire) < first) {
      v = wait_progress(v, first, true, index);
      continue;
    }
    if (!next_chunk_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
    const int64_t chunks = first_chunk_[step + 1].load(std::memory_order_relaxed) - first;
    const int64_t n = job_items_[job_offset_ + step], i = c - first;
    const int64_t begin = chunk_begin(n, i, chunks), end = chunk_begin(n, i + 1, chunks);
    // An exception must not leave a worker (std::terminate) nor unwind the caller while other
    // threads still run the job: keep the first, skip the remaining chunks, rethrow at the end.
    if (begin < end && !failed_.load(std::memory_order_relaxed)) {
      try {
        job_call_(job_fn_, job_offset_ + step, begin, end, index);
      } catch (...) {
        if (!failed_.exchange(true, std::memory_order_acq_rel)) error_ = std::current_exception();
      }
    }
    done_chunks_.fetch_add(1, std::memory_order_seq_cst);
    if (done_waiters_.load(std::memory_order_seq_cst) > 0) done_chunks_.notify_all();
    v = next_chunk_.load(std::memory_order_acquire);
  }
}

// Waits until done_chunks_ reaches target or (if `or_claim`) next_chunk_ moves from v; returns
// next_chunk_. Spins first (the wait is usually for the last chunk of a step, microseconds away).
// Then the caller (thread 0) yields and a worker sleeps: on a loaded machine a waiting worker must
// not take the CPU the others need, but the caller must stay awake, or the workers could run whole
// steps while it wakes up. A sleeper counts itself before its last look (both seq_cst), so either
// it sees the progress or the thread that made it sees the sleeper and notifies; every chunk done
// notifies, and a moved next_chunk_ is always followed by a chunk done.
uint64_t ThreadPool::wait_progress(uint64_t v, int64_t target, bool or_claim, int index) {
  const auto start = std::chrono::steady_clock::now();
  for (unsigned spins = 1;; ++spins) {
    const uint64_t now = next_chunk_.load(std::memory_order_acquire);
    if (done_chunks_.load(std::memory_order_acquire) >= target || (or_claim && now != v)) return now;
    if (spins % 256 == 0 && std::chrono::steady_clock::now() - start > kWaitSpinTime) break;
    KVSTASH_PAUSE();
  }
  if (index == 0) {
    for (;;) {
      const uint64_t now = next_chunk_.load(std::memory_order_acquire);
      if (done_chunks_.load(std::memory_order_acquire) >= target || (or_claim && now != v)) return now;
      std::this_thread::yield();
    }
  }
  done_waiters_.fetch_add(1, std::memory_order_seq_cst);
  uint64_t now;
  for (;;) {
    const int64_t d = done_chunks_.load(std::memory_order_seq_cst);
    now = next_chunk_.load(std::memory_order_seq_cst);
    if (d >= target || (or_claim && now != v)) break;
    done_chunks_.wait(d, std::memory_order_seq_cst);
  }
  done_waiters_.fetch_sub(1, std::memory_order_relaxed);
  return now;
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
