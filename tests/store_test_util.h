// Helpers for the prefix store's end-to-end tests (cli_store_test, cli_store_redis_test,
// netns_store_test): temp directories, CLI runs with stdout and stderr apart, the store
// directory's files.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace kvstash::testing {

namespace fs = std::filesystem;

// A fresh directory under the temp directory, removed with everything in it at the end.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name) : path_(temp_path("store_" + name)) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A prompt file holding corpus_text()[from, from + n_bytes), one per process (removed at exit).
inline std::string corpus_prompt_file(size_t n_bytes, size_t from = 0) {
  static ScratchDir dir("prompts");
  const std::string path = dir / (std::to_string(from) + "_" + std::to_string(n_bytes) + ".txt");
  if (!fs::exists(path)) write_file(path, corpus_text().substr(from, n_bytes));
  return path;
}

// The main prompt of the tests: about 600 tokens of prose (~6 s of prefill on a loaded machine
// would be 2,100 tokens; this is ~2 s).
inline std::string prompt_file() { return corpus_prompt_file(2400); }

// One CLI invocation: its exit status, its stdout parsed as JSON (when it printed one), and stderr.
struct CliRun {
  int exit_code = -1;
  nlohmann::json json;
  std::string out, err;

  std::vector<std::string> warnings() const {
    std::vector<std::string> r;
    std::istringstream in(err);
    for (std::string line; std::getline(in, line);)
      if (line.rfind("kvstash: warning: ", 0) == 0) r.push_back(line);
    return r;
  }
  // "tokens" (null when the run printed no JSON object).
  nlohmann::json tokens() const { return json.is_object() ? json.value("tokens", nlohmann::json()) : nlohmann::json(); }
  int64_t cached_tokens() const { return json.is_object() ? json.value("cached_tokens", int64_t(-1)) : -1; }
  // bytes_read / chunks_read of one tier ("disk", "redis", "memory"); 0 when it was not read.
  uint64_t bytes_read(const std::string& tier) const {
    return json.is_object() && json.contains("cache") ? json["cache"]["bytes_read"].value(tier, uint64_t(0)) : 0;
  }
  int64_t chunks_read(const std::string& tier) const {
    return json.is_object() && json.contains("cache") ? json["cache"]["chunks_read"].value(tier, int64_t(0)) : 0;
  }
  // For assertion messages.
  std::string describe() const { return "exit " + std::to_string(exit_code) + "\nstdout: " + out + "\nstderr: " + err; }
};

// Runs `prefix kvstash args` (prefix: e.g. "ip netns exec NS"), stdout and stderr apart.
inline CliRun run_cli(const std::string& args, const std::string& prefix = "") {
  static ScratchDir dir("stderr");
  static int n = 0;
  const std::string err_path = dir / (std::to_string(n++) + ".txt");
  CommandResult r = run_command((prefix.empty() ? "" : prefix + " ") + cli() + " " + args + " 2>" + err_path, false);
  CliRun run;
  run.exit_code = r.exit_code;
  run.out = r.out;
  run.err = read_file(err_path);
  fs::remove(err_path);
  if (!r.out.empty() && r.out.front() == '{') run.json = nlohmann::json::parse(r.out, nullptr, false);
  return run;
}

// The store tests' generation flags: greedy, or seeded sampling.
inline const std::string kGreedy = "-n 8 --temp 0";
inline const std::string kSeeded = "-n 8 --temp 0.8 --seed 5";
inline constexpr int kChunk = 64;  // --cache-chunk-tokens of the tests

// `run --file prompt gen --json` without any store, once per process for each (prompt, gen).
inline const CliRun& uncached_run(const std::string& prompt, const std::string& gen = kGreedy) {
  static std::map<std::string, CliRun> done;
  const std::string args = "run --file " + prompt + " " + gen + " --json";
  auto it = done.find(args);
  if (it == done.end()) {
    it = done.emplace(args, run_cli(args)).first;
    EXPECT_EQ(it->second.exit_code, 0) << it->second.describe();
    EXPECT_FALSE(it->second.json.contains("cached_tokens")) << "no store, no cache fields";
  }
  return it->second;
}

// `run` of the prompt through a store given by `store_flags` (--prompt-cache DIR, --redis URL...),
// in the namespace `prefix` runs it in (if any).
inline CliRun cached_run(const std::string& prompt, const std::string& store_flags, const std::string& gen = kGreedy,
                         int chunk = kChunk, const std::string& prefix = "") {
  return run_cli("run --file " + prompt + " " + gen + " --json --cache-chunk-tokens " + std::to_string(chunk) + " " +
                     store_flags,
                 prefix);
}

// What a full hit loads: every whole chunk that leaves a token to compute.
inline int64_t full_hit_tokens(int64_t n_prompt, int chunk = kChunk) { return (n_prompt - 1) / chunk * chunk; }

// Expects a successful run with the uncached run's tokens and no warnings.
inline void expect_clean_exact(const CliRun& r, const CliRun& expected) {
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_TRUE(r.json.is_object()) << r.describe();
  EXPECT_EQ(r.tokens(), expected.tokens()) << r.describe();
  EXPECT_EQ(r.json["prompt_tokens"], expected.json["prompt_tokens"]);
  EXPECT_TRUE(r.warnings().empty()) << r.err;
}

// The store directory's entry files ("<32 hex>.kvc"), by name.
inline std::vector<std::string> entry_files(const std::string& dir) {
  std::vector<std::string> r;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.size() == 36 && n.ends_with(".kvc") &&
        std::all_of(n.begin(), n.begin() + 32, [](char c) { return std::isxdigit(uint8_t(c)) && !std::isupper(uint8_t(c)); }))
      r.push_back(e.path().string());
  }
  std::sort(r.begin(), r.end());
  return r;
}

// Names in dir holding the atomic-write temp marker.
inline std::vector<std::string> temp_files(const std::string& dir) {
  std::vector<std::string> r;
  for (const fs::directory_entry& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".kvstash-tmp.") != std::string::npos) r.push_back(e.path().string());
  return r;
}

// Bytes of every regular file in dir.
inline uint64_t dir_bytes(const std::string& dir) {
  uint64_t n = 0;
  for (const fs::directory_entry& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) n += e.file_size();
  return n;
}

// A little-endian field of a disk entry's payload (docs/format-store.md): the file's 16-byte
// header, the 64-byte envelope, then the payload, whose u32 at 8 is the codec level and u64 at 32
// the chunk's first token position. -1 for a file too short.
inline int64_t payload_field(const std::string& path, size_t offset, size_t bytes) {
  const std::string b = read_file(path);
  const size_t at = 16 + 64 + offset;
  if (b.size() < at + bytes) return -1;
  uint64_t v = 0;
  for (size_t i = bytes; i-- > 0;) v = v << 8 | uint8_t(b[at + i]);
  return int64_t(v);
}
inline int64_t entry_first_token(const std::string& path) { return payload_field(path, 32, 8); }
inline int64_t entry_codec_level(const std::string& path) { return payload_field(path, 8, 4); }

// The entry file of the chunk starting at token `first` (empty if none).
inline std::string entry_of_chunk(const std::string& dir, int64_t first) {
  for (const std::string& p : entry_files(dir))
    if (entry_first_token(p) == first) return p;
  return "";
}

// The 32 hex digits naming an entry file.
inline std::string entry_hex(const std::string& path) { return fs::path(path).filename().string().substr(0, 32); }

}  // namespace kvstash::testing
