// Memory read bandwidth for bench/speed.sh: N threads each sum their part of a buffer much larger
// than the caches (AVX2 loads where available); prints the best of several passes in GB/s.
//   kvstash_membw [threads] [MiB]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2"))) static uint64_t sum_range(const uint64_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  alignas(32) uint64_t l[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(l), _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  uint64_t s = l[0] + l[1] + l[2] + l[3];
  for (; i < n; ++i) s += p[i];
  return s;
}
#else
static uint64_t sum_range(const uint64_t* p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; ++i) s += p[i];
  return s;
}
#endif

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const size_t mib = argc > 2 ? size_t(std::atoll(argv[2])) : 512;
  const size_t n = mib * 1024 * 1024 / 8;
  std::vector<uint64_t> buf(n);
  for (size_t i = 0; i < n; ++i) buf[i] = i;
  double best = 0;
  uint64_t sink = 0;
  for (int pass = 0; pass < 8; ++pass) {
    std::vector<uint64_t> part(static_cast<size_t>(threads), 0);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        const size_t b = n * size_t(t) / size_t(threads), e = n * size_t(t + 1) / size_t(threads);
        part[size_t(t)] = sum_range(buf.data() + b, e - b);
      });
    for (auto& t : ts) t.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, double(n * 8) / s / 1e9);
    for (uint64_t v : part) sink += v;
  }
  std::printf("{\"threads\": %d, \"mib\": %zu, \"read_gb_per_s\": %.2f, \"sink\": %llu}\n", threads, mib,
              best, (unsigned long long)(sink & 1));
  return 0;
}
