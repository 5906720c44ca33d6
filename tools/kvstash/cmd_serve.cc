// kvstash serve: the OpenAI-compatible server (docs/server.md).
#include <filesystem>

#include "cache_options.h"
#include "commands.h"
#include "common.h"
#include "kvstash/error.h"
#include "kvstash/server.h"

namespace kvstash::cli {

namespace {
struct ServeArgs {
  ModelOptions model;
  CacheFlags cache;
  ServerOptions server;
  int64_t kv_pool = 0;
  std::string max_body = "1M";
};
}  // namespace

Command add_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* sub = app.add_subcommand("serve", "serve the OpenAI API (completions, chat, streaming) with prefix reuse");
  ServerOptions& s = a->server;
  sub->add_option("--host", s.host, "address to listen on")->capture_default_str();
  sub->add_option("--port", s.port, "port to listen on (0: any free port)")->capture_default_str();
  sub->add_option("--api-key", s.api_key, "require 'Authorization: Bearer KEY' on every endpoint but /health");
  sub->add_option("--state-dir", s.state_dir, "directory of named states (/v1/states); created if missing");
  sub->add_option("--model-id", s.model_id, "model name reported by /v1/models (default: the file's name)");
  sub->add_option("--parallel", s.parallel, "requests computed at once (continuous batching)")->capture_default_str();
  sub->add_option("--queue", s.queue_limit, "requests waiting beyond --parallel; more get 503")->capture_default_str();
  sub->add_option("--prefill-chunk", s.prefill_chunk, "prompt tokens per batched pass")->capture_default_str();
  sub->add_option("--max-body", a->max_body, "largest request body (bytes; K, M suffixes); larger: 413")
      ->capture_default_str();
  sub->add_option("--max-prompt-tokens", s.max_prompt_tokens, "longest prompt accepted (default: the context)");
  sub->add_option("--kv-pool", a->kv_pool,
                  "KV cache entries of all sequences together (default: --parallel contexts; the rest of the pool "
                  "keeps finished prefixes for reuse)");
  add_model_options(*sub, a->model);
  add_ctx_options(*sub, a->model, "context of each request in tokens (default: the training context, up to 4096)");
  add_cache_options(*sub, a->cache);
  return [a]() {
    ServerOptions s = a->server;
    s.max_body_bytes = size_t(parse_byte_size(a->max_body));
    const PrefixCacheOptions cache_opts = cache_options(a->cache);
    std::unique_ptr<ChunkStore> store = open_store(a->cache);
    Loaded l = load_model(a->model);
    const ModelConfig& c = l.model->config();
    if (a->model.ctx_size > c.n_ctx_train && !a->model.ctx_beyond_training)
      throw Error(ErrorKind::InvalidArgument, "--ctx-size " + std::to_string(a->model.ctx_size) +
                                                  " exceeds the training context of " + std::to_string(c.n_ctx_train) +
                                                  " (--ctx-beyond-training allows it)");
    EngineOptions eo;
    eo.n_ctx = a->model.ctx_size > 0 ? a->model.ctx_size : std::min<int64_t>(c.n_ctx_train, 4096);
    if (s.parallel < 1 || s.parallel > 256) throw Error(ErrorKind::InvalidArgument, "--parallel must be between 1 and 256");
    eo.kv_tokens = a->kv_pool > 0 ? a->kv_pool : int64_t(s.parallel) * (eo.n_ctx + 2 * eo.block_tokens);
    if (eo.kv_tokens < eo.n_ctx + 2 * eo.block_tokens)
      throw Error(ErrorKind::InvalidArgument, "--kv-pool must hold at least one context (" +
                                                  std::to_string(eo.n_ctx + 2 * eo.block_tokens) + " entries)");
    l.engine = std::make_unique<Engine>(*l.model, *l.threads, eo);
    if (s.model_id.empty())
      s.model_id = std::filesystem::path(a->model.model.empty() ? default_model_path() : a->model.model).stem().string();
    std::unique_ptr<PrefixCache> cache = prefix_cache(store.get(), *l.engine, cache_opts, KvBudget{});
    serve(*l.engine, s, cache.get(), store.get());
    return 0;
  };
}

}  // namespace kvstash::cli
