// Options and helpers shared by the subcommands.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "kvstash/engine.h"
#include "kvstash/generate.h"
#include "kvstash/kvz.h"
#include "kvstash/model.h"
#include "kvstash/sampler.h"

namespace kvstash::cli {

struct ModelOptions {
  std::string model;  // empty: default_model_path()
  int threads = 0;    // 0: every core this process may run on
  bool threads_oversubscribe = false;
  int64_t ctx_size = 0;  // 0: sized to the work
  bool ctx_beyond_training = false;
};

// -m, -t, --threads-oversubscribe.
void add_model_options(CLI::App& app, ModelOptions& o);
// -c/--ctx-size (with the given help text; returned) and --ctx-beyond-training.
CLI::Option* add_ctx_options(CLI::App& app, ModelOptions& o, const std::string& ctx_help);

// What run and generate share: -n, --ignore-eos, -r, and the sampling flags (--seed -1 = random).
struct GenerationArgs {
  GenerateOptions gen;
  std::string seed = "-1";
};
void add_generation_options(CLI::App& app, GenerationArgs& g);
// Validates -n and the sampling flags and draws the seed if it is -1.
void resolve(GenerationArgs& g);

// A model, a thread pool and (after start_engine) an engine over them.
struct Loaded {
  std::unique_ptr<Model> model;
  std::unique_ptr<ThreadPool> threads;
  std::unique_ptr<Engine> engine;
};
// Loads the model and starts the threads (capped at the cores available unless oversubscribed).
Loaded load_model(const ModelOptions& o);
// Creates the engine with the context that context_size() picks.
void start_engine(Loaded& l, const ModelOptions& o, int64_t wanted, int64_t must_fit, const std::string& what);

// The .kvz writer's flags (compress, prefill --out X.kvz): --level (repeatable or a comma list),
// --lossless, --chunk-tokens.
struct KvzFlags {
  std::vector<std::string> levels;
  bool lossless = false;
  int chunk_tokens = 256;
  CLI::Option* level = nullptr;
  CLI::Option* chunk = nullptr;
};
void add_kvz_flags(CLI::App& app, KvzFlags& f);
// The writer options the flags ask for (InvalidArgument for a level that does not exist, or
// --level with --lossless); every other lossy level (1, 3, 5, ...) when none is given.
KvzOptions kvz_options(const KvzFlags& f);
// Whether a state path names a .kvz file by its extension (for outputs).
bool has_kvz_extension(const std::string& path);

// A state file of either format, told apart by its first bytes: a .kvz is decoded at `level`
// (0: the best stored level); --level on a .kvs is InvalidArgument.
State load_state_file(const std::string& path, int level, ThreadPool* threads = nullptr);
// --level for commands that load a state (generate, perplexity, decompress).
void add_load_level_option(CLI::App& app, int& level);

// Per stored level of a .kvz: level, params, bytes (its chunks), bits_per_value and ratio_to_f16 of
// those bytes, and file_bits_per_value (the header added: a file of that level alone).
nlohmann::json kvz_level_table(const KvzInfo& info);

// Prints a --json result on one line, with "simd": the kernel level that computed it (invalid
// UTF-8 in generated text is replaced, not an error).
void print_json(nlohmann::json j);

// Writes generated text to stdout as it arrives.
void print_now(const std::string& text);
int64_t file_size(const std::string& path);

}  // namespace kvstash::cli
