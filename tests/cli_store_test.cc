// The prefix store's disk tier through the CLI (--prompt-cache), end to end on the real model:
// a cached run gives the uncached run's tokens exactly, across processes; corrupt, foreign, full,
// read-only and over-budget directories are survived with one warning (or refused, for a
// directory that is not a store). Each CLI invocation is a separate process: every hit below is a
// hit across processes and across restarts.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <functional>

#include "kvstash/kvz.h"
#include "store_test_util.h"

namespace kvstash {
namespace {

using namespace kvstash::testing;

std::string disk(const std::string& dir) { return "--prompt-cache " + dir; }

// Runs the prompt through a fresh store once (a miss that fills it).
CliRun fill(const std::string& prompt, const std::string& dir, const std::string& gen = kGreedy) {
  CliRun r = cached_run(prompt, disk(dir), gen);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.cached_tokens(), 0) << r.describe();
  return r;
}

// A miss, then a full hit, both with the uncached run's tokens; the entries hold the codec level.
void expect_miss_then_exact_hit(const std::string& gen, const std::string& extra_flags = "", int64_t level = 0) {
  const CliRun& plain = uncached_run(prompt_file(), gen);
  ScratchDir d("exact");
  const std::string store = disk(d / "store") + " " + extra_flags;
  const CliRun miss = cached_run(prompt_file(), store, gen);
  expect_clean_exact(miss, plain);
  EXPECT_EQ(miss.cached_tokens(), 0);
  EXPECT_EQ(miss.bytes_read("disk"), 0u);
  EXPECT_FALSE(entry_files(d / "store").empty());
  for (const std::string& e : entry_files(d / "store")) EXPECT_EQ(entry_codec_level(e), level) << e;

  const CliRun hit = cached_run(prompt_file(), store, gen);
  expect_clean_exact(hit, plain);
  const int64_t n = plain.json["prompt_tokens"];
  EXPECT_EQ(hit.cached_tokens(), full_hit_tokens(n));
  EXPECT_GT(hit.bytes_read("disk"), 0u);
  EXPECT_EQ(hit.chunks_read("disk"), full_hit_tokens(n) / kChunk);
}

TEST(CliStoreExact, GreedyMissAndHitGiveTheUncachedTokens) { expect_miss_then_exact_hit(kGreedy); }

TEST(CliStoreExact, SeededSamplingMissAndHitGiveTheUncachedTokens) { expect_miss_then_exact_hit(kSeeded); }

TEST(CliStoreExact, LosslessCodecMissAndHitGiveTheUncachedTokens) {
  expect_miss_then_exact_hit(kGreedy, "--cache-codec lossless", kvz_lossless_level());
}

// The token ids `run --file path` feeds (the file must not end in a newline: $(...) drops it).
std::vector<int> tokenize_file(const std::string& path) {
  const CliRun r = run_cli("tokenize --json --prompt \"$(cat " + path + ")\"");
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.tokens().size(), size_t(uncached_run(path).json["prompt_tokens"])) << path;
  return r.tokens().get<std::vector<int>>();
}

// A prompt sharing its first chunks (not all) with an earlier one loads just those.
TEST(CliStoreExact, PromptSharingLeadingChunksHitsOnlyThose) {
  const std::string first = prompt_file();
  // The same opening 1,000 bytes, then other prose.
  const std::string second = corpus_prompt_file(1000) + ".mixed.txt";
  write_file(second, corpus_text().substr(0, 1000) + corpus_text().substr(5000, 1400));
  const CliRun& plain = uncached_run(second);
  const std::vector<int> ta = tokenize_file(first), tb = tokenize_file(second);
  size_t common = 0;
  while (common < ta.size() && common < tb.size() && ta[common] == tb[common]) ++common;
  const int64_t shared = int64_t(common) / kChunk * kChunk;
  ASSERT_GE(shared, 2 * kChunk) << "the prompts should share at least two chunks";
  ASSERT_LT(shared, full_hit_tokens(int64_t(tb.size()))) << "the prompts should differ before the end";

  ScratchDir d("shared");
  fill(first, d / "store");
  const CliRun r = cached_run(second, disk(d / "store"));
  expect_clean_exact(r, plain);
  EXPECT_EQ(r.cached_tokens(), shared);
  EXPECT_EQ(r.chunks_read("disk"), shared / kChunk);
}

