// The KV cache is sized from the work: prefill to its prefix (recorded in the state), generate to
// the state + prompt + -n, run to prompt + -n; never beyond the training context without
// --ctx-beyond-training; -c/--ctx-size overrides.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace kvstash {
namespace {

using nlohmann::json;
using testing::cli;
using testing::cli_error;
using testing::shared_state;

json cli_json(const std::string& args) {
  testing::CommandResult r = testing::run_command(cli() + " " + args, false);
  EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.out;
  return json::parse(r.out);
}

// The corpus repeated up to `bytes` bytes.
std::string repeated_corpus_file(const std::string& name, size_t bytes) {
  std::string text;
  while (text.size() < bytes) text += testing::corpus_text();
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path, std::ios::binary) << text.substr(0, bytes);
  return path;
}

TEST(CliContext, PrefillRecordsAContextSizedToThePrefix) {
  const json s = cli_json("inspect --json " + shared_state());
  EXPECT_GT(s["tokens"].get<int>(), 100);
  EXPECT_EQ(s["n_ctx"], s["tokens"]);
}

TEST(CliContext, GenerateGrowsTheContextForPromptAndN) {
  const json s = cli_json("inspect --json " + shared_state());
  const int64_t n_state = s["tokens"];
  // The state's context is exactly its prefix, yet 40 more tokens need no flag.
  const json g = cli_json("generate --state " + shared_state() + " -p ' And' -n 40 --temp 0 --ignore-eos --json");
  EXPECT_EQ(g["tokens"].size(), 40u);
  EXPECT_EQ(g["stop_reason"], "length");
  EXPECT_GE(g["n_ctx"].get<int64_t>(), n_state + 40);
  // -c still decides when given.
  const json c = cli_json("generate --state " + shared_state() + " -p ' And' -n 40 --temp 0 --ignore-eos --json -c " +
                          std::to_string(n_state + 10));
  EXPECT_EQ(c["n_ctx"], n_state + 10);
  EXPECT_EQ(c["stop_reason"], "context");
  EXPECT_LT(c["tokens"].size(), 40u);
}

TEST(CliContext, RunSizesTheContextToPromptPlusN) {
  const json j = cli_json("run --prompt 'The capital of France is' -n 7 --temp 0 --json");
  EXPECT_EQ(j["n_ctx"], j["prompt_tokens"].get<int>() + 7);
  // -n -1 may run to the end of the training context.
  const json all = cli_json("run --chat --prompt 'What is 2+2?' -n -1 --temp 0 --json");
  EXPECT_EQ(all["n_ctx"], 8192);
}

TEST(CliContext, PrefixBeyondTheTrainingContextIsRefusedBeforeTheWork) {
  // About 10,000 tokens: refused after tokenizing, before any forward pass.
  const std::string text = repeated_corpus_file("cli_context_huge.txt", 42000);
  const testing::CliError e = cli_error("prefill --file " + text + " --out " + ::testing::TempDir() + "huge.kvs");
  EXPECT_EQ(e.exit_code, exit_code(ErrorKind::InvalidArgument));
  EXPECT_NE(e.line.find("--ctx-beyond-training"), std::string::npos) << e.line;  // says how to override
  EXPECT_LT(e.seconds, 5.0);
}

// The one slow CLI test (a prefill of ~4,110 tokens): beyond the old default of 4,096, no flags.
TEST(CliLongContext, PrefixBeyond4096TokensJustWorks) {
  const std::string text = repeated_corpus_file("cli_context_long.txt", 17500);
  const std::string kvs = ::testing::TempDir() + "cli_context_long.kvs";
  const json p = cli_json("prefill --file " + text + " --out " + kvs + " --json");
  EXPECT_GT(p["prompt_tokens"].get<int>(), 4096);
  EXPECT_EQ(p["n_ctx"], p["prompt_tokens"]);
  const json g = cli_json("generate --state " + kvs + " -p ' And' -n 3 --temp 0 --ignore-eos --json");
  EXPECT_EQ(g["tokens"].size(), 3u);
  EXPECT_GT(g["reused_tokens"].get<int>(), 4096);
  std::filesystem::remove(kvs);  // ~95 MB
}

}  // namespace
}  // namespace kvstash
