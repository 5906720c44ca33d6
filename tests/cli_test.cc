// The command-line program end to end on the real model: output fields, determinism, bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "kvstash/kernels.h"
#include "test_util.h"

namespace kvstash {
namespace {

using testing::cli;
using testing::cli_error;
using testing::run_command;
using nlohmann::json;

// A copy of the default model with one byte string replaced by another of the same length.
std::string patched_model(const std::string& name, const std::string& from, const std::string& to,
                          size_t skip_after = 0, const std::string& patch_at_skip = "") {
  std::ifstream in(KVSTASH_DEFAULT_MODEL, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t at = bytes.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (patch_at_skip.empty()) bytes.replace(at, to.size(), to);
  else bytes.replace(at + from.size() + skip_after, patch_at_skip.size(), patch_at_skip);
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

TEST(Cli, RunJsonHasTheDocumentedFields) {
  json j = testing::cli_json("run --prompt 'The capital of France is' -n 12 --temp 0 --json");
  for (const char* key : {"tokens", "text", "prompt_tokens", "time_to_first_token_ms", "prefill_tokens_per_s",
                          "decode_tokens_per_s", "seed", "stop_reason"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["prompt_tokens"], 5);
  EXPECT_EQ(j["tokens"].size(), 12u);
  EXPECT_GT(j["decode_tokens_per_s"].get<double>(), 0);
  EXPECT_FALSE(j["text"].get<std::string>().empty());
}

TEST(Cli, GreedyIsTheSameForEveryThreadCount) {
  // More threads than cores only if the user insists (the machine may have two).
  const std::string args = "run --prompt 'Once upon a time' -n 24 --temp 0 --json --threads-oversubscribe";
  json a = testing::cli_json(args + " --threads 1");
  json b = testing::cli_json(args + " --threads 2");
  json c = testing::cli_json(args + " --threads 3");
  EXPECT_EQ(c["threads"], 3);
  EXPECT_EQ(a["tokens"], b["tokens"]);
  EXPECT_EQ(a["tokens"], c["tokens"]);
}

TEST(Cli, SeededSamplingRepeatsAcrossProcessesAndThreads) {
  const std::string args = "run --prompt 'My favourite animal is' -n 32 --temp 1.0 --seed 99 --json";
  json a = testing::cli_json(args + " --threads 1");
  json b = testing::cli_json(args + " --threads 3 --threads-oversubscribe");
  json c = testing::cli_json("run --prompt 'My favourite animal is' -n 32 --temp 1.0 --seed 100 --json");
  EXPECT_EQ(a["tokens"], b["tokens"]);
  EXPECT_EQ(a["seed"], 99);
  EXPECT_NE(a["tokens"], c["tokens"]);
}

TEST(Cli, ChatTemplateWrapsThePrompt) {
  json j = testing::cli_json("run --chat --prompt 'What is 2+2?' -n 8 --temp 0 --json");
  // <|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n
  EXPECT_GT(j["prompt_tokens"].get<int>(), 10);
}

TEST(Cli, TokenizeJson) {
  json j = testing::cli_json("tokenize --prompt 'Hello world' --json");
  EXPECT_EQ(j["tokens"], json::parse("[19556, 905]"));
}

// --json and --version name the kernel level that computed the result; KVSTASH_SIMD picks it.
TEST(Cli, JsonAndVersionReportTheSimdLevelInUse) {
  for (const char* level : {"scalar", "avx2", "avx512"}) {
    if (parse_simd_level(level, Kernels::best_level()) > Kernels::best_level()) continue;
    const std::string env = std::string("KVSTASH_SIMD=") + level + " ";
    const testing::CommandResult r = testing::run_command(env + testing::cli() + " --version", false);
    EXPECT_NE(r.out.find(std::string("simd: ") + level + "\n"), std::string::npos) << r.out;
    const json j = json::parse(testing::run_command(env + testing::cli() + " tokenize --prompt hi --json", false).out);
    EXPECT_EQ(j["simd"], level);
  }
  EXPECT_EQ(testing::cli_json("tokenize --prompt hi --json")["simd"], Kernels::active().name());
}

TEST(Cli, PerplexityJson) {
  const std::string text = ::testing::TempDir() + "ppl.txt";
  std::ofstream(text) << testing::corpus_text().substr(0, 3000);
  json j = testing::cli_json("perplexity --file " + text + " -c 128 --json");
  EXPECT_GT(j["tokens"].get<int>(), 300);
  EXPECT_GT(j["perplexity"].get<double>(), 1.0);
  EXPECT_LT(j["perplexity"].get<double>(), 100.0);
  EXPECT_GT(j["tokens_per_s"].get<double>(), 0);
  EXPECT_EQ(j["ctx"], 128);
}

TEST(Cli, HelpOnEverySubcommand) {
  for (const char* sub : {"run", "prefill", "generate", "perplexity", "tokenize"}) {
    testing::CommandResult r = run_command(cli() + " " + sub + " --help");
    EXPECT_EQ(r.exit_code, 0) << sub;
    EXPECT_NE(r.out.find("--model"), std::string::npos) << sub;
  }
  EXPECT_EQ(run_command(cli() + " inspect --help").exit_code, 0);
  EXPECT_EQ(run_command(cli() + " --help").exit_code, 0);
}

TEST(CliBadInput, MissingModelFile) {
  EXPECT_EQ(cli_error("run --prompt hi --model /nonexistent.gguf").exit_code, exit_code(ErrorKind::NotFound));
}

TEST(CliBadInput, UnknownArchitecture) {
  const std::string m = patched_model("arch.gguf", "llama.block_count", "llamX.block_count");
  // general.architecture still says llama, so the llama keys are now missing...
  EXPECT_EQ(cli_error("run --prompt hi --model " + m).exit_code, exit_code(ErrorKind::NotFound));
  const std::string g = patched_model("arch2.gguf", std::string("\x05\0\0\0\0\0\0\0llama", 13),
                                      std::string("\x05\0\0\0\0\0\0\0gemma", 13));
  EXPECT_EQ(cli_error("run --prompt hi --model " + g).exit_code, exit_code(ErrorKind::NotSupported));
}

TEST(CliBadInput, UnsupportedTensorType) {
  // Tensor info: name, u32 n_dims (2), 2 x u64 dims, then the u32 type: make it 99.
  const std::string m = patched_model("type.gguf", "blk.0.attn_q.weight", "", 4 + 16, std::string("\x63\0\0\0", 4));
  EXPECT_EQ(cli_error("run --prompt hi --model " + m).exit_code, exit_code(ErrorKind::NotSupported));
}

TEST(CliBadInput, MissingTokenizerMetadata) {
  const std::string m = patched_model("tok.gguf", "tokenizer.ggml.tokens", "tokenizer.ggml.tokenX");
  EXPECT_EQ(cli_error("run --prompt hi --model " + m).exit_code, exit_code(ErrorKind::NotFound));
}

TEST(CliBadInput, PromptLongerThanContext) {
  EXPECT_EQ(cli_error("run --ctx-size 8 --prompt 'one two three four five six seven eight nine ten'").exit_code,
            exit_code(ErrorKind::ResourceExhausted));
}

TEST(CliBadInput, BadSamplingParameter) {
  EXPECT_EQ(cli_error("run --prompt hi --top-p 2").exit_code, exit_code(ErrorKind::InvalidArgument));
}

}  // namespace
}  // namespace kvstash