// prefill through the store writes the state file it writes without one, byte for byte; the
// chunks it stored serve a later `run` of the same text.
TEST(CliStoreCrossProcess, PrefillStateIsByteIdenticalAndItsChunksServeRun) {
  ScratchDir d("prefill");
  const std::string store = disk(d / "store") + " --cache-chunk-tokens " + std::to_string(kChunk);
  const std::string prefill = "prefill --file " + prompt_file() + " --json -o ";
  const CliRun plain_prefill = run_cli(prefill + (d / "plain.kvs"));
  ASSERT_EQ(plain_prefill.exit_code, 0) << plain_prefill.describe();
  const CliRun miss = run_cli(prefill + (d / "miss.kvs") + " " + store);
  ASSERT_EQ(miss.exit_code, 0) << miss.describe();
  EXPECT_EQ(miss.cached_tokens(), 0);
  const CliRun hit = run_cli(prefill + (d / "hit.kvs") + " " + store);
  ASSERT_EQ(hit.exit_code, 0) << hit.describe();
  const int64_t n = plain_prefill.json["prompt_tokens"];
  EXPECT_EQ(hit.cached_tokens(), full_hit_tokens(n));
  const std::string expected = read_file(d / "plain.kvs");
  ASSERT_FALSE(expected.empty());
  EXPECT_TRUE(read_file(d / "miss.kvs") == expected) << "a prefill that filled the store wrote another state";
  EXPECT_TRUE(read_file(d / "hit.kvs") == expected) << "a prefill served by the store wrote another state";

  const CliRun run = cached_run(prompt_file(), disk(d / "store"));
  expect_clean_exact(run, uncached_run(prompt_file()));
  EXPECT_EQ(run.cached_tokens(), full_hit_tokens(n));
  EXPECT_TRUE(miss.warnings().empty() && hit.warnings().empty()) << miss.err << hit.err;
}

// Two processes filling one directory at once: both exact, no warnings, no temp files, and a
// third process hits everything.
TEST(CliStoreCrossProcess, ConcurrentProcessesShareOneDirectory) {
  const CliRun& plain = uncached_run(prompt_file());
  ScratchDir d("concurrent");
  const std::string args = cli() + " run --file " + prompt_file() + " " + kGreedy + " --json --cache-chunk-tokens " +
                           std::to_string(kChunk) + " " + disk(d / "store");
  std::string script;
  for (const char* i : {"1", "2"})
    script += "{ " + args + " >" + (d / i) + ".json 2>" + (d / i) + ".err; echo $? >" + (d / i) + ".rc; } & ";
  ASSERT_EQ(run_command(script + "wait").exit_code, 0);
  for (const char* i : {"1", "2"}) {
    const std::string err = read_file(d / i + ".err");
    EXPECT_EQ(read_file(d / i + ".rc"), "0\n") << err;
    const nlohmann::json j = nlohmann::json::parse(read_file(d / i + ".json"), nullptr, false);
    EXPECT_EQ(j.is_object() ? j.value("tokens", nlohmann::json()) : j, plain.tokens()) << err;
    EXPECT_EQ(err, "");
  }
  EXPECT_TRUE(temp_files(d / "store").empty());
  const CliRun third = cached_run(prompt_file(), disk(d / "store"));
  expect_clean_exact(third, plain);
  EXPECT_EQ(third.cached_tokens(), full_hit_tokens(plain.json["prompt_tokens"]));
}

// --- corrupt entries ---------------------------------------------------------------------------

