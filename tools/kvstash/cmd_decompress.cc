// kvstash decompress: a .kvz back into a .kvs state at one stored level.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "context.h"
#include "kvstash/error.h"
#include "kvstash/kvz.h"
#include "kvstash/thread_pool.h"

namespace kvstash::cli {

namespace {
struct DecompressArgs {
  std::string in, out;
  int level = 0;
  int threads = 0;
  bool threads_oversubscribe = false;
  bool json = false;
};
}  // namespace

Command add_decompress(CLI::App& app) {
  auto a = std::make_shared<DecompressArgs>();
  CLI::App* sub = app.add_subcommand("decompress", "decode a .kvz into a .kvs state at one stored level");
  sub->add_option("in", a->in, ".kvz file to read")->required();
  sub->add_option("out", a->out, "state file to write (.kvs)")->required();
  add_load_level_option(*sub, a->level);
  sub->add_option("-t,--threads", a->threads, "threads (default: every available core)");
  sub->add_flag("--threads-oversubscribe", a->threads_oversubscribe, "use --threads even beyond the cores available");
  sub->add_flag("--json", a->json, "print one JSON object");
  return [a]() {
    if (!is_kvz(file_source(a->in)))
      throw Error(ErrorKind::Corruption, a->in + ": not a .kvz file (no .kvz magic bytes)");
    StateOutput out(a->out);
    ThreadPool pool(thread_count(a->threads, a->threads_oversubscribe));
    const auto t0 = std::chrono::steady_clock::now();
    const KvzInfo info = read_kvz_info(file_source(a->in));
    const int level = a->level != 0 ? a->level : info.levels.back();
    const State s = load_state_file(a->in, level, &pool);
    std::string params;
    for (size_t i = 0; i < info.levels.size(); ++i)
      if (info.levels[i] == level) params = info.level_params[i];
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    out.commit(s);
    const int64_t bytes = file_size(a->out);
    if (a->json) {
      nlohmann::json j = {{"in", a->in}, {"out", a->out}, {"level", level}, {"params", params},
                          {"tokens", s.size()}, {"bytes", bytes}, {"seconds", seconds}};
      print_json(j);
    } else {
      std::printf("%s: %lld tokens at level %d, %lld bytes, %.2f s\n", a->out.c_str(), (long long)s.size(), level,
                  (long long)bytes, seconds);
    }
    return 0;
  };
}

}  // namespace kvstash::cli
