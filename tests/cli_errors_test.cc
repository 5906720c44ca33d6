// Every CLI failure is one line "kvstash: error: ..." with the exit status of its kind (README,
// "Exit codes"), and bad paths fail before any model is loaded or any token is computed.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "kvstash/kernels.h"
#include "test_util.h"

namespace kvstash {
namespace {

using testing::cli_error;

const int kInvalid = exit_code(ErrorKind::InvalidArgument);

// A text file long enough that prefilling it would take many seconds.
std::string long_text_file() {
  const std::string path = testing::temp_path("cli_errors_long.txt");
  std::ofstream(path) << testing::corpus_text();
  return path;
}

// KVSTASH_SIMD must name a level this CPU runs: no silent fallback.
TEST(CliErrors, AnUnknownOrMissingSimdLevelIsAnError) {
  auto run = [](const std::string& level) {
    return testing::run_command("KVSTASH_SIMD=" + level + " " + testing::cli() + " tokenize --prompt hi 2>&1 >/dev/null",
                                false);
  };
  const testing::CommandResult bad = run("sse9");
  EXPECT_EQ(bad.exit_code, kInvalid);
  EXPECT_EQ(bad.out.rfind("kvstash: error: KVSTASH_SIMD=sse9", 0), 0u) << bad.out;
  for (const char* level : {"avx2", "avx512"}) {  // the levels above this CPU's best
    if (parse_simd_level(level, SimdLevel::AVX512) > Kernels::best_level()) {
      EXPECT_EQ(run(level).exit_code, exit_code(ErrorKind::NotSupported)) << level;
    }
  }
}

TEST(CliErrors, UsageErrorsAreOneLineInvalidArgument) {
  for (const char* args :
       {"", "frobnicate", "run --no-such-flag", "run --prompt", "generate --prompt hi", "run --prompt hi -n lots",
        "run --prompt hi --seed -5", "run --prompt hi -n -2", "run --prompt hi --threads -1", "run --prompt hi -c -5",
        "prefill --prompt hi", "prefill --out x.kvs", "perplexity --file x.txt --ctx 128",
        "prefill --prompt hi --out x.kvs --key-order rope", "prefill --prompt hi --out x.kvz --key-order hf"})
    EXPECT_EQ(cli_error(args).exit_code, kInvalid) << args;
}

TEST(CliErrors, LlamaCppMultiLetterFlagsAreRejected) {
  // CLI11 alone reads -ngl as -n with the value "gl".
  for (const char* args : {"run --prompt hi -ngl 99", "run -fa --prompt hi", "generate --state x.kvs -p hi -cnv"})
    EXPECT_EQ(cli_error(args).exit_code, kInvalid) << args;
  // Short options with a number attached and negative values still work.
  testing::CommandResult r = testing::run_command(testing::cli() + " run --prompt hi -n2 --temp 0 --seed -1");
  EXPECT_EQ(r.exit_code, 0) << r.out;
}

TEST(CliErrors, HelpAndVersionExitZero) {
  testing::CommandResult help = testing::run_command(testing::cli() + " run --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--reverse-prompt"), std::string::npos);
  testing::CommandResult v = testing::run_command(testing::cli() + " --version", false);
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_EQ(v.out.rfind("kvstash ", 0), 0u) << v.out;
  EXPECT_NE(v.out.find("simd: "), std::string::npos) << v.out;
  EXPECT_NE(v.out.find("build: "), std::string::npos) << v.out;
}

TEST(CliErrors, TextFileKinds) {
  const std::string dir = testing::temp_path("cli_errors_dir");
  std::filesystem::create_directories(dir);
  EXPECT_EQ(cli_error("run --file " + dir).exit_code, kInvalid);
  EXPECT_EQ(cli_error("prefill --file " + dir + " --out " + testing::temp_path("d.kvs")).exit_code, kInvalid);
  EXPECT_EQ(cli_error("run --file /nonexistent/prompt.txt").exit_code, exit_code(ErrorKind::NotFound));
  EXPECT_EQ(cli_error("perplexity --file /nonexistent.txt").exit_code, exit_code(ErrorKind::NotFound));
  // A model file given as text is refused from its first bytes.
  const testing::CliError binary = cli_error("prefill --file " KVSTASH_DEFAULT_MODEL " --out " + testing::temp_path("b.kvs"));
  EXPECT_EQ(binary.exit_code, kInvalid);
  EXPECT_LT(binary.seconds, 1.0);
  const std::string latin = testing::temp_path("cli_errors_bytes.txt");
  std::ofstream(latin, std::ios::binary) << std::string(4000, '\xff');
  EXPECT_EQ(cli_error("run --file " + latin).exit_code, kInvalid);
}

// --out is checked before the model is loaded: with a missing model too, the error is --out's.
TEST(CliErrors, UnwritableOutFailsBeforeAnyWork) {
  const std::string text = long_text_file();
  const std::string no_model = " --model /nonexistent/model.gguf";
  const std::string dir = testing::temp_path("cli_errors_outdir");
  std::filesystem::create_directories(dir);
  struct Case {
    std::string out;
    ErrorKind kind;
  };
  std::vector<Case> cases = {{"/nonexistent-dir/x.kvs", ErrorKind::NotFound}, {dir, ErrorKind::InvalidArgument}};
  // A read-only directory; root writes anywhere but in sysfs.
  const std::string ro = testing::temp_path("cli_errors_ro");
  std::filesystem::create_directories(ro);
  chmod(ro.c_str(), 0555);
  cases.push_back({(access(ro.c_str(), W_OK) == 0 ? std::string("/sys") : ro) + "/x.kvs", ErrorKind::IOError});
  for (const Case& c : cases) {
    const testing::CliError e = cli_error("prefill --file " + text + " --out " + c.out + no_model);
    EXPECT_EQ(e.exit_code, exit_code(c.kind)) << c.out << ": " << e.line;
    EXPECT_LT(e.seconds, 1.0) << c.out;
    // With the real model it fails just as fast: no prefill runs.
    EXPECT_EQ(cli_error("prefill --file " + text + " --out " + c.out).exit_code, exit_code(c.kind));
  }
  EXPECT_TRUE(std::filesystem::is_empty(ro));  // no temp file left behind
}

TEST(CliErrors, ContextBeyondTrainingNeedsTheOverride) {
  // SmolLM2 was trained on 8,192 tokens.
  EXPECT_EQ(cli_error("run --prompt hi -n 1 -c 16384").exit_code, kInvalid);
  testing::CommandResult ok = testing::run_command(testing::cli() + " run --prompt hi -n 1 -c 16384 --ctx-beyond-training");
  EXPECT_EQ(ok.exit_code, 0) << ok.out;
  // Far too big: a clean one-line refusal, never std::bad_alloc.
  const int code = cli_error("run --prompt hi -n 1 --ctx-beyond-training -c 100000000").exit_code;
  EXPECT_TRUE(code == kInvalid || code == exit_code(ErrorKind::ResourceExhausted)) << code;
}

}  // namespace
}  // namespace kvstash
