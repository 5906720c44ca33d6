// Options and helpers shared by the subcommands.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "kvstash/engine.h"
#include "kvstash/model.h"
#include "kvstash/sampler.h"

namespace kvstash::cli {

struct ModelOptions {
  std::string model;  // empty: default_model_path()
  int threads = 0;
  int64_t ctx_size = 0;
};

void add_model_options(CLI::App& app, ModelOptions& o);
void add_sampling_options(CLI::App& app, SamplingParams& p, bool& seed_given);

// A loaded model with an engine over it.
struct Loaded {
  std::unique_ptr<Model> model;
  std::unique_ptr<ThreadPool> threads;
  std::unique_ptr<Engine> engine;
};
Loaded load(const ModelOptions& o);

uint64_t random_seed();
// Writes generated text to stdout as it arrives.
void print_now(const std::string& text);
std::string read_text_file(const std::string& path);  // throws Error naming the file
int64_t file_size(const std::string& path);

}  // namespace kvstash::cli
