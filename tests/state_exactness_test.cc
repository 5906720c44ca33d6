// Issue 3's promise on the real model: generating from a cached prefix, in the same process, after
// a save and a load in another process, and from forks of one load gives exactly the tokens of
// running prefix + continuation from scratch; greedy and seeded sampling alike.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kvstash/error.h"
#include "kvstash/prefix.h"
#include "test_util.h"

namespace kvstash {
namespace {

using nlohmann::json;
using testing::cli;
using testing::run_command;

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

const std::string& prefix_text() {
  static const std::string p = testing::corpus_text().substr(0, 1200);
  return p;
}
const std::string kC1 = " And the evening";
const std::string kC2 = " Then God said unto";

std::vector<json> json_lines(const std::string& args) {
  testing::CommandResult r = run_command(cli() + " " + args, false);
  EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.out;
  std::vector<json> out;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

std::vector<Token> run_tokens(const std::string& text, const std::string& sampling, int n = 24) {
  return json_lines("run --json -n " + std::to_string(n) + " " + sampling + " --prompt " + quote(text))[0]["tokens"].get<std::vector<Token>>();
}

std::string saved_prefix() {
  static const std::string path = [] {
    const std::string p = ::testing::TempDir() + "exactness_prefix.kvs";
    json_lines("prefill --json --out " + p + " --prompt " + quote(prefix_text()));
    return p;
  }();
  return path;
}

void check_all_ways(const std::string& sampling, uint64_t seed, float temperature) {
  const std::vector<Token> a1 = run_tokens(prefix_text() + kC1, sampling);
  const std::vector<Token> a2 = run_tokens(prefix_text() + kC2, sampling);
  ASSERT_NE(a1, a2);

  // (b) prefill then generate in the same process, no file.
  const Model& m = testing::default_model();
  ThreadPool threads(2);
  Engine engine(m, threads, EngineOptions{.n_ctx = 1024});
  LoadedPrefix in_memory(engine, process_prefix(engine, prefix_text()));
  GenerateOptions o;
  o.n_predict = 24;
  o.sampling.temperature = temperature;
  o.sampling.seed = seed;
  EXPECT_EQ(in_memory.generate(kC1, o).result.tokens, a1) << "same process";

  // (c) + (d): save, load in a new process, two forks of one load.
  const std::vector<json> c = json_lines("generate --json -n 24 " + sampling + " --state " + saved_prefix() +
                                         " --prompt " + quote(kC1) + " --prompt " + quote(kC2));
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0]["tokens"].get<std::vector<Token>>(), a1) << "loaded in a new process";
  EXPECT_EQ(c[1]["tokens"].get<std::vector<Token>>(), a2) << "second fork of the same load";
  EXPECT_GT(c[0]["reused_tokens"].get<int>(), 250);
  EXPECT_EQ(c[0]["reused_tokens"], c[1]["reused_tokens"]);
}

TEST(StateExactness, GreedyEqualsRunningFromScratch) { check_all_ways("--temp 0", 0, 0.0f); }

TEST(StateExactness, SeededSamplingEqualsRunningFromScratch) {
  check_all_ways("--temp 0.9 --seed 4242", 4242, 0.9f);
}

// The prefix ends inside a word: BPE merges the boundary differently once the continuation is
// appended, so the last cached token is not reused; output still equals the from-scratch run.
TEST(StateExactness, ContinuationMergingAcrossTheBoundaryIsRecomputed) {
  const std::string prefix = "In the beginning God cre";
  const std::string state = ::testing::TempDir() + "boundary.kvs";
  const json p = json_lines("prefill --json --out " + state + " --prompt " + quote(prefix))[0];
  const json g = json_lines("generate --json -n 16 --temp 0 --state " + state + " --prompt 'ated the'")[0];
  EXPECT_EQ(g["tokens"].get<std::vector<Token>>(), run_tokens(prefix + "ated the", "--temp 0", 16));
  EXPECT_LT(g["reused_tokens"].get<int>(), p["prompt_tokens"].get<int>());
}

// prefill --key-order hf writes keys in Hugging Face's order; generate reads them back exactly.
TEST(StateExactness, HuggingFaceKeyOrderFileContinuesExactly) {
  const std::string prefix = "In the beginning God created";
  const std::string state = ::testing::TempDir() + "hf_order.kvs";
  json_lines("prefill --json --key-order hf --out " + state + " --prompt " + quote(prefix));
  const json g = json_lines("generate --json -n 16 --temp 0 --state " + state + " --prompt ' the heaven'")[0];
  EXPECT_EQ(g["tokens"].get<std::vector<Token>>(), run_tokens(prefix + " the heaven", "--temp 0", 16));
  std::ifstream in(state, std::ios::binary);
  std::string bytes(std::istreambuf_iterator<char>(in), {});
  EXPECT_NE(bytes.find("\"key_order\":\"hf\""), std::string::npos);
}

// A token sequence that diverges in the middle of the cached prefix reuses the common part only.
TEST(StateExactness, PromptDivergingInsideTheCacheReusesTheCommonPrefix) {
  const Model& m = testing::default_model();
  ThreadPool threads(2);
  Engine engine(m, threads, EngineOptions{.n_ctx = 1024});
  const State state = process_prefix(engine, prefix_text());
  LoadedPrefix loaded(engine, state);
  std::vector<Token> other(state.tokens.begin(), state.tokens.begin() + 100);
  const std::vector<Token> tail = m.tokenizer().encode(" and the waters were gathered", false, false);
  other.insert(other.end(), tail.begin(), tail.end());
  GenerateOptions o;
  o.n_predict = 16;
  o.sampling.temperature = 0;
  const Continuation c = loaded.generate_tokens(other, o);
  EXPECT_EQ(c.reused_tokens, 100);
  Sequence fresh = engine.new_sequence();
  EXPECT_EQ(c.result.tokens, generate(engine, fresh, other, o).tokens);
}

// Runs the CLI with args that must fail with the exit code of `kind`; returns its one-line stderr.
std::string fails_with(ErrorKind kind, const std::string& args) {
  const testing::CliError e = testing::cli_error(args);
  EXPECT_EQ(e.exit_code, exit_code(kind)) << args << "\n" << e.line;
  return e.line;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(StateBadInput, TruncatedStateFile) {
  const std::string bytes = read_bytes(saved_prefix());
  const std::string cut = ::testing::TempDir() + "cut.kvs";
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  EXPECT_NE(fails_with(ErrorKind::Corruption, "generate --state " + cut + " --prompt x").find(cut + ": truncated file"),
            std::string::npos);
}

TEST(StateBadInput, FlippedByteInThePayload) {
  std::string bytes = read_bytes(saved_prefix());
  bytes[bytes.size() / 3] ^= 0x10;
  const std::string bad = ::testing::TempDir() + "flipped.kvs";
  std::ofstream(bad, std::ios::binary) << bytes;
  fails_with(ErrorKind::Corruption, "generate --state " + bad + " --prompt x");
  fails_with(ErrorKind::Corruption, "inspect " + bad);
}

TEST(StateBadInput, StateFromAnotherModel) {
  // The default model with one weight byte changed has another fingerprint.
  std::string model = read_bytes(KVSTASH_DEFAULT_MODEL);
  model[model.size() - 1000] ^= 0x01;
  const std::string other = ::testing::TempDir() + "other_model.gguf";
  std::ofstream(other, std::ios::binary) << model;
  fails_with(ErrorKind::ModelMismatch, "generate --model " + other + " --state " + saved_prefix() + " --prompt x");
}

TEST(StateBadInput, PromptThatDoesNotFitAfterThePrefix) {
  const json p = json_lines("inspect --json " + saved_prefix())[0];
  const int n = p["tokens"].get<int>();
  const std::string longer(200, 'x');
  const std::string err2 = fails_with(ErrorKind::ResourceExhausted, "generate --ctx-size " + std::to_string(n + 10) + " --state " +
                                          saved_prefix() + " --prompt ' " + longer + "'");
  EXPECT_NE(err2.find("does not fit the context of " + std::to_string(n + 10) + " tokens"), std::string::npos) << err2;
  // A prompt that fits generates until the context is full.
  const json g = json_lines("generate --json -n 64 --ctx-size " + std::to_string(n + 10) + " --state " +
                            saved_prefix() + " --prompt x")[0];
  EXPECT_EQ(g["stop_reason"], "context");
  EXPECT_EQ(g["tokens"].size() + size_t(n) + 1, size_t(n + 10) + 1);  // the last token needs no cache entry
}

TEST(StateBadInput, FailedPrefillLeavesTheExistingFileIntact) {
  const std::string path = ::testing::TempDir() + "keep.kvs";
  std::filesystem::copy_file(saved_prefix(), path, std::filesystem::copy_options::overwrite_existing);
  const std::string before = read_bytes(path);
  fails_with(ErrorKind::ResourceExhausted, "prefill --ctx-size 16 --out " + path + " --prompt " + quote(prefix_text()));
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(json_lines("inspect --json " + path)[0]["checksums"], "ok");
}

}  // namespace
}  // namespace kvstash
