// Attention state: a read-only snapshot of one sequence (tokens, positions, K/V of every layer in
// the cache's own type, the last position's logits, the model's fingerprint), its .kvs file format
// (a safetensors file; docs/format-kvs.md) and the way back into a sequence.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvstash/dtype.h"
#include "kvstash/fingerprint.h"
#include "kvstash/kv_cache.h"
#include "kvstash/model.h"
#include "kvstash/types.h"

namespace kvstash {

class ThreadPool;

class AtomicFile;

// How a .kvs file stores each key vector (docs/kv-layout.md). Gguf: kvstash's own RoPE pair order
// (zero-copy loads). HuggingFace: rotate-half order, hf[i] = k[2i], hf[i + d/2] = k[2i + 1] (d =
// head_dim), for Python users who hand the keys to a Hugging Face cache as they are. Readers take
// both and always return keys in Gguf order.
enum class KeyOrder { Gguf, HuggingFace };

struct StateSaveOptions {
  KeyOrder key_order = KeyOrder::Gguf;
};

// What a state must agree on with the model that continues it.
struct StateArch {
  int n_layer = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_rot = 0, n_vocab = 0;
  float rope_base = 0, rope_linear_scale = 1;
  bool operator==(const StateArch&) const = default;
};
StateArch state_arch(const ModelConfig& c);

// A state is built once (by snapshot, load_state or a decoder) and read-only afterwards. Copying a
// State copies tokens, positions, logits and the book but shares the K/V storage, which is either
// owned memory or, after load_state, the read-only mapping of the .kvs file (zero-copy; the mapping
// lives as long as any copy of the State). A .kvs file is only ever replaced by rename (save_state),
// so a mapped file does not change under a loaded state unless someone rewrites it in place.
//
// A budgeted sequence's state (book set) keeps, like the sequence, everything it processed in
// tokens/positions (size() = n_processed, possibly far more than the cache holds) and, per layer and
// KV head ("lane"), kv_entries() slots whose K/V, stream indices and scores the book describes.
struct State {
  Fingerprint model_fingerprint;
  StateArch arch;
  DType cache_type = DType::F16;
  int64_t n_ctx = 0;  // the context the state was made with (>= kv_entries()); a hint for continuing it
  std::vector<Token> tokens;
  std::vector<int32_t> positions;
  std::vector<float> logits;  // n_vocab floats: the last entry's logits (empty for an empty state)
  // A budgeted state's eviction bookkeeping (its KvBudget included); nullopt: an unbudgeted state.
  std::optional<EvictionBook> book;
  // Tokens processed: the cache entries of an unbudgeted state; the whole stream of a budgeted one.
  int64_t size() const { return int64_t(tokens.size()); }
  // Cache slots per layer and KV head: size() for an unbudgeted state, the book's slot count else.
  int64_t kv_entries() const {
    if (!book) return size();
    return book->entry.empty() ? 0 : int64_t(book->entry.front().size());
  }

  // K and V of a layer: [arch.n_head_kv][kv_entries()][arch.head_dim] f16 bit patterns, 64-byte
  // aligned. nullptr until storage exists (an empty state may have none).
  const uint16_t* k(int layer) const { return k_.empty() ? nullptr : k_[size_t(layer)]; }
  const uint16_t* v(int layer) const { return v_.empty() ? nullptr : v_[size_t(layer)]; }
  size_t kv_elements() const {  // values in one layer's K (or V)
    return size_t(arch.n_head_kv) * size_t(kv_entries()) * size_t(arch.head_dim);
  }
  // True when K/V storage exists for the current arch and kv_entries() (false after either changed).
  bool has_kv() const {
    return !k_.empty() && kv_shape_[0] == arch.n_layer && kv_shape_[1] == arch.n_head_kv &&
           kv_shape_[2] == kv_entries() && kv_shape_[3] == arch.head_dim;
  }

