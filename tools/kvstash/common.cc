#include "common.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "context.h"
#include "kvstash/error.h"

namespace kvstash::cli {

namespace {
uint64_t random_seed() {
  std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd();
}

uint64_t parse_seed(const std::string& s) {
  if (s == "-1") return random_seed();
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (s.empty() || s[0] < '0' || s[0] > '9' || *end != '\0' || errno == ERANGE)
    throw Error(ErrorKind::InvalidArgument,
                "--seed must be -1 (random) or a number from 0 to 18446744073709551615, got '" + s + "'");
  return v;
}
}  // namespace

void add_model_options(CLI::App& app, ModelOptions& o) {
  app.add_option("-m,--model", o.model, "GGUF model file (default: $KVSTASH_MODEL, else the set-up's model)");
  app.add_option("-t,--threads", o.threads, "threads (default: every available core; more are cut to that)");
  app.add_flag("--threads-oversubscribe", o.threads_oversubscribe, "use --threads even beyond the cores available");
}

CLI::Option* add_ctx_options(CLI::App& app, ModelOptions& o, const std::string& ctx_help) {
  CLI::Option* ctx = app.add_option("-c,--ctx-size", o.ctx_size, ctx_help);
  app.add_flag("--ctx-beyond-training", o.ctx_beyond_training,
               "allow a context beyond the model's training context (quality degrades there)");
  return ctx;
}

void add_generation_options(CLI::App& app, GenerationArgs& g) {
  SamplingParams& p = g.gen.sampling;
  app.add_option("-n,--n-predict", g.gen.n_predict, "tokens to generate; -1: until end of generation or a full context")
      ->capture_default_str();
  app.add_flag("--ignore-eos", g.gen.ignore_eos, "never stop at an end-of-generation token");
  app.add_option("-r,--reverse-prompt", g.gen.stop,
                 "stop when the text reaches this string, which is not printed (repeatable)");
  app.add_option("--temp", p.temperature, "temperature; 0 = greedy")->capture_default_str();
  app.add_option("--top-k", p.top_k, "top-k; 0 = off")->capture_default_str();
  app.add_option("--top-p", p.top_p, "top-p; 1 = off")->capture_default_str();
  app.add_option("--min-p", p.min_p, "min-p; 0 = off")->capture_default_str();
  app.add_option("--repeat-penalty", p.repeat_penalty, "repetition penalty; 1 = off")->capture_default_str();
  app.add_option("--repeat-last-n", p.repeat_last_n, "tokens the penalty looks back on")->capture_default_str();
  app.add_option("-s,--seed", g.seed, "random seed; -1 = random (reported in --json)")
      ->type_name("INT")
      ->capture_default_str();
}

void resolve(GenerationArgs& g) {
  if (g.gen.n_predict < -1)
    throw Error(ErrorKind::InvalidArgument,
                "-n must be -1 (until end of generation or a full context) or >= 0, got " + std::to_string(g.gen.n_predict));
  g.gen.sampling.seed = parse_seed(g.seed);
  validate(g.gen.sampling);
}

Loaded load_model(const ModelOptions& o) {
  if (o.ctx_size < 0) throw Error(ErrorKind::InvalidArgument, "--ctx-size must be >= 0, got " + std::to_string(o.ctx_size));
  const int threads = thread_count(o.threads, o.threads_oversubscribe);
  Loaded l;
  l.model = Model::load(o.model.empty() ? default_model_path() : o.model);
  l.threads = std::make_unique<ThreadPool>(threads);
  return l;
}

void start_engine(Loaded& l, const ModelOptions& o, int64_t wanted, int64_t must_fit, const std::string& what) {
  EngineOptions eo;
  eo.n_ctx = context_size({.ctx_size = o.ctx_size, .beyond_training = o.ctx_beyond_training,
                           .n_ctx_train = l.model->config().n_ctx_train, .wanted = wanted,
                           .must_fit = must_fit, .what = what});
  l.engine = std::make_unique<Engine>(*l.model, *l.threads, eo);
}

void print_now(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

int64_t file_size(const std::string& path) { return int64_t(std::filesystem::file_size(path)); }

}  // namespace kvstash::cli
