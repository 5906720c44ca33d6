// The .kvs reader's entry point for load_state_into: every check of load_state except the K/V
// tensors' checksums, which are handed to the caller to verify while it copies them.
#pragma once
#include <string>
#include <vector>

#include "kvstash/state.h"

namespace kvstash::kvs {

struct DeferredChecksum {
  std::string tensor;  // "k.3"
  std::string hex;     // xxh3-64 of its bytes as stored (hash_hex64)
};

// load_state, except that the checksums of k.* and v.* are not computed: deferred gets them, in
// file order (k.0, v.0, k.1, ...). The caller must verify them before trusting the K/V views.
State load_state_unverified_kv(const std::string& path, std::vector<DeferredChecksum>& deferred);

}  // namespace kvstash::kvs
