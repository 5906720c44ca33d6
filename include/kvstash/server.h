// `kvstash serve`: an OpenAI-compatible HTTP server (docs/server.md) over one engine, with
// continuous batching, automatic prefix reuse (KV pool, then the prefix store) and named states.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "kvstash/engine.h"
#include "kvstash/prefix_cache.h"
#include "kvstash/store.h"

namespace kvstash {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;            // 0: any free port (printed)
  std::string api_key;        // "": no authentication; else "Authorization: Bearer <key>" on all but /health
  std::string state_dir;      // named states (<name>.kvs); "": the /v1/states endpoints answer 404
  std::string model_id;       // what /v1/models reports
  int parallel = 4;           // requests computed at once (continuous batching)
  int queue_limit = 64;       // requests waiting beyond those; more get 503 with Retry-After
  int64_t prefill_chunk = 256;  // prompt tokens per pass, so long prompts do not stall decoding
  size_t max_body_bytes = size_t(1) << 20;  // larger bodies: 413
  int64_t max_prompt_tokens = 0;            // 0: the context; longer prompts: 400
};

// Serves until SIGTERM or SIGINT, then refuses new requests (503), finishes those in flight and
// returns. Prints "kvstash serve: listening on http://HOST:PORT" to stderr once bound. Throws Error
// (IOError: the address cannot be bound; InvalidArgument: bad options; NotFound: no state dir).
// cache and store may be null (no prefix store); store's tiers are reported by /metrics.
void serve(Engine& engine, const ServerOptions& options, PrefixCache* cache, ChunkStore* store);

}  // namespace kvstash
