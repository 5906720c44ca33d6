// The prefill progress bar (tools/kvstash/progress.h): ETA from the rate of recent chunks, the line
// cleared with "\r\033[K", nothing at all when stderr is not a terminal.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "../tools/kvstash/progress.h"

namespace kvstash::cli {
namespace {

std::string contents(FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, n);
  return s;
}

// The text after the last line clear.
std::string last_frame(const std::string& s) { return s.substr(s.rfind("\r\033[K") + 4); }

TEST(CliProgress, EtaFollowsTheRecentRate) {
  FILE* f = std::tmpfile();
  {
    Progress bar(f, true);
    bar.update_at(512, 8192, 5.0);  // the first chunk carries start-up: no rate yet
    EXPECT_EQ(last_frame(contents(f)).find("ETA"), std::string::npos);
    std::fseek(f, 0, SEEK_END);
    // Then 512 tokens every 2 s, slowing to every 4 s: the ETA follows the last chunks.
    double t = 5.0;
    int64_t done = 512;
    for (int i = 0; i < 6; ++i) bar.update_at(done += 512, 8192, t += 2.0);
    EXPECT_NE(last_frame(contents(f)).find("256 tokens/s  ETA 18s"), std::string::npos) << contents(f);
    std::fseek(f, 0, SEEK_END);
    for (int i = 0; i < 4; ++i) bar.update_at(done += 512, 8192, t += 4.0);
    EXPECT_NE(last_frame(contents(f)).find("128 tokens/s  ETA 20s"), std::string::npos) << contents(f);
    std::fseek(f, 0, SEEK_END);
    bar.update_at(8192, 8192, t + 4.0);
  }
  const std::string all = contents(f);
  EXPECT_EQ(all.substr(all.size() - 4), "\r\033[K");  // the finished bar leaves a clean line
  EXPECT_EQ(all.find('\n'), std::string::npos);
  std::fclose(f);
}

TEST(CliProgress, AnInterruptedBarIsErased) {
  FILE* f = std::tmpfile();
  { Progress(f, true).update_at(100, 1000, 1.0); }
  const std::string all = contents(f);
  EXPECT_EQ(all.substr(all.size() - 4), "\r\033[K");
  std::fclose(f);
}

TEST(CliProgress, SilentWhenNotATerminal) {
  FILE* f = std::tmpfile();
  {
    Progress bar(f);  // a file is not a terminal
    bar.update_at(1, 2, 1.0);
    bar.update_at(2, 2, 2.0);
  }
  EXPECT_EQ(contents(f), "");
  std::fclose(f);
}

}  // namespace
}  // namespace kvstash::cli
