// kvstash_state_bench: time to first token after a long prefix, recomputed vs loaded from a .kvs
// file (issue 3, point 8). One invocation is one round: for every prefix length it
//   1. recomputes: forward the prefix from an empty sequence (512-token chunks, as `run` does),
//      forward the continuation, sample the first token greedily;
//   2. saves the state (snapshot taken between the prefix and the continuation, not timed as part
//      of the recompute) with save_state (temp file, fsync, rename, fsync dir);
//   3. loads it with a warm page cache (load_state + LoadedPrefix + generate 1 token), then cold
//      (fsync + posix_fadvise DONTNEED on the file), then after `echo 3 > /proc/sys/vm/drop_caches`
//      when that is permitted;
// and prints one JSON object per prefix length on stdout. `--memcpy` measures memcpy bandwidth.
// bench/state_bench.sh runs rounds of this and of bench/state_llamacpp.py and writes the table.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "kvstash/engine.h"
#include "kvstash/error.h"
#include "kvstash/generate.h"
#include "kvstash/model.h"
#include "kvstash/prefix.h"
#include "kvstash/sampler.h"
#include "kvstash/state.h"

using namespace kvstash;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// memcpy bandwidth: bytes copied per second (each byte read once and written once), one thread,
// buffers far larger than the caches.
json measure_memcpy(size_t bytes, int reps) {
  std::vector<char> src(bytes), dst(bytes);
  for (size_t i = 0; i < bytes; i += 4096) src[i] = char(i >> 12), dst[i] = 0;  // fault the pages in
  std::memset(src.data(), 0x5a, bytes);
  std::memcpy(dst.data(), src.data(), bytes);  // warm-up
  std::vector<double> gbs;
  for (int r = 0; r < reps; ++r) {
    src[size_t(r) * 64 % bytes] = char(r);
    const auto t0 = Clock::now();
    std::memcpy(dst.data(), src.data(), bytes);
    const double s = ms_since(t0) / 1000.0;
    gbs.push_back(double(bytes) / s / 1e9);
  }
  volatile char sink = dst[bytes / 2];
  (void)sink;
  return {{"kind", "memcpy"}, {"bytes", bytes}, {"reps", reps}, {"gb_per_s_all", gbs},
          {"gb_per_s_median", median(gbs)}, {"gb_per_s_max", *std::max_element(gbs.begin(), gbs.end())}};
}

// Fraction of the file's pages in the page cache.
double resident_fraction(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat st;
  if (::fstat(fd, &st) != 0 || st.st_size == 0) {
    ::close(fd);
    return -1;
  }
  const size_t size = size_t(st.st_size);
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return -1;
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec((size + page - 1) / page);
  double frac = -1;
  if (::mincore(p, size, vec.data()) == 0) {
    size_t in = 0;
    for (unsigned char c : vec) in += c & 1;
    frac = double(in) / double(vec.size());
  }
  ::munmap(p, size);
  return frac;
}

// fsync, then ask the kernel to drop the file's pages. Returns an error text or "".
std::string evict_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::string("open: ") + std::strerror(errno);
  std::string err;
  if (::fsync(fd) != 0) err = std::string("fsync: ") + std::strerror(errno);
  const int rc = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  if (rc != 0) err = std::string("posix_fadvise: ") + std::strerror(rc);
  ::close(fd);
  return err;
}

// sync + echo 3 > /proc/sys/vm/drop_caches. Returns an error text or "".
std::string drop_caches() {
  ::sync();
  const int fd = ::open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return std::string("cannot open /proc/sys/vm/drop_caches: ") + std::strerror(errno);
  const ssize_t n = ::write(fd, "3\n", 2);
  const int err = errno;
  ::close(fd);
  if (n != 2) return std::string("cannot write /proc/sys/vm/drop_caches: ") + std::strerror(err);
  return "";
}

// Plain write(2) of `bytes` to a new file, then fsync: where the time of a save goes.
json raw_write(const std::string& path, size_t bytes) {
  std::vector<char> buf(bytes);
  for (size_t i = 0; i < bytes; ++i) buf[i] = char(i * 131 + (i >> 9));
  ::unlink(path.c_str());
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error(path + ": cannot create: " + std::strerror(errno));
  const auto t0 = Clock::now();
  for (size_t done = 0; done < bytes;) {
    const ssize_t n = ::write(fd, buf.data() + done, bytes - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      throw std::runtime_error(path + ": write failed: " + std::strerror(errno));
    }
    done += size_t(n);
  }
  const double write_ms = ms_since(t0);
  const auto t1 = Clock::now();
  ::fsync(fd);
  const double fsync_ms = ms_since(t1);
  ::close(fd);
  ::unlink(path.c_str());
  return {{"write_ms", write_ms}, {"fsync_ms", fsync_ms}};
}

