// The CLI's .kvz commands: compress / decompress (lossless is byte exact, the bytes do not depend
// on --threads), inspect, prefill --out X.kvz, generate and perplexity from a .kvz (equal across
// processes, lossless equal to the .kvs), and bad input refused with one line and its exit code.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "kvstash/error.h"
#include "kvstash/kvz.h"
#include "kvstash/state.h"
#include "test_util.h"

namespace kvstash {
namespace {

using testing::cli_error;
using testing::CliError;
using testing::cli_json;
using testing::run_command;
using testing::shared_state;
using testing::temp_path;

std::vector<uint8_t> bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

// Removes the shared files when the test process ends.
struct RemoveAtExit {
  std::vector<std::string> paths;
  ~RemoveAtExit() {
    for (const std::string& p : paths) std::filesystem::remove(p);
  }
};
RemoveAtExit& shared_files() {
  static RemoveAtExit r;
  return r;
}

// The shared state compressed once per test process: the default levels (1, 3, 5, ...), and lossless only.
const std::string& lossy_kvz() {
  static const std::string path = [] {
    const std::string p = temp_path("shared_lossy.kvz");
    shared_files().paths.push_back(p);
    cli_json("compress " + shared_state() + " " + p + " --json");
    return p;
  }();
  return path;
}
const std::string& lossless_kvz() {
  static const std::string path = [] {
    const std::string p = temp_path("shared_lossless.kvz");
    shared_files().paths.push_back(p);
    cli_json("compress " + shared_state() + " " + p + " --lossless --json");
    return p;
  }();
  return path;
}

TEST(CliKvz, LosslessCompressDecompressIsByteExact) {
  const std::string kvs = temp_path("round_trip.kvs");
  const nlohmann::json d = cli_json("decompress " + lossless_kvz() + " " + kvs + " --json");
  EXPECT_EQ(d["level"], kvz_lossless_level());
  EXPECT_EQ(d["params"], "lossless");
  EXPECT_EQ(bytes_of(kvs), bytes_of(shared_state()));
  std::filesystem::remove(kvs);
}

TEST(CliKvz, CompressBytesDoNotDependOnThreads) {
  const std::string one = temp_path("t1.kvz"), two = temp_path("t2.kvz");
  const nlohmann::json j1 = cli_json("compress " + shared_state() + " " + one + " --threads 1 --level 1,3 --level " +
                                     std::to_string(kvz_lossless_level()) + " --chunk-tokens 100 --json");
  const nlohmann::json j2 = cli_json("compress " + shared_state() + " " + two + " --threads 2 --level 3,1 --level " +
                                     std::to_string(kvz_lossless_level()) + " --chunk-tokens 100 --json");
  EXPECT_EQ(j1["threads"], 1);
  EXPECT_EQ(j2["threads"], 2);
  EXPECT_EQ(j1["levels"].size(), 3u);
  EXPECT_EQ(j1["chunk_tokens"], 100);
  EXPECT_EQ(j1["out_bytes"], j2["out_bytes"]);
  EXPECT_EQ(bytes_of(one), bytes_of(two));
  std::filesystem::remove(one);
  std::filesystem::remove(two);
}

TEST(CliKvz, InspectDescribesChunksAndLevels) {
  const nlohmann::json kvs = cli_json("inspect " + shared_state() + " --json");
  const nlohmann::json j = cli_json("inspect " + lossy_kvz() + " --json");
  EXPECT_EQ(j["format"], "kvz");
  EXPECT_EQ(j["tokens"], kvs["tokens"]);
  EXPECT_EQ(j["token_ids"], kvs["token_ids"]);
  EXPECT_EQ(j["model_fingerprint"], kvs["model_fingerprint"]);
  EXPECT_EQ(j["checksums"], "ok");
  EXPECT_EQ(j["chunk_tokens"], 256);
  EXPECT_EQ(j["chunks"], (kvs["tokens"].get<int64_t>() + 255) / 256);
  EXPECT_EQ(j["bytes"], std::filesystem::file_size(lossy_kvz()));
  ASSERT_EQ(j["levels"].size(), size_t(kvz_lossless_level()) / 2);  // 1, 3, 5, ... of the lossy levels
  double last = 0;
  for (const nlohmann::json& l : j["levels"]) {  // higher levels cost more bits
    EXPECT_GT(l["bits_per_value"].get<double>(), last);
    last = l["bits_per_value"].get<double>();
    EXPECT_NEAR(l["ratio_to_f16"].get<double>(), 16.0 / last, 1e-9);
    EXPECT_EQ(l["params"].get<std::string>().rfind("lossy ", 0), 0u);
  }
  const testing::CommandResult text = run_command(testing::cli() + " inspect " + lossy_kvz());
  EXPECT_EQ(text.exit_code, 0);
  EXPECT_NE(text.out.find("  level 1 "), std::string::npos) << text.out;
}

// prefill --out X.kvz, then generate from it in separate processes: the same tokens each time,
// greedy and seeded; and a lossless .kvz generates what its .kvs does.
TEST(CliKvz, GenerationFromKvzIsEqualAcrossProcesses) {
  const std::string txt = temp_path("prefix.txt"), kvz = temp_path("prefill.kvz");
  {
    std::ofstream out(txt);
    out << testing::corpus_text().substr(0, 700);
  }
  const nlohmann::json p = cli_json("prefill --file " + txt + " --out " + kvz + " --level 2 --json");
  EXPECT_GT(p["prompt_tokens"].get<int>(), 100);
  const nlohmann::json info = cli_json("inspect " + kvz + " --json");
  ASSERT_EQ(info["levels"].size(), 1u);
  EXPECT_EQ(info["levels"][0]["level"], 2);
  const std::string gen = "generate --state " + kvz + " -p ' And' -n 16 --ignore-eos --json ";
  const nlohmann::json a = cli_json(gen + "--temp 0"), b = cli_json(gen + "--temp 0");
  EXPECT_EQ(a["tokens"].size(), 16u);
  EXPECT_EQ(a["tokens"], b["tokens"]);
  const nlohmann::json s1 = cli_json(gen + "--temp 0.9 --seed 7"), s2 = cli_json(gen + "--temp 0.9 --seed 7");
  EXPECT_EQ(s1["tokens"], s2["tokens"]);
  const std::string same = " -p ' And' -n 16 --ignore-eos --temp 0 --json";
  EXPECT_EQ(cli_json("generate --state " + lossless_kvz() + same)["tokens"],
            cli_json("generate --state " + shared_state() + same)["tokens"]);
  std::filesystem::remove(txt);
  std::filesystem::remove(kvz);
}

TEST(CliKvz, PerplexityAfterLosslessKvzEqualsKvs) {
  const std::string txt = temp_path("continuation.txt");
  {
    std::ofstream out(txt);
    out << testing::corpus_text().substr(1500, 400);
  }
  const nlohmann::json kvs = cli_json("perplexity --state " + shared_state() + " --file " + txt + " --json");
  const nlohmann::json kvz = cli_json("perplexity --state " + lossless_kvz() + " --file " + txt + " --json");
  const nlohmann::json lossy = cli_json("perplexity --state " + lossy_kvz() + " --level 1 --file " + txt + " --json");
  EXPECT_GT(kvs["tokens"].get<int>(), 50);
  EXPECT_EQ(kvs["perplexity"], kvz["perplexity"]);
  EXPECT_EQ(kvs["tokens"], lossy["tokens"]);
  EXPECT_NE(kvs["perplexity"], lossy["perplexity"]);
  EXPECT_EQ(lossy["level"], 1);
  std::filesystem::remove(txt);
}

TEST(CliKvz, BadInputIsOneLineWithItsExitCode) {
  const int invalid = exit_code(ErrorKind::InvalidArgument), corrupt = exit_code(ErrorKind::Corruption);
  CliError e = cli_error("generate --state " + lossless_kvz() + " --level 1 -p x -n 1");
  EXPECT_EQ(e.exit_code, invalid);
  EXPECT_EQ(e.line, "kvstash: error: " + lossless_kvz() + ": level 1 is not stored in this file (stored: " +
                        std::to_string(kvz_lossless_level()) + ")\n");
  e = cli_error("generate --state " + shared_state() + " --level 1 -p x -n 1");
  EXPECT_EQ(e.exit_code, invalid);
  const std::string out = temp_path("bad.kvz");
  EXPECT_EQ(cli_error("compress " + shared_state() + " " + out + " --level 0").exit_code, invalid);
  EXPECT_EQ(cli_error("compress " + shared_state() + " " + out + " --level 1 --lossless").exit_code, invalid);
  EXPECT_EQ(cli_error("compress " + shared_state() + " " + out + " --chunk-tokens 0").exit_code, invalid);
  EXPECT_EQ(cli_error("prefill -p hello --out " + temp_path("x.kvs") + " --lossless").exit_code, invalid);
  EXPECT_FALSE(std::filesystem::exists(out));

  // One flipped byte in a chunk, a truncated file: Corruption, from every command that reads it.
  std::vector<uint8_t> f = bytes_of(lossy_kvz());
  f[f.size() - 100] ^= 0x04;
  write_bytes(out, f);
  e = cli_error("generate --state " + out + " -p x -n 1");
  EXPECT_EQ(e.exit_code, corrupt);
  EXPECT_EQ(e.line.rfind("kvstash: error: " + out + ": checksum mismatch in chunk ", 0), 0u) << e.line;
  EXPECT_EQ(cli_error("inspect " + out).exit_code, corrupt);
  EXPECT_EQ(cli_error("decompress " + out + " " + temp_path("y.kvs")).exit_code, corrupt);
  f = bytes_of(lossy_kvz());
  f.resize(f.size() / 2);
  write_bytes(out, f);
  e = cli_error("inspect " + out);
  EXPECT_EQ(e.exit_code, corrupt);
  EXPECT_NE(e.line.find("lies outside the file (" + std::to_string(f.size()) + " bytes)"), std::string::npos) << e.line;

  // A .kvz of another model (its fingerprint differs): ModelMismatch.
  State other = load_state(shared_state());
  other.model_fingerprint.bytes[3] ^= 0x40;
  KvzOptions one_level;
  one_level.levels = {1};
  save_kvz(other, out, one_level);
  e = cli_error("generate --state " + out + " -p x -n 1");
  EXPECT_EQ(e.exit_code, exit_code(ErrorKind::ModelMismatch));
  EXPECT_NE(e.line.find("another model"), std::string::npos) << e.line;
  const std::string txt = temp_path("other.txt");
  {
    std::ofstream t(txt);
    t << " And it was so.";
  }
  EXPECT_EQ(cli_error("perplexity --state " + out + " --file " + txt).exit_code, exit_code(ErrorKind::ModelMismatch));
  std::filesystem::remove(out);
  std::filesystem::remove(txt);
}

}  // namespace
}  // namespace kvstash