// Fills a store, damages the entry of chunk 1 with `damage`, then expects: one warning naming it,
// the uncached tokens with chunk 0 loaded; afterwards a good entry in its place (the same bytes
// past the hit counter as before) and a full hit without warnings.
void expect_damage_survived(const std::string& name, const std::function<void(const std::string&)>& damage) {
  const CliRun& plain = uncached_run(prompt_file());
  const int64_t n = plain.json["prompt_tokens"];
  ScratchDir d(name);
  const std::string dir = d / "store";
  fill(prompt_file(), dir);
  const std::string entry = entry_of_chunk(dir, kChunk);
  ASSERT_FALSE(entry.empty()) << "no entry holds chunk 1";
  const std::string good = read_file(entry);
  damage(entry);

  const CliRun r = cached_run(prompt_file(), disk(dir));
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.tokens(), plain.tokens());
  EXPECT_EQ(r.cached_tokens(), kChunk) << "chunk 0 is still good";
  ASSERT_EQ(r.warnings().size(), 1u) << r.err;
  EXPECT_NE(r.warnings()[0].find(entry_hex(entry)), std::string::npos) << r.warnings()[0];
  EXPECT_NE(r.warnings()[0].find("dropped, recomputing"), std::string::npos) << r.warnings()[0];

  const std::string now = read_file(entry);
  ASSERT_EQ(now.size(), good.size()) << "the damaged entry was not replaced";
  EXPECT_TRUE(now.substr(16) == good.substr(16)) << "the replacement differs from the original entry";
  const CliRun healed = cached_run(prompt_file(), disk(dir));
  expect_clean_exact(healed, plain);
  EXPECT_EQ(healed.cached_tokens(), full_hit_tokens(n));
}

void flip_byte(const std::string& path, size_t at) {
  std::string b = read_file(path);
  ASSERT_GT(b.size(), at);
  b[at] = char(b[at] ^ 0x5a);
  write_file(path, b);
}

TEST(CliStoreCorrupt, FlippedByteInEntryPayloadIsDroppedAndRecomputed) {
  expect_damage_survived("flip", [](const std::string& p) { flip_byte(p, fs::file_size(p) / 2); });
}

TEST(CliStoreCorrupt, TruncatedEntryIsDroppedAndRecomputed) {
  expect_damage_survived("truncate", [](const std::string& p) { fs::resize_file(p, fs::file_size(p) / 2); });
}

TEST(CliStoreCorrupt, GarbageFileNamedLikeAnEntryIsDroppedAndRecomputed) {
  expect_damage_survived("garbage", [](const std::string& p) {
    std::string junk(fs::file_size(p), '\0');
    uint32_t x = 12345;
    for (char& c : junk) c = char((x = x * 1103515245 + 12345) >> 16);
    write_file(p, junk);
  });
}

// Two bad entries: a run stops loading at the first (dropped, warned about, recomputed and stored
// again) and computes everything after it, so the second is only reached, dropped and replaced by
// the next run. Every run gives the uncached tokens; two runs leave a healthy store.
TEST(CliStoreCorrupt, FlippedAndTruncatedEntriesAreEachReplacedWithinTwoRuns) {
  const CliRun& plain = uncached_run(prompt_file());
  ScratchDir d("two_bad");
  const std::string dir = d / "store";
  fill(prompt_file(), dir);
  const std::string flipped = entry_of_chunk(dir, kChunk), truncated = entry_of_chunk(dir, 3 * kChunk);
  ASSERT_FALSE(flipped.empty() || truncated.empty());
  flip_byte(flipped, fs::file_size(flipped) / 2);
  fs::resize_file(truncated, fs::file_size(truncated) / 2);

  std::string warned;
  for (int run = 0; run < 2; ++run) {
    const CliRun r = cached_run(prompt_file(), disk(dir));
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_EQ(r.tokens(), plain.tokens());
    EXPECT_LE(r.warnings().size(), 1u) << r.err;
    for (const std::string& w : r.warnings()) warned += w + "\n";
  }
  EXPECT_NE(warned.find(entry_hex(flipped)), std::string::npos) << warned;
  EXPECT_NE(warned.find(entry_hex(truncated)), std::string::npos) << warned;
  const CliRun healed = cached_run(prompt_file(), disk(dir));
  expect_clean_exact(healed, plain);
  EXPECT_EQ(healed.cached_tokens(), full_hit_tokens(plain.json["prompt_tokens"]));
}

// --- directories that are not stores, or cannot take writes ------------------------------------

