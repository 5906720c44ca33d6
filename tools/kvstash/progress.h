// A progress bar on stderr for long prefills: tokens done, tokens/s, ETA. Silent when stderr is
// not a terminal. The rate is that of the last few chunks, not the average since the start: the
// first chunk carries start-up costs and later chunks slow down as attention grows with the prefix.
#pragma once
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <utility>

namespace kvstash::cli {

class Progress {
 public:
  static constexpr size_t kRecent = 4;  // chunks the rate is measured over

  explicit Progress(FILE* out = stderr) : Progress(out, isatty(fileno(out)) != 0) {}
  Progress(FILE* out, bool enabled) : out_(out), enabled_(enabled), start_(std::chrono::steady_clock::now()) {}
  ~Progress() { clear(); }

  void update(int64_t done, int64_t total) {
    update_at(done, total, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }
  // `seconds` since any fixed point in time (tests pass their own clock).
  void update_at(int64_t done, int64_t total, double seconds) {
    if (!enabled_) return;
    samples_.emplace_back(seconds, done);
    if (samples_.size() > kRecent + 1) samples_.pop_front();
    if (done >= total) return clear();
    const int width = 30, filled = total > 0 ? int(width * done / total) : width;
    std::fprintf(out_, "\r\033[K[%.*s%*s] %lld/%lld tokens", filled, "##############################", width - filled, "",
                 (long long)done, (long long)total);
    const auto& [t0, d0] = samples_.front();
    if (samples_.size() > 1 && seconds > t0 && done > d0) {
      const double rate = double(done - d0) / (seconds - t0);
      std::fprintf(out_, "  %.0f tokens/s  ETA %.0fs", rate, double(total - done) / rate);
    }
    drawn_ = true;
    std::fflush(out_);
  }
  // Erases the bar (at the end, or before an error message).
  void clear() {
    if (!drawn_) return;
    std::fprintf(out_, "\r\033[K");
    std::fflush(out_);
    drawn_ = false;
  }

 private:
  FILE* out_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::deque<std::pair<double, int64_t>> samples_;  // (seconds, tokens done) of the last updates
};

}  // namespace kvstash::cli
