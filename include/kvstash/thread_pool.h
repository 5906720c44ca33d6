// A persistent pool of worker threads, passed explicitly to whoever needs it.
// parallel_for splits [0, n) into contiguous chunks that the threads claim one at a time (a few
// per thread, so a thread the OS has descheduled does not hold up the others); each index runs
// exactly once, and what an index computes must not depend on which thread runs it nor on where
// the chunk boundaries fall. thread_index only selects per-thread scratch space.
//
// Waking: workers spin briefly on an atomic generation counter after each job (a decode step calls
// parallel_for a few hundred times per token, so the next job usually arrives within microseconds)
// and only then sleep on a condition variable; the caller touches the mutex only when a worker is
// asleep. The caller runs chunk 0 itself and spins (then yields) until the others are done.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <type_traits>
#include <mutex>
#include <thread>
#include <vector>

namespace kvstash {

class ThreadPool {
 public:
  static constexpr int kMaxThreads = 1024;
  explicit ThreadPool(int n_threads);  // n_threads <= 0: hardware concurrency
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  // fn(begin, end, thread_index) on disjoint ranges covering [0, n); returns when all are done.
  // Takes any callable by reference (no std::function, so no allocation per call). If fn throws,
  // the remaining ranges are skipped and the first exception is rethrown here once every thread
  // has left the job. One job at a time: callers sharing a pool must not call it concurrently.
  template <class F>
  void parallel_for(int64_t n, F&& fn) {
    using Fn = std::remove_reference_t<F>;
    run(n, [](void* f, int64_t b, int64_t e, int t) { (*static_cast<Fn*>(f))(b, e, t); },
        const_cast<void*>(static_cast<const void*>(&fn)));
  }

 private:
  using Trampoline = void (*)(void*, int64_t, int64_t, int);
  void run(int64_t n, Trampoline call, void* fn);
  void worker(int index);
  void publish();
  void run_chunks(uint64_t gen, int index);
  int n_threads_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable start_cv_;
  Trampoline job_call_ = nullptr;
  void* job_fn_ = nullptr;
  int64_t job_n_ = 0;
  int64_t job_chunks_ = 0;
  alignas(64) std::atomic<uint64_t> generation_{0};
  // (generation << 32) | next unclaimed chunk: a claim succeeds only for the current job.
  alignas(64) std::atomic<uint64_t> next_chunk_{0};
  alignas(64) std::atomic<int64_t> done_chunks_{0};
  alignas(64) std::atomic<int> sleepers_{0};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;  // written by the one thread that set failed_
  std::atomic<bool> stop_{false};
};

}  // namespace kvstash
