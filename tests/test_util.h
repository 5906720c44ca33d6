// Helpers for end-to-end tests on the real model.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

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

inline std::string cli() { return KVSTASH_CLI; }

// Runs the CLI with args that must fail; returns its stderr, which must be exactly one line.
inline std::string one_line_error(const std::string& args) {
  CommandResult r = run_command(cli() + " " + args + " 2>&1 >/dev/null", false);
  EXPECT_NE(r.exit_code, 0) << args;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  return r.out;
}

}  // namespace kvstash::testing
