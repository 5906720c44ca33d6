// Helpers for end-to-end tests on the real model.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "kvstash/engine.h"
#include "kvstash/error.h"
#include "kvstash/model.h"

namespace kvstash::testing {

// The default model, loaded once per test process.
inline const Model& default_model() {
  static std::unique_ptr<Model> model = Model::load(KVSTASH_DEFAULT_MODEL);
  return *model;
}

struct CommandResult {
  int exit_code = 0;
  std::string out;  // stdout and stderr together when merge_stderr
};

// Runs a shell command and captures its output.
inline CommandResult run_command(const std::string& cmd, bool merge_stderr = true) {
  CommandResult r;
  FILE* p = popen((cmd + (merge_stderr ? " 2>&1" : "")).c_str(), "r");
  if (!p) return {-1, "popen failed"};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Public-domain prose (the King James Bible, from the Debian package bible-kjv).
inline const std::string& corpus_text() {
  static const std::string text = [] {
    CommandResult r = run_command("bash " KVSTASH_SOURCE_DIR "/scripts/corpus.sh", false);
    if (r.exit_code != 0 || r.out.empty()) throw std::runtime_error("scripts/corpus.sh failed");
    return r.out;
  }();
  return text;
}

// The first n tokens of the corpus (BOS first; the corpus has a few thousand).
inline std::vector<Token> prose_tokens(size_t n) {
  static const std::vector<Token> tokens = default_model().tokenizer().encode(corpus_text(), true, false);
  EXPECT_GE(tokens.size(), n);
  return std::vector<Token>(tokens.begin(), tokens.begin() + long(std::min(n, tokens.size())));
}

// All logits of the tokens fed to seq in forward calls of the given sizes (which sum to tokens.size()).
inline std::vector<float> all_logits_in_calls(Engine& engine, Sequence& seq, const std::vector<Token>& tokens,
                                              const std::vector<int64_t>& split) {
  const size_t nv = size_t(engine.model().config().n_vocab);
  std::vector<float> all;
  size_t at = 0;
  for (int64_t n : split) {
    const float* l = engine.forward(seq, &tokens[at], n, ForwardOptions{.all_logits = true});
    all.insert(all.end(), l, l + size_t(n) * nv);
    at += size_t(n);
  }
  EXPECT_EQ(at, tokens.size());
  return all;
}

// A path in the temp directory, unique to this process.
inline std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("kvstash_" + std::to_string(::getpid()) + "_" + name)).string();
}

// A whole file's bytes (empty if it cannot be read), and a file replaced by bytes.
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// The interpreter $KVSTASH_TEST_PYTHON names (default python3) if it has what
// scripts/check_kvs_python.py imports (safetensors, numpy, xxhash); empty otherwise.
inline std::string python_for_kvs_reader() {
  const char* env = std::getenv("KVSTASH_TEST_PYTHON");
  const std::string python = env && *env ? env : "python3";
  return run_command(python + " -c 'import safetensors, numpy, xxhash'").exit_code == 0 ? python : "";
}

inline std::string cli() { return KVSTASH_CLI; }

// Runs the CLI with args that must succeed and print one JSON object.
inline nlohmann::json cli_json(const std::string& args) {
  CommandResult r = run_command(cli() + " " + args, false);
  EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.out;
  return nlohmann::json::parse(r.out);
}

struct CliError {
  int exit_code = 0;
  std::string line;  // the one line on stderr
  double seconds = 0;
};

// Runs the CLI with args (shell syntax: redirections allowed) that must fail. Checks that stderr
// is exactly one line starting "kvstash: error: " and returns it with the exit status; tests
// compare the status with exit_code(kind).
inline CliError cli_error(const std::string& args) {
  const auto t0 = std::chrono::steady_clock::now();
  CommandResult r = run_command(cli() + " " + args + " 2>&1 >/dev/null", false);
  CliError e{r.exit_code, r.out,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << args << "\n" << r.out;
  EXPECT_EQ(r.out.rfind("kvstash: error: ", 0), 0u) << args << "\n" << r.out;
  return e;
}

// A short state file made by `kvstash prefill` from the corpus's first 1,500 bytes, shared by the
// tests (and by test processes: the name carries the CLI's build time, the write is atomic).
inline const std::string& shared_state() {
  static const std::string path = [] {
    const auto built = std::filesystem::last_write_time(KVSTASH_CLI).time_since_epoch().count();
    const std::string dir = ::testing::TempDir();
    const std::string kvs = dir + "cli_shared_" + std::to_string(built) + ".kvs";
    if (std::filesystem::exists(kvs)) return kvs;
    const std::string txt = kvs + "." + std::to_string(getpid()) + ".txt";  // processes may race here
    {
      FILE* f = std::fopen(txt.c_str(), "wb");
      const std::string text = corpus_text().substr(0, 1500);
      std::fwrite(text.data(), 1, text.size(), f);
      std::fclose(f);
    }
    CommandResult r = run_command(cli() + " prefill --file " + txt + " --out " + kvs);
    std::filesystem::remove(txt);
    if (r.exit_code != 0) throw std::runtime_error("prefill for the shared state failed: " + r.out);
    return kvs;
  }();
  return path;
}

}  // namespace kvstash::testing
