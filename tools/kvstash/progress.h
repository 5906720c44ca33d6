// A progress bar on stderr for long prefills: tokens done, tokens/s, ETA. Silent when stderr is
// not a terminal.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <unistd.h>

namespace kvstash::cli {

class Progress {
 public:
  Progress() : enabled_(isatty(fileno(stderr))), start_(std::chrono::steady_clock::now()) {}
  void update(int64_t done, int64_t total) {
    if (!enabled_) return;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double rate = s > 0 ? double(done) / s : 0;
    const double eta = rate > 0 ? double(total - done) / rate : 0;
    const int width = 30, filled = total > 0 ? int(width * done / total) : width;
    std::fprintf(stderr, "\r[%.*s%*s] %lld/%lld tokens  %.0f tokens/s  ETA %.0fs ", filled,
                 "##############################", width - filled, "", (long long)done, (long long)total,
                 rate, eta);
    if (done == total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  bool enabled_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace kvstash::cli
