// kvstash compress: a state (.kvs) into a .kvz of one or more quality levels.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "context.h"
#include "kvstash/kvz.h"
#include "kvstash/thread_pool.h"

namespace kvstash::cli {

namespace {
struct CompressArgs {
  std::string in, out;
  KvzFlags kvz;
  int threads = 0;
  bool threads_oversubscribe = false;
  bool json = false;
};
}  // namespace

Command add_compress(CLI::App& app) {
  auto a = std::make_shared<CompressArgs>();
  CLI::App* sub = app.add_subcommand("compress", "compress a state (.kvs) into a .kvz of one or more quality levels");
  sub->add_option("in", a->in, "state file to read (.kvs)")->required();
  sub->add_option("out", a->out, ".kvz file to write")->required();
  add_kvz_flags(*sub, a->kvz);
  sub->add_option("-t,--threads", a->threads, "threads (default: every available core); the bytes are the same for any count");
  sub->add_flag("--threads-oversubscribe", a->threads_oversubscribe, "use --threads even beyond the cores available");
  sub->add_flag("--json", a->json, "print one JSON object");
  return [a]() {
    const KvzOptions asked = kvz_options(a->kvz);  // bad flags fail before any work
    KvzOutput out(a->out);
    const State s = load_state_file(a->in, 0);
    ThreadPool pool(thread_count(a->threads, a->threads_oversubscribe));
    KvzOptions o = asked;
    o.threads = &pool;
    const auto t0 = std::chrono::steady_clock::now();
    out.commit(s, o);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const KvzInfo info = read_kvz_info(file_source(a->out));
    const int64_t in_bytes = file_size(a->in), out_bytes = file_size(a->out);
    const double f16_bytes = 4.0 * double(s.arch.n_layer) * double(s.kv_elements());
    nlohmann::json j = {{"in", a->in}, {"out", a->out}, {"in_bytes", in_bytes}, {"out_bytes", out_bytes},
                        {"kv_f16_bytes", uint64_t(f16_bytes)}, {"tokens", s.size()}, {"kv_slots", s.kv_entries()},
                        {"chunks", info.chunks.size()}, {"chunk_tokens", info.chunk_tokens},
                        {"levels", kvz_level_table(info)}, {"threads", pool.size()}, {"seconds", seconds}};
    if (a->json) {
      print_json(j);
      return 0;
    }
    std::string per_level;
    for (const auto& l : j["levels"])
      per_level += (per_level.empty() ? "" : ", ") + std::string("level ") + std::to_string(l["level"].get<int>()) +
                   " " + std::to_string(l["bytes"].get<uint64_t>()) + " bytes (" +
                   std::to_string(l["bits_per_value"].get<double>()).substr(0, 4) + " bits/value, " +
                   std::to_string(l["ratio_to_f16"].get<double>()).substr(0, 5) + "x)";
    std::printf("%s: %lld -> %lld bytes (%.2fx of the .kvs); %s; %zu chunks of %d, %.2f s\n", a->out.c_str(),
                (long long)in_bytes, (long long)out_bytes, double(in_bytes) / double(out_bytes), per_level.c_str(),
                info.chunks.size(), info.chunk_tokens, seconds);
    return 0;
  };
}

}  // namespace kvstash::cli
