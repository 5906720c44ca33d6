// The KV cache: a preallocated pool of fixed-size blocks shared by sequences. A block holds
// `block_tokens` entries of every layer: K and V as f16, per layer [kv_heads][block_tokens][head_dim]
// (keys after RoPE). Blocks are reference-counted so a forked sequence shares its parent's blocks;
// a shared block is copied before it is written (copy-on-write).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include "kvstash/kv_budget.h"
#include "kvstash/types.h"

namespace kvstash {

struct KvShape {
  int n_layer = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int block_tokens = 32;
};

class KvPool {
 public:
  static constexpr int kMaxBlockTokens = 4096;
  static constexpr int64_t kMaxTokens = int64_t(1) << 24;  // per pool: 16M entries
  // Throws InvalidArgument for a bad shape or capacity, ResourceExhausted when memory is short.
  KvPool(const KvShape& shape, int64_t capacity_tokens);
  KvPool(const KvPool&) = delete;
  KvPool& operator=(const KvPool&) = delete;

  const KvShape& shape() const { return shape_; }
  int64_t n_blocks() const { return int64_t(refcount_.size()); }
  int64_t free_blocks() const { return int64_t(free_.size()); }

  int32_t allocate();  // throws Error when the pool is exhausted
  void retain(int32_t block) { ++refcount_[size_t(block)]; }
  void release(int32_t block);
  int refcount(int32_t block) const { return refcount_[size_t(block)]; }
  int32_t copy_block(int32_t block);  // a private copy (explicit cost)

  uint16_t* k(int32_t block, int layer, int head);  // -> [block_tokens][head_dim]
  uint16_t* v(int32_t block, int layer, int head);
  const uint16_t* k(int32_t block, int layer, int head) const;
  const uint16_t* v(int32_t block, int layer, int head) const;

 private:
  size_t offset(int32_t block, int layer, int head, int which) const;
  KvShape shape_;
  size_t block_elems_;  // f16 values per block (K and V)
  std::vector<uint16_t> data_;
  std::vector<int> refcount_;
  std::vector<int32_t> free_;
};

// A budgeted sequence's bookkeeping. Lane = layer * n_head_kv + KV head; every lane holds the
// same number of slots (the sequence's size()), but each lane chooses its own entries. Slots keep
// stream order — [pinned][the rest, oldest first] — except the summary entry, if any, which sits at
// slot budget - 1 (kept entries before it, entries appended since the last eviction after it).
struct EvictionBook {
  KvBudget budget;
  std::vector<std::vector<int32_t>> entry;  // [lane][slot]: index in tokens() of the slot's entry; -1: the summary
  std::vector<std::vector<float>> score;    // [lane][slot]: the policy's running score
  std::vector<int64_t> merged;              // [lane]: evicted entries folded into the summary
  int32_t pinned = 0;        // leading slots never evicted (the sinks; SnapKV's selection)
  bool has_summary = false;  // slot budget - 1 of every lane holds the summary entry
  bool selected = false;     // SnapKV: the one selection has been made
  bool operator==(const EvictionBook&) const = default;
};

// Turns a cached key (head_dim f16 values, after RoPE) by `delta` positions: re-positioning keys
// needs the model's RoPE, which the KV layer does not know.
using KeyRotator = std::function<void(uint16_t* key, int32_t delta)>;

// One sequence's cache entries. Unbudgeted: slot i holds token i of tokens() at positions()[i] in
// every lane. Budgeted: tokens()/positions() are everything processed, and each lane keeps at most
// budget + interval of them (see EvictionBook).
class Sequence {
 public:
  // Throws InvalidArgument for an invalid budget.
  explicit Sequence(KvPool& pool, const KvBudget& budget = {});
  ~Sequence();
  Sequence(Sequence&& other) noexcept;
  Sequence& operator=(Sequence&& other) noexcept;
  Sequence(const Sequence&) = delete;
  Sequence& operator=(const Sequence&) = delete;

  int64_t size() const { return used_; }  // slots in use (per lane)
  int64_t n_processed() const { return int64_t(tokens_.size()); }
  const std::vector<Token>& tokens() const { return tokens_; }
  const std::vector<int32_t>& positions() const { return positions_; }
  // The RoPE position of the next token: after the last one, or (contiguous positions) its slot.
  int32_t next_position() const;

  bool budgeted() const { return book_ != nullptr; }
  const EvictionBook* book() const { return book_.get(); }
  EvictionBook* book() { return book_.get(); }
  // Tokens that may be appended before an eviction is due (INT64_MAX: no eviction point ahead).
  int64_t room() const;
  bool eviction_due() const { return room() == 0; }
  // Budgeted and past any SnapKV selection: it evicts as it goes, so its slots, not its stream,
  // must fit a context; otherwise it holds everything it reads.
  bool evicts_as_it_goes() const { return room() != std::numeric_limits<int64_t>::max(); }
  // Evicts down to the budget by the policy (call when eviction_due()). Shared blocks are copied
  // first (ResourceExhausted, nothing changed, if the pool lacks room for the copies).
  void evict(const KeyRotator& rotate);
  // SnapKV, when the prompt ends: keeps the last snapkv_window entries and the budget's rest by the
  // pooled scores the window's queries gathered. A no-op for other policies or when done before.
  void select_after_prefill(const KeyRotator& rotate);
  // Replaces the contents with a budgeted state's: tokens/positions processed, `slots` entries per
  // lane and the book (checked for consistency: InvalidArgument). K/V of the slots are then written
  // by the caller. Nothing changes on error.
  void assign_budgeted(const std::vector<Token>& tokens, const std::vector<int32_t>& positions, int64_t slots,
                       const EvictionBook& book);

  // Shares every block with the new sequence (no K/V copied).
  Sequence fork() const;
  // Whether truncate(n) is exact: always for an unbudgeted sequence; for a budgeted one only while
  // nothing was evicted and no attention score would keep traces of the removed queries.
  bool can_truncate(int64_t n) const;
  // Keeps the first n entries (InvalidArgument where !can_truncate(n)).
  void truncate(int64_t n);
  void clear();

  // Adds n entries (tokens and positions) and makes their blocks writable; returns the first slot.
  // A budgeted sequence takes at most room() entries per call.
  int64_t append(const Token* tokens, const int32_t* positions, int64_t n);
  // Removes the last n entries again (a failed forward pass).
  void pop(int64_t n) { truncate(size() - n); }

  int32_t block_of(int64_t slot) const { return blocks_[size_t(slot / pool_->shape().block_tokens)]; }
  int slot_of(int64_t slot) const { return int(slot % pool_->shape().block_tokens); }
  const std::vector<int32_t>& blocks() const { return blocks_; }
  KvPool& pool() const { return *pool_; }

 private:
  void make_blocks_private();
  void drop_blocks_beyond(int64_t slots);
  void compact(const std::vector<std::vector<int32_t>>& keep, bool summary, const KeyRotator& rotate);

  KvPool* pool_;
  std::vector<int32_t> blocks_;
  std::vector<Token> tokens_;
  std::vector<int32_t> positions_;
  int64_t used_ = 0;
  std::unique_ptr<EvictionBook> book_;
};

}  // namespace kvstash
