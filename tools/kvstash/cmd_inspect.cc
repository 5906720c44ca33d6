// kvstash inspect: describe a state file and verify its checksums.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "kvstash/kvz.h"
#include "kvstash/state.h"

namespace kvstash::cli {

namespace {
struct InspectArgs {
  std::string path;
  bool json = false;
};

// A .kvz: its state as for a .kvs, its chunks and, per stored level, bytes, bits per value and
// codec parameters. Every level is decoded, so every checksum is verified.
int inspect_kvz(const std::string& path, bool json) {
  const KvzInfo info = read_kvz_info(file_source(path));
  for (int level : info.levels) {
    LevelChoice c;
    c.level = level;
    load_kvz(path, c);
  }
  const State& s = info.meta;
  const StateArch& ar = s.arch;
  const nlohmann::json levels = kvz_level_table(info);
  nlohmann::json j = {{"path", path}, {"format", "kvz"}, {"tokens", s.size()}, {"kv_slots", s.kv_entries()},
                      {"n_ctx", s.n_ctx}, {"bytes", info.file_size},
                      {"header_bytes", info.chunks.empty() ? info.file_size : info.chunks[0].levels[0].offset},
                      {"model_fingerprint", s.model_fingerprint.hex()}, {"cache_dtype", "f16"},
                      {"n_layer", ar.n_layer}, {"n_head", ar.n_head}, {"n_head_kv", ar.n_head_kv},
                      {"head_dim", ar.head_dim}, {"n_vocab", ar.n_vocab}, {"chunk_tokens", info.chunk_tokens},
                      {"chunks", info.chunks.size()}, {"levels", levels}, {"checksums", "ok"}, {"token_ids", s.tokens}};
  if (s.book) {
    j["kv_budget"] = s.book->budget.budget;
    j["kv_policy"] = to_string(s.book->budget.policy);
    j["kv_settings"] = describe(s.book->budget);
  }
  if (json) {
    print_json(j);
    return 0;
  }
  std::printf("%s\n  format            .kvz, %zu chunks of %d slots\n  tokens            %lld (context %lld)\n"
              "  bytes             %llu (header %llu)\n  model fingerprint %s\n"
              "  layers %d, heads %d, KV heads %d, head dim %d\n  checksums         ok\n",
              path.c_str(), info.chunks.size(), info.chunk_tokens, (long long)s.size(), (long long)s.n_ctx,
              (unsigned long long)info.file_size, (unsigned long long)j["header_bytes"].get<uint64_t>(),
              s.model_fingerprint.hex().c_str(), ar.n_layer, ar.n_head, ar.n_head_kv, ar.head_dim);
  if (s.book)
    std::printf("  kv budget         %s\n  kv slots          %lld per layer and KV head (of %lld tokens processed)\n",
                describe(s.book->budget).c_str(), (long long)s.kv_entries(), (long long)s.size());
  for (const auto& l : levels)
    std::printf("  level %-3d         %llu bytes, %.3f bits/value, %.2fx smaller than f16 (%s)\n", l["level"].get<int>(),
                (unsigned long long)l["bytes"].get<uint64_t>(), l["bits_per_value"].get<double>(),
                l["ratio_to_f16"].get<double>(), l["params"].get<std::string>().c_str());
  return 0;
}
}  // namespace

Command add_inspect(CLI::App& app) {
  auto a = std::make_shared<InspectArgs>();
  CLI::App* sub = app.add_subcommand("inspect", "describe a state file (.kvs or .kvz) and verify its checksums");
  sub->add_option("state", a->path, "state file")->required();
  sub->add_flag("--json", a->json, "print one JSON object");
  return [a]() {
    if (is_kvz_file(a->path)) return inspect_kvz(a->path, a->json);
    const State s = load_state(a->path);  // verifies every checksum
    const int64_t bytes = file_size(a->path);
    const StateArch& ar = s.arch;
    nlohmann::json j = {{"path", a->path},
                        {"tokens", s.size()},
                        {"n_ctx", s.n_ctx},
                        {"bytes", bytes},
                        {"bytes_per_token", s.size() ? double(bytes) / double(s.size()) : 0.0},
                        {"model_fingerprint", s.model_fingerprint.hex()},
                        {"cache_dtype", dtype_info(s.cache_type).name},
                        {"n_layer", ar.n_layer}, {"n_head", ar.n_head}, {"n_head_kv", ar.n_head_kv},
                        {"head_dim", ar.head_dim}, {"n_vocab", ar.n_vocab},
                        {"checksums", "ok"},
                        {"token_ids", s.tokens}};
    // A budgeted state: `tokens` is the whole stream it processed, kv_slots the entries it keeps.
    if (s.book) {
      j["kv_budget"] = s.book->budget.budget;
      j["kv_policy"] = to_string(s.book->budget.policy);
      j["kv_settings"] = describe(s.book->budget);
      j["kv_slots"] = s.kv_entries();
    }
    if (a->json) {
      print_json(j);
      return 0;
    }
    std::printf("%s\n  tokens            %lld (context %lld)\n  bytes             %lld (%.0f per token)\n"
                "  model fingerprint %s\n  cache dtype       %s\n  layers %d, heads %d, KV heads %d, head dim %d\n"
                "  checksums         ok\n",
                a->path.c_str(), (long long)s.size(), (long long)s.n_ctx, (long long)bytes, j["bytes_per_token"].get<double>(),
                s.model_fingerprint.hex().c_str(), dtype_info(s.cache_type).name, ar.n_layer, ar.n_head, ar.n_head_kv,
                ar.head_dim);
    if (s.book)
      std::printf("  kv budget         %s\n  kv slots          %lld per layer and KV head (of %lld tokens processed)\n",
                  describe(s.book->budget).c_str(), (long long)s.kv_entries(), (long long)s.size());
    std::printf("  token ids        ");
    for (size_t i = 0; i < s.tokens.size() && i < 32; ++i) std::printf(" %d", s.tokens[i]);
    std::printf(s.tokens.size() > 32 ? " ...\n" : "\n");
    return 0;
  };
}

}  // namespace kvstash::cli
