#include "common.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "context.h"
#include "kvstash/error.h"
#include "kvstash/kernels.h"
#include <nlohmann/json.hpp>

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

void add_kvz_flags(CLI::App& app, KvzFlags& f) {
  f.level = app.add_option("--level", f.levels,
                           "quality levels to store in a .kvz (repeatable or a comma list; 1 = smallest, " +
                               std::to_string(kvz_lossless_level()) + " = lossless; default: every other lossy level, 1, 3, 5, ...)")
                ->delimiter(',');
  app.add_flag("--lossless", f.lossless, "store only the lossless level (an exact f16 round trip)");
  f.chunk = app.add_option("--chunk-tokens", f.chunk_tokens, "cache slots per .kvz chunk")->capture_default_str();
}

KvzOptions kvz_options(const KvzFlags& f) {
  if (f.lossless && !f.levels.empty()) throw Error(ErrorKind::InvalidArgument, "--level and --lossless exclude each other");
  KvzOptions o;
  o.chunk_tokens = f.chunk_tokens;
  if (f.lossless) o.levels = {kvz_lossless_level()};
  for (const std::string& text : f.levels) {
    int v = 0;
    size_t used = 0;
    try {
      v = std::stoi(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != text.size() || v < 1 || v > kvz_lossless_level())
      throw Error(ErrorKind::InvalidArgument, "--level must be a number from 1 to " + std::to_string(kvz_lossless_level()) +
                                                  " (" + std::to_string(kvz_lossless_level()) + " = lossless), got '" +
                                                  text + "'");
    o.levels.push_back(v);
  }
  return o;
}

bool has_kvz_extension(const std::string& path) {
  return path.size() >= 4 && path.compare(path.size() - 4, 4, ".kvz") == 0;
}

State load_state_file(const std::string& path, int level, ThreadPool* threads) {
  if (is_kvz_file(path)) {
    LevelChoice c;
    c.level = level;
    return load_kvz(path, c, threads);
  }
  if (level != 0)
    throw Error(ErrorKind::InvalidArgument, path + ": --level applies to .kvz states; this is not one");
  return load_state(path);
}

void add_load_level_option(CLI::App& app, int& level) {
  app.add_option("--level", level, "for a .kvz state: the stored quality level to load (default: the best stored)")
      ->check(CLI::Range(1, 255));
}

// Sizes of a .kvz per stored level: its chunks' bytes, as bits per K/V value and as a ratio to f16.
// file_bits_per_value adds the header (metadata, tokens, logits, index): a file of that level alone.
nlohmann::json kvz_level_table(const KvzInfo& info) {
  const double values = 2.0 * double(info.meta.arch.n_layer) * double(info.meta.kv_elements());
  const uint64_t header = info.chunks.empty() ? info.file_size : info.chunks[0].levels[0].offset;
  nlohmann::json levels = nlohmann::json::array();
  for (size_t i = 0; i < info.levels.size(); ++i) {
    uint64_t bytes = 0;
    for (const KvzChunk& c : info.chunks) bytes += c.levels[i].size;
    nlohmann::json l = {{"level", info.levels[i]}, {"params", info.level_params[i]}, {"bytes", bytes}};
    l["bits_per_value"] = values > 0 ? 8.0 * double(bytes) / values : 0.0;
    l["file_bits_per_value"] = values > 0 ? 8.0 * double(bytes + header) / values : 0.0;
    l["ratio_to_f16"] = bytes > 0 ? 2.0 * values / double(bytes) : 0.0;
    levels.push_back(l);
  }
  return levels;
}

void print_now(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

int64_t file_size(const std::string& path) { return int64_t(std::filesystem::file_size(path)); }

void print_json(nlohmann::json j) {
  j["simd"] = Kernels::active().name();
  std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

}  // namespace kvstash::cli
