#include "common.h"

#include "kvstash/error.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

namespace kvstash::cli {

void add_model_options(CLI::App& app, ModelOptions& o) {
  app.add_option("-m,--model", o.model, "GGUF model file (default: $KVSTASH_MODEL, else the set-up's model)");
  app.add_option("-t,--threads", o.threads, "threads (default: all cores)")->check(CLI::NonNegativeNumber);
  app.add_option("-c,--ctx-size", o.ctx_size, "KV cache size in tokens (default: min(training context, 4096))")
      ->check(CLI::NonNegativeNumber);
}

void add_sampling_options(CLI::App& app, SamplingParams& p, bool& seed_given) {
  app.add_option("--temp", p.temperature, "temperature; 0 = greedy")->capture_default_str();
  app.add_option("--top-k", p.top_k, "top-k; 0 = off")->capture_default_str();
  app.add_option("--top-p", p.top_p, "top-p; 1 = off")->capture_default_str();
  app.add_option("--min-p", p.min_p, "min-p; 0 = off")->capture_default_str();
  app.add_option("--repeat-penalty", p.repeat_penalty, "repetition penalty; 1 = off")->capture_default_str();
  app.add_option("--repeat-last-n", p.repeat_last_n, "tokens the penalty looks back on")->capture_default_str();
  app.add_option_function<uint64_t>("-s,--seed", [&p, &seed_given](uint64_t s) { p.seed = s, seed_given = true; },
                                    "random seed (default: random, reported in --json)");
}

Loaded load(const ModelOptions& o) {
  Loaded l;
  l.model = Model::load(o.model.empty() ? default_model_path() : o.model);
  EngineOptions eo;
  eo.n_ctx = o.ctx_size;
  l.threads = std::make_unique<ThreadPool>(o.threads > 0 ? o.threads : int(std::max(1u, std::thread::hardware_concurrency())));
  l.engine = std::make_unique<Engine>(*l.model, *l.threads, eo);
  return l;
}

uint64_t random_seed() {
  std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd();
}

void print_now(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::NotFound, "cannot open text file '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(ErrorKind::IOError, "cannot read text file '" + path + "'");
  return ss.str();
}

int64_t file_size(const std::string& path) { return int64_t(std::filesystem::file_size(path)); }

}  // namespace kvstash::cli