struct LoadRun {
  double load_state_ms = 0, loaded_prefix_ms = 0, generate_ms = 0, total_ms = 0;
  double resident_before = -1;
  Token first = -1;
  int64_t reused = 0;
  json to_json() const {
    return {{"load_state_ms", load_state_ms}, {"loaded_prefix_ms", loaded_prefix_ms},
            {"generate_ms", generate_ms}, {"ttft_ms", total_ms}, {"resident_before", resident_before},
            {"first_token", first}, {"reused_tokens", reused}};
  }
};

// load_state + LoadedPrefix (validate, restore into the pool) + generate the first token; fused:
// LoadedPrefix(engine, path) instead, one pass over the K/V (its time is all in loaded_prefix_ms).
LoadRun load_and_continue(Engine& engine, const std::string& path, const std::string& continuation,
                          bool fused = false) {
  LoadRun r;
  r.resident_before = resident_fraction(path);
  GenerateOptions o;
  o.n_predict = 1;
  o.sampling.temperature = 0;
  const auto t0 = Clock::now();
  {
    const State state = fused ? State() : load_state(path);
    r.load_state_ms = ms_since(t0);
    const auto t1 = Clock::now();
    LoadedPrefix prefix = fused ? LoadedPrefix(engine, path) : LoadedPrefix(engine, state);
    r.loaded_prefix_ms = ms_since(t1);
    const auto t2 = Clock::now();
    const Continuation c = prefix.generate(continuation, o);
    r.generate_ms = ms_since(t2);
    r.total_ms = ms_since(t0);
    if (c.result.tokens.empty()) throw std::runtime_error("the loaded state generated no token");
    r.first = c.result.tokens[0];
    r.reused = c.reused_tokens;
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvstash state benchmark: TTFT recomputed vs loaded from .kvs (one round)"};
  std::string model_path, text_path, out_dir = "bench/out", continuation = " And God said";
  std::vector<int64_t> sizes;
  int threads = 2, warm_loads = 5, cold_loads = 1, memcpy_reps = 10;
  bool do_memcpy = false, try_drop = false, no_recompute = false;
  size_t memcpy_mib = 256;
  int round = 0;
  app.add_option("-m,--model", model_path, "GGUF model (default: the set-up's)");
  app.add_option("--text", text_path, "prefix text file (cut to the token counts)");
  app.add_option("--prefix-tokens", sizes, "prefix lengths in tokens (BOS included)");
  app.add_option("--continuation", continuation, "continuation text appended to the prefix")->capture_default_str();
  app.add_option("-t,--threads", threads)->capture_default_str();
  app.add_option("--warm-loads", warm_loads, "loads with a warm page cache per size")->capture_default_str();
  app.add_option("--cold-loads", cold_loads, "loads after fadvise(DONTNEED) per size")->capture_default_str();
  app.add_flag("--drop-caches", try_drop, "also load once after echo 3 > /proc/sys/vm/drop_caches");
  app.add_option("--out-dir", out_dir, "where .kvs files and tokens-N.json go")->capture_default_str();
  app.add_option("--round", round, "round number, copied to the output");
  app.add_flag("--no-recompute", no_recompute,
               "skip the recompute: take the state from the .kvs an earlier round saved (not timed)");
  app.add_flag("--memcpy", do_memcpy, "measure memcpy bandwidth and exit");
  app.add_option("--memcpy-mib", memcpy_mib)->capture_default_str();
  app.add_option("--memcpy-reps", memcpy_reps)->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    if (do_memcpy) {
      std::printf("%s\n", measure_memcpy(memcpy_mib << 20, memcpy_reps).dump().c_str());
      return 0;
    }
    if (text_path.empty() || sizes.empty()) throw std::runtime_error("--text and --prefix-tokens are required");
    std::filesystem::create_directories(out_dir);

    const auto tm = Clock::now();
    auto model = Model::load(model_path.empty() ? default_model_path() : model_path);
    const double model_ms = ms_since(tm);
    const Tokenizer& tok = model->tokenizer();
    const int n_vocab = model->config().n_vocab;
    const auto tf = Clock::now();
    (void)compute_fingerprint(model->gguf(), model->config());  // Model::load did this once; time it
    const double fingerprint_ms = ms_since(tf);
    EngineOptions eo;
    eo.n_ctx = *std::max_element(sizes.begin(), sizes.end()) + 64;
    ThreadPool pool(threads);
    Engine engine(*model, pool, eo);

    const std::string text = read_file(text_path);
    const std::vector<Token> all = prompt_tokens(tok, text);
    const bool bos = tok.add_bos() && !all.empty() && all[0] == tok.bos();

    std::vector<json> outs;
    for (const int64_t n : sizes) {
      if (int64_t(all.size()) < n) throw std::runtime_error("the text has only " + std::to_string(all.size()) + " tokens");
      // The prefix: the first n tokens of the text, as text that tokenizes back to exactly them.
      const std::vector<Token> prefix(all.begin(), all.begin() + n);
      const std::string prefix_text = tok.decode(std::vector<Token>(prefix.begin() + (bos ? 1 : 0), prefix.end()), true);
      if (prompt_tokens(tok, prefix_text) != prefix)
        throw std::runtime_error("the first " + std::to_string(n) + " tokens do not tokenize back to themselves");
      const std::vector<Token> full = prompt_tokens(tok, prefix_text + continuation);
      if (full.size() <= prefix.size() || !std::equal(prefix.begin(), prefix.end(), full.begin()))
        throw std::runtime_error("the continuation merges with the prefix's last token; pick another continuation");
      const std::vector<Token> cont(full.begin() + n, full.end());
      {
        std::ofstream tf(out_dir + "/tokens-" + std::to_string(n) + ".json");
        tf << json{{"prefix_tokens", n}, {"prefix", prefix}, {"continuation", cont},
                   {"continuation_text", continuation}}.dump() << "\n";
      }

      // (i) Recompute from an empty sequence.
      const std::string path = out_dir + "/prefix-" + std::to_string(n) + ".kvs";
      json rec;
      State state;
      Token first_recompute = -1;
      if (no_recompute) {
        state = load_state(path);
        if (state.tokens != prefix) throw std::runtime_error(path + ": not the state of this prefix");
      } else {
        std::fprintf(stderr, "[kvstash] round %d, %lld tokens: recompute...\n", round, (long long)n);
        Sequence seq = engine.new_sequence();
        const float* logits = nullptr;
        const auto t0 = Clock::now();
        for (int64_t at = 0; at < n; at += 512) {
          const int64_t k = std::min<int64_t>(512, n - at);
          logits = engine.forward(seq, &prefix[size_t(at)], k);
        }
        const double prefix_ms = ms_since(t0);
        const auto ts = Clock::now();
        state = snapshot(engine.model(), seq, engine.n_ctx(), logits);
        const double snapshot_ms = ms_since(ts);
        const auto t1 = Clock::now();
        logits = engine.forward(seq, cont.data(), int64_t(cont.size()));
        SamplingParams sp;
        sp.temperature = 0;
        Sampler sampler(sp);
        first_recompute = sampler.sample(logits, n_vocab, seq.tokens());
        const double cont_ms = ms_since(t1);
        rec = {{"prefix_ms", prefix_ms}, {"continuation_ms", cont_ms}, {"ttft_ms", prefix_ms + cont_ms},
               {"prefill_tokens_per_s", double(n) / (prefix_ms / 1000.0)},
               {"snapshot_ms", snapshot_ms}, {"first_token", first_recompute}};
      }

      // (ii) Save, then load warm / cold / after drop_caches.
      std::fprintf(stderr, "[kvstash] round %d, %lld tokens: save + loads...\n", round, (long long)n);
      const auto t0 = Clock::now();
      save_state(state, path);
      const double save_ms = ms_since(t0);
      const int64_t bytes = int64_t(std::filesystem::file_size(path));
      state = State();
      const json raw = raw_write(out_dir + "/raw-write.bin", size_t(bytes));

      json warm = json::array(), warm_fused = json::array(), cold = json::array();
      for (int i = 0; i < warm_loads; ++i) {
        warm.push_back(load_and_continue(engine, path, continuation).to_json());
        warm_fused.push_back(load_and_continue(engine, path, continuation, true).to_json());
      }
      for (int i = 0; i < cold_loads; ++i) {
        const std::string err = evict_file(path);
        if (!err.empty()) throw std::runtime_error(path + ": cannot evict from the page cache: " + err);
        cold.push_back(load_and_continue(engine, path, continuation).to_json());
      }
      json out = {{"kind", "kvstash"}, {"round", round}, {"prefix_tokens", n},
                  {"continuation_tokens", cont.size()}, {"threads", engine.n_threads()},
                  {"model_load_ms", model_ms}, {"fingerprint_ms", fingerprint_ms},
                  {"recompute", no_recompute ? json() : rec}, {"save_ms", save_ms}, {"file_bytes", bytes},
                  {"bytes_per_token", double(bytes) / double(n)}, {"raw_write", raw},
                  {"warm", warm}, {"warm_fused", warm_fused}, {"cold", cold},
                  {"first_token_text", tok.decode({warm.empty() ? first_recompute : warm[0]["first_token"].get<Token>()}, true)}};
      outs.push_back(std::move(out));
    }
    // After every size: drop_caches may also evict pages of the model, which would slow whatever
    // runs next in this process.
    for (json& out : outs) {
      if (!try_drop) break;
      const std::string path = out_dir + "/prefix-" + std::to_string(out["prefix_tokens"].get<int64_t>()) + ".kvs";
      const std::string err = drop_caches();
      out["drop_caches"] = err.empty() ? load_and_continue(engine, path, continuation).to_json()
                                       : json{{"error", err}};
    }
    for (const json& out : outs) std::printf("%s\n", out.dump().c_str());
    std::fflush(stdout);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvstash_state_bench: %s\n", e.what());
    return 1;
  }
}
