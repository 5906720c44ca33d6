// The .kvs reader's entry point for load_state_into: every check of load_state except the K/V
// tensors' checksums, which are handed to the caller to verify while it reads them.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvstash/state.h"

namespace kvstash::kvs {

struct DeferredChecksum {
  std::string tensor;  // "k.3"
  std::string hex;     // xxh3-64 of its bytes as stored (hash_hex64)
  uint64_t offset = 0, bytes = 0;  // where those bytes are in the file
};

// A .kvs file checked as load_state checks it, except that the K/V tensors are neither read nor
// hashed: `state`'s K/V views point into a mapping that has not been read, and must not be used
// before the caller has verified `sums` (k.0, v.0, k.1, ... in file order). `fd` is the same file,
// open for reading the K/V with pread.
// key_order says how the file stores K (state's K views are then in that order, unread);
// `mapping` keeps the file mapped for the V views.
struct UnverifiedKv {
  State state;
  std::vector<DeferredChecksum> sums;
  std::shared_ptr<const int> fd;
  KeyOrder key_order = KeyOrder::Gguf;
  std::shared_ptr<const void> mapping;
};
UnverifiedKv open_unverified_kv(const std::string& path);

// Owned, 64-byte aligned K storage for every layer of a state (kv_elements() values each): the
// keys of a Hugging Face-ordered file, permuted back to GGUF order.
struct KeyBuffer {
  std::shared_ptr<uint16_t> base;
  size_t stride = 0;  // values from one layer's K to the next
  uint16_t* layer(int l) const { return base.get() + size_t(l) * stride; }
};
KeyBuffer allocate_keys(const State& s);
// s's K views become `keys`' layers; its V views stay views into `mapping`, kept alive with them.
void use_keys(State& s, const KeyBuffer& keys, std::shared_ptr<const void> mapping);

}  // namespace kvstash::kvs