TEST(CliStoreDirectory, DirectoryWithOtherFilesAndNoMarkerIsRefused) {
  ScratchDir d("foreign");
  write_file(d / "notes.txt", "mine\n");
  write_file(d / "0123456789abcdef0123456789abcdef.kvc", "not a store entry either\n");
  const CliError e = cli_error("run --file " + prompt_file() + " " + kGreedy + " " + disk(d.path()));
  EXPECT_EQ(e.exit_code, exit_code(ErrorKind::InvalidArgument)) << e.line;
  EXPECT_NE(e.line.find("not a kvstash prompt cache"), std::string::npos) << e.line;
  EXPECT_EQ(read_file(d / "notes.txt"), "mine\n");
  EXPECT_TRUE(fs::exists(d / "0123456789abcdef0123456789abcdef.kvc"));
  EXPECT_FALSE(fs::exists(d / "kvstash-store")) << "the directory was made a store";
}

// A filesystem mounted for a test, unmounted at the end (GTEST_SKIP where mounting is not allowed).
class Mount {
 public:
  // Mounts a tmpfs of `size` at dir (created).
  bool tmpfs(const std::string& dir, const std::string& size) {
    fs::create_directories(dir);
    const CommandResult r = run_command("mount -t tmpfs -o size=" + size + " tmpfs " + dir);
    if (r.exit_code != 0) {
      why_ = "cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): " + r.out;
      return false;
    }
    dir_ = dir;
    return true;
  }
  bool remount_read_only() {
    const CommandResult r = run_command("mount -o remount,ro " + dir_);
    why_ = "cannot remount read-only: " + r.out;
    return r.exit_code == 0;
  }
  const std::string& why() const { return why_; }
  ~Mount() {
    if (!dir_.empty()) {
      EXPECT_EQ(run_command("umount " + dir_).exit_code, 0) << "umount " << dir_;
    }
  }

 private:
  std::string dir_, why_;
};

// One warning about the store directory, the uncached tokens, no temp files left.
void expect_write_failure_survived(const CliRun& r, const std::string& dir) {
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.tokens(), uncached_run(prompt_file()).tokens());
  ASSERT_EQ(r.warnings().size(), 1u) << r.err;
  EXPECT_NE(r.warnings()[0].find("prompt cache " + dir), std::string::npos) << r.warnings()[0];
  EXPECT_TRUE(temp_files(dir).empty()) << temp_files(dir).front();
}

TEST(CliStoreDirectory, FullDiskWarnsOnceAndLeavesNoTempFiles) {
  ScratchDir d("full");
  const std::string dir = d / "store";
  Mount m;
  // 2 MiB: the marker and one 1.4 MiB chunk of 64 tokens fit, the second does not.
  if (!m.tmpfs(dir, "2m")) GTEST_SKIP() << m.why();
  const CliRun r = cached_run(prompt_file(), disk(dir));
  expect_write_failure_survived(r, dir);
  EXPECT_EQ(r.cached_tokens(), 0);
  EXPECT_LE(entry_files(dir).size(), 1u);
}

// A read-only store still serves its chunks; the writes of new ones fail with one warning.
TEST(CliStoreDirectory, ReadOnlyStoreServesHitsAndWarnsOnceAboutWrites) {
  ScratchDir d("readonly");
  const std::string dir = d / "store";
  Mount m;
  if (!m.tmpfs(dir, "64m")) GTEST_SKIP() << m.why();
  fill(corpus_prompt_file(1200), dir);  // the prompt's first half
  const std::vector<std::string> before = entry_files(dir);
  ASSERT_FALSE(before.empty());
  if (!m.remount_read_only()) GTEST_SKIP() << m.why();
  const CliRun r = cached_run(prompt_file(), disk(dir));
  expect_write_failure_survived(r, dir);
  EXPECT_GE(r.cached_tokens(), 2 * kChunk) << "the chunks of the first half were not read";
  EXPECT_EQ(entry_files(dir), before);
}

