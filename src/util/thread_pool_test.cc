// ThreadPool::parallel_steps: every index of every step runs exactly once, no range of a step
// starts before the steps before it are done, exceptions reach the caller and the pool stays
// usable; jobs longer than one internal job (4096 steps) keep that order.
#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "kvstash/error.h"
#include "kvstash/thread_pool.h"

namespace kvstash {
namespace {

// Runs steps of the given sizes; checks order and coverage.
void check_steps(ThreadPool& pool, const std::vector<int64_t>& items) {
  const int count = int(items.size());
  std::vector<std::vector<std::atomic<int>>> hits(items.size());
  std::vector<std::atomic<int64_t>> done(items.size());
  for (size_t s = 0; s < items.size(); ++s) hits[s] = std::vector<std::atomic<int>>(size_t(std::max<int64_t>(items[s], 0)));
  std::atomic<bool> early{false};
  pool.parallel_steps(items.data(), count, [&](int step, int64_t b, int64_t e, int thread) {
    ASSERT_GE(thread, 0);
    ASSERT_LT(thread, pool.size());
    if (step > 0 && done[size_t(step - 1)].load() != std::max<int64_t>(items[size_t(step - 1)], 0)) early = true;
    for (int64_t i = b; i < e; ++i) ++hits[size_t(step)][size_t(i)];
    if (step % 3 == 0) std::this_thread::yield();  // let the others overtake, if they could
    done[size_t(step)] += e - b;
  });
  EXPECT_FALSE(early) << "a step started before the one before it was done";
  for (size_t s = 0; s < items.size(); ++s)
    for (const auto& h : hits[s]) ASSERT_EQ(h.load(), 1) << "step " << s;
}

TEST(ThreadPoolSteps, EveryIndexOnceAndStepsInOrder) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    check_steps(pool, {1, 5, 0, 1, 1000, 3, 64, 1, 2});
    check_steps(pool, {7});
    check_steps(pool, {});
    // Longer than one internal job.
    std::vector<int64_t> many(5000);
    for (size_t i = 0; i < many.size(); ++i) many[i] = int64_t(i % 5);
    check_steps(pool, many);
  }
}

TEST(ThreadPoolSteps, ExceptionReachesTheCallerAndLaterStepsAreSkipped) {
  ThreadPool pool(4);
  const std::vector<int64_t> items = {100, 100, 100};
  std::atomic<int64_t> last_step{0};
  try {
    pool.parallel_steps(items.data(), 3, [&](int step, int64_t b, int64_t e, int) {
      if (step == 1 && b <= 50 && 50 < e) throw Error(ErrorKind::Internal, "boom");
      if (step == 2) last_step += e - b;
    });
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "boom");
  }
  EXPECT_EQ(last_step.load(), 0);
  check_steps(pool, {10, 10});  // still usable
}

TEST(ThreadPoolSteps, ManyShortJobsInARow) {
  ThreadPool pool(3);
  std::atomic<int64_t> sum{0};
  const std::vector<int64_t> items = {2, 1, 3};
  for (int i = 0; i < 20000; ++i)
    pool.parallel_steps(items.data(), 3, [&](int step, int64_t b, int64_t e, int) { sum += (step + 1) * (e - b); });
  EXPECT_EQ(sum.load(), 20000 * (2 + 2 + 9));
}

}  // namespace
}  // namespace kvstash
