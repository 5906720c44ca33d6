// A persistent pool of worker threads, passed explicitly to whoever needs it.
// parallel_for splits [0, n) into contiguous chunks that the threads claim one at a time (four
// per thread, so a thread the OS has descheduled does not hold up the others); each index runs
// exactly once, and what an index computes must not depend on which thread runs it nor on where
// the chunk boundaries fall. thread_index only selects per-thread scratch space.
// parallel_steps runs a sequence of such loops, each starting when the one before has finished,
// in one hand-off: the threads go from step to step without returning to the caller (a decode
// token is one call instead of several per layer).
//
// Waking: workers spin briefly on an atomic generation counter after each job (the next job
// usually arrives within microseconds) and only then sleep on a condition variable; the caller
// touches the mutex only when a worker is asleep. The caller takes chunks like the workers and
// spins (then yields) until the others are done.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
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
    run(&n, 1, [](void* f, int, int64_t b, int64_t e, int t) { (*static_cast<Fn*>(f))(b, e, t); },
        const_cast<void*>(static_cast<const void*>(&fn)));
  }
  // Steps 0..count-1 in order: fn(step, begin, end, thread_index) on disjoint ranges covering
  // [0, items[step]) of each step, no range of a step starting before every range of the steps
  // before it has returned. As parallel_for otherwise (exceptions skip all remaining ranges).
  template <class F>
  void parallel_steps(const int64_t* items, int count, F&& fn) {
    using Fn = std::remove_reference_t<F>;
    run(items, count, [](void* f, int s, int64_t b, int64_t e, int t) { (*static_cast<Fn*>(f))(s, b, e, t); },
        const_cast<void*>(static_cast<const void*>(&fn)));
  }

 private:
  using Trampoline = void (*)(void*, int, int64_t, int64_t, int);
  static constexpr int kMaxSteps = 4096;  // per job; longer lists run as several jobs
  void run(const int64_t* items, int count, Trampoline call, void* fn);
  void run_job(const int64_t* items, int offset, int count, Trampoline call, void* fn);
  void worker(int index);
  void publish(uint64_t gen);
  void run_chunks(uint64_t gen, int index);
  int step_of(int64_t chunk) const;
  uint64_t wait_progress(uint64_t v, int64_t target, bool or_claim, int index);
  int n_threads_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable start_cv_;
  // The job: read by a thread only after it has claimed one of the job's chunks (the job cannot
  // end before that chunk is done, so these stay the job's).
  Trampoline job_call_ = nullptr;
  void* job_fn_ = nullptr;
  const int64_t* job_items_ = nullptr;
  int job_offset_ = 0;
  // Read before a claim too (then checked by the claim): atomics, and never reallocated.
  std::atomic<int> job_steps_{0};
  std::unique_ptr<std::atomic<int64_t>[]> first_chunk_;  // first chunk of each step, then the total
  alignas(64) std::atomic<uint64_t> generation_{0};
  alignas(64) std::atomic<uint64_t> next_chunk_{0};  // tag | chunk count | next unclaimed chunk
  alignas(64) std::atomic<int64_t> done_chunks_{0};
  alignas(64) std::atomic<int> sleepers_{0};
  std::atomic<int> done_waiters_{0};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;  // written by the one thread that set failed_
  std::atomic<bool> stop_{false};
};

}  // namespace kvstash