// Temp files of dead processes of this machine go; those of live processes, and another
// machine's younger than a day, stay.
TEST(CliStoreDirectory, StaleTempFilesOfDeadProcessesAreRemoved) {
  ScratchDir d("stale");
  const std::string dir = d / "store";
  fill(prompt_file(), dir);
  // The host part as util/atomic_file writes it: [A-Za-z0-9-] kept, anything else '_'.
  char buf[256] = {};
  ASSERT_EQ(::gethostname(buf, sizeof buf - 1), 0);
  std::string host = buf;
  for (char& c : host)
    if (!std::isalnum(uint8_t(c)) && c != '-') c = '_';
  const std::string entry = "0123456789abcdef0123456789abcdef.kvc";
  const std::string dead = dir + "/" + entry + ".kvstash-tmp.999999.0." + host;  // above any pid_max < 1M
  const std::string live = dir + "/" + entry + ".kvstash-tmp." + std::to_string(::getpid()) + ".0." + host;
  const std::string foreign = dir + "/" + entry + ".kvstash-tmp.999999.0.some-other-machine";
  const std::string old_foreign = dir + "/" + entry + ".kvstash-tmp.999999.1.some-other-machine";
  for (const std::string& p : {dead, live, foreign, old_foreign}) write_file(p, "partial");
  fs::last_write_time(old_foreign, fs::file_time_type::clock::now() - std::chrono::hours(48));

  const CliRun r = cached_run(prompt_file(), disk(dir));
  expect_clean_exact(r, uncached_run(prompt_file()));
  EXPECT_FALSE(fs::exists(dead)) << "a dead process's temp file was left";
  EXPECT_FALSE(fs::exists(old_foreign)) << "another machine's two-day-old temp file was left";
  EXPECT_TRUE(fs::exists(live)) << "a live process's temp file was removed";
  EXPECT_TRUE(fs::exists(foreign)) << "another machine's recent temp file was removed";
}

// --- budgets and flags -----------------------------------------------------------------------------

TEST(CliStoreFlags, KvBudgetRunWarnsAndStoresNothing) {
  ScratchDir d("kvbudget");
  const CliRun r = run_cli("run --file " + prompt_file() + " " + kGreedy + " --json --kv-budget 256 " + disk(d / "store"));
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_EQ(r.warnings().size(), 1u) << r.err;
  EXPECT_NE(r.warnings()[0].find("not used with --kv-budget"), std::string::npos) << r.warnings()[0];
  EXPECT_FALSE(r.json.contains("cached_tokens"));
  EXPECT_TRUE(entry_files(d / "store").empty());
}

TEST(CliStoreFlags, BadCacheFlagsAreInvalidArguments) {
  ScratchDir d("flags");
  const std::string run = "run --file " + prompt_file() + " " + kGreedy + " " + disk(d / "store") + " ";
  for (const char* bad : {"--cache-chunk-tokens 100", "--cache-chunk-tokens 0", "--cache-codec foo",
                                 "--cache-codec 0", "--prompt-cache-size abc"}) {
    const CliError e = cli_error(run + bad);
    EXPECT_EQ(e.exit_code, exit_code(ErrorKind::InvalidArgument)) << bad << ": " << e.line;
  }
  EXPECT_TRUE(entry_files(d / "store").empty());
}

// A directory budget under two chunks keeps at most that many bytes, run after run.
TEST(CliStoreFlags, DirectorySizeBudgetIsNeverExceeded) {
  ScratchDir d("size");
  const std::string dir = d / "store";
  const uint64_t budget = 2000000;  // a raw 64-token chunk of SmolLM2-135M is ~1.47 MB
  const std::string store = disk(dir) + " --prompt-cache-size " + std::to_string(budget);
  for (int run = 0; run < 2; ++run) {  // the second finds only the last chunk: no run of hits
    const CliRun r = cached_run(prompt_file(), store);
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_EQ(r.tokens(), uncached_run(prompt_file()).tokens());
    EXPECT_EQ(r.cached_tokens(), 0);
    EXPECT_LE(dir_bytes(dir), budget);
    const std::vector<std::string> entries = entry_files(dir);
    ASSERT_EQ(entries.size(), 1u) << "the budget holds exactly one chunk";
    EXPECT_GT(2 * fs::file_size(entries[0]), budget) << "the budget should be under two chunks";
  }
}

}  // namespace
}  // namespace kvstash
