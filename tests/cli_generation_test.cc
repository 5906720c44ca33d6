// llama.cpp's habits in the CLI: -f/--file and '-' for stdin, --seed -1, -n -1, --ignore-eos,
// -r/--reverse-prompt, --chat on generate, --threads capped at the cores, separated continuations.
#include <gtest/gtest.h>
#include <sched.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "kvstash/engine.h"
#include "kvstash/generate.h"
#include "kvstash/prefix.h"
#include "test_util.h"

namespace kvstash {
namespace {

using nlohmann::json;
using testing::cli;
using testing::cli_json;
using testing::run_command;
using testing::shared_state;

const char* kFrance = "The capital of France is";  // greedy: " Paris.\n\nThe United States has a population ..."

TEST(CliGeneration, PromptFromAFileOrStdin) {
  const std::string path = ::testing::TempDir() + "cli_prompt.txt";
  std::ofstream(path) << kFrance;
  const json p = cli_json(std::string("run --prompt '") + kFrance + "' -n 4 --temp 0 --json");
  const json f = cli_json("run --file " + path + " -n 4 --temp 0 --json");
  const json s = cli_json("run -f - -n 4 --temp 0 --json < " + path);
  EXPECT_EQ(p["tokens"], f["tokens"]);
  EXPECT_EQ(p["tokens"], s["tokens"]);
  // prefill reads stdin too.
  const json st = cli_json("prefill -f - --out " + ::testing::TempDir() + "cli_stdin.kvs --json < " + path);
  EXPECT_EQ(st["prompt_tokens"], p["prompt_tokens"]);
}

TEST(CliGeneration, SeedMinusOneIsRandomAndReported) {
  const std::string args = std::string("run --prompt '") + kFrance + "' -n 6 --temp 1.5 --json";
  const json a = cli_json(args + " --seed -1");
  const json b = cli_json(args);
  EXPECT_NE(a["seed"], b["seed"]);
  const json again = cli_json(args + " --seed " + std::to_string(a["seed"].get<uint64_t>()));
  EXPECT_EQ(again["tokens"], a["tokens"]);
}

TEST(CliGeneration, NMinusOneRunsToEndOfGenerationOrAFullContext) {
  const json eos = cli_json("run --chat --prompt 'What is 2+2?' -n -1 --temp 0 --json");
  EXPECT_EQ(eos["stop_reason"], "eos");
  const json full = cli_json(std::string("run --prompt '") + kFrance + "' -n -1 -c 16 --ignore-eos --temp 0 --json");
  EXPECT_EQ(full["stop_reason"], "context");
  // Every position is filled; the last token sampled is returned without being fed back.
  EXPECT_EQ(full["tokens"].size(), size_t(16 - full["prompt_tokens"].get<int>() + 1));
}

TEST(CliGeneration, IgnoreEosKeepsGoing) {
  const std::string args = "run --chat --prompt 'What is 2+2? Answer in one word.' -n 24 --temp 0 --json";
  const json stops = cli_json(args);
  EXPECT_EQ(stops["stop_reason"], "eos");
  EXPECT_LT(stops["tokens"].size(), 24u);
  const json goes_on = cli_json(args + " --ignore-eos");
  EXPECT_EQ(goes_on["stop_reason"], "length");
  EXPECT_EQ(goes_on["tokens"].size(), 24u);
}

TEST(CliGeneration, ReversePromptStopsBeforeTheString) {
  const std::string args = std::string("run --prompt '") + kFrance + "' -n 24 --temp 0";
  const std::string full = cli_json(args + " --json")["text"];
  ASSERT_NE(full.find("United"), std::string::npos) << full;
  const json j = cli_json(args + " --json -r zebra -r United");
  EXPECT_EQ(j["stop_reason"], "stop");
  EXPECT_EQ(j["text"], full.substr(0, full.find("United")));
  testing::CommandResult plain = run_command(cli() + " " + args + " --reverse-prompt United", false);
  EXPECT_EQ(plain.exit_code, 0);
  EXPECT_EQ(plain.out, full.substr(0, full.find("United")) + "\n");
}

// The library side, which the server will use: what on_text streams is exactly what is returned.
TEST(CliGeneration, StopStringsAreHeldBackWhileStreaming) {
  const Model& m = testing::default_model();
  ThreadPool pool(2);
  Engine engine(m, pool, EngineOptions{.n_ctx = 64});
  GenerateOptions o;
  o.n_predict = 24;
  o.sampling.temperature = 0;
  o.stop = {"population of"};
  std::string streamed;
  Sequence seq = engine.new_sequence();
  const GenerateResult r =
      generate(engine, seq, prompt_tokens(m.tokenizer(), kFrance), o, [&](const std::string& s) { streamed += s; });
  EXPECT_EQ(r.stop_reason, "stop");
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(r.text.find("population"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("United States has a "), std::string::npos) << r.text;
}

TEST(CliGeneration, GenerateChatAppendsAUserMessage) {
  const json plain = cli_json("generate --state " + shared_state() + " -p 'Summarize.' -n 2 --temp 0 --json");
  const json chat = cli_json("generate --state " + shared_state() + " --chat -p 'Summarize.' -n 2 --temp 0 --json");
  // <|im_start|>user\n ... <|im_end|>\n<|im_start|>assistant\n around the prompt; the prefix is reused.
  EXPECT_GE(chat["prompt_tokens"].get<int>(), plain["prompt_tokens"].get<int>() + 6);
  EXPECT_EQ(chat["reused_tokens"], cli_json("inspect --json " + shared_state())["tokens"]);
}

TEST(CliGeneration, SeveralPromptsAreSeparatedInPlainText) {
  testing::CommandResult r = run_command(
      cli() + " generate --state " + shared_state() + " -p ' And' -p ' Then' -p ' So' -n 3 --temp 0", false);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  for (const char* header : {"--- prompt 1/3\n And", "\n--- prompt 2/3\n Then", "\n--- prompt 3/3\n So"})
    EXPECT_NE(r.out.find(header), std::string::npos) << header << " in\n" << r.out;
  testing::CommandResult one =
      run_command(cli() + " generate --state " + shared_state() + " -p ' And' -n 3 --temp 0", false);
  EXPECT_EQ(one.out.find("---"), std::string::npos) << one.out;
}

TEST(CliGeneration, ThreadsAreCappedAtTheCores) {
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  const int cores = CPU_COUNT(&set);
  const std::string args = "run --prompt hi -n 1 --temp 0 --json";
  const std::string err_file = ::testing::TempDir() + "threads.err";
  testing::CommandResult r = run_command(cli() + " " + args + " --threads 1000 2>" + err_file, false);
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_EQ(json::parse(r.out)["threads"], cores);
  std::ifstream err(err_file);
  const std::string note((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
  EXPECT_EQ(std::count(note.begin(), note.end(), '\n'), 1) << note;
  // The user may insist.
  EXPECT_EQ(cli_json(args + " --threads-oversubscribe --threads " + std::to_string(cores + 1))["threads"], cores + 1);
}

}  // namespace
}  // namespace kvstash
