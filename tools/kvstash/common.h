// Options and helpers shared by the subcommands.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "kvstash/engine.h"
#include "kvstash/generate.h"
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

// Writes generated text to stdout as it arrives.
void print_now(const std::string& text);
int64_t file_size(const std::string& path);

}  // namespace kvstash::cli