  // For code that builds a state: set arch, tokens and the book (if any) first, then allocate_kv()
  // gives owned, uninitialised K/V storage for every layer, written through mutable_k/mutable_v
  // before the state is copied or shared. mutable_* throw Error (Internal) on a state whose storage
  // is not owned.
  void allocate_kv();
  uint16_t* mutable_k(int layer);
  uint16_t* mutable_v(int layer);

 private:
  friend void set_views(State&, std::shared_ptr<const void>, std::vector<const uint16_t*>,
                        std::vector<const uint16_t*>);  // load_state (src/state/kvs_read.cc)
  std::shared_ptr<const void> storage_;  // keeps the owned buffer or the file mapping alive
  bool owned_ = false;
  std::vector<const uint16_t*> k_, v_;
  int64_t kv_shape_[4] = {0, 0, 0, 0};  // n_layer, n_head_kv, kv_entries, head_dim of the storage
};

// Copies a sequence's entries out of the pool (an explicit, named cost); of a budgeted sequence
// also its book and whole processed stream. last_logits (n_vocab floats) may be nullptr only for a
// sequence that processed nothing; n_ctx is recorded as the state's context (at least size()).
State snapshot(const Model& model, const Sequence& seq, int64_t n_ctx, const float* last_logits);
// Replaces seq's contents with the state's entries. Checks the state against the model first
// (fingerprint: ModelMismatch; architecture, sizes, positions, the book: InvalidArgument; the
// context n_ctx and the pool's free blocks: ResourceExhausted); on any error seq is left untouched.
// seq takes the state's budget: a budgeted state makes it budgeted with the state's KvBudget and
// book (Sequence::assign_budgeted), an unbudgeted state makes it unbudgeted. The caller keeps
// state.logits to sample the first new token (no forward pass is needed for it).
void restore(const State& state, const Model& model, int64_t n_ctx, Sequence& seq);

// A .kvs file about to be written: the temp file "<path>.kvstash-tmp.<pid>.<n>.<host>" is created
// in the target's directory at construction, so a missing or read-only directory fails before any
// work (kinds NotFound, IOError, InvalidArgument). commit() writes, fsyncs, renames it over `path`
// and fsyncs the directory; until then `path` is untouched. An uncommitted temp file is removed by
// the destructor, on SIGINT/SIGTERM (the signal then takes its previous action), and — if its
// process died — by the next StateOutput in that directory on the same host.
class StateOutput {
 public:
  explicit StateOutput(const std::string& path);
  ~StateOutput();
  StateOutput(const StateOutput&) = delete;
  StateOutput& operator=(const StateOutput&) = delete;

  const std::string& path() const { return path_; }
  void commit(const State& state, const StateSaveOptions& options = {});  // once

 private:
  std::string path_;
  std::unique_ptr<AtomicFile> file_;
};

// StateOutput(path).commit(state): atomic; on failure an existing file is left as it was.
void save_state(const State& state, const std::string& path, const StateSaveOptions& options = {});
// Maps the file and validates format name, version, metadata, shapes, layout, file size, every
// tensor's checksum and every value (Corruption, NotSupported for another version or dtype,
// NotFound/IOError for the file itself): "<path>: <what is wrong>" (e.g. "checksum mismatch in
// tensor 'k.3' (file corrupted)"). K/V of the result are views into the mapping (no copy), except
// the K of a file saved with KeyOrder::HuggingFace: permuted back into owned memory.
State load_state(const std::string& path);
// load_state + restore in one pass over the K/V: every check of both (same kinds and messages), with
// each K/V tensor read with preadv straight into seq's blocks and its checksum verified there,
// tensors split over `threads` when given; Hugging Face-ordered keys are permuted in the blocks
// after their checksum. Returns the state (K/V as load_state gives them).
// A checksum mismatch or a read error leaves seq empty (the first corrupt tensor in file order is
// named); every other error leaves it untouched.
State load_state_into(const std::string& path, const Model& model, int64_t n_ctx, Sequence& seq,
                      ThreadPool* threads = nullptr);

}  // namespace kvstash
