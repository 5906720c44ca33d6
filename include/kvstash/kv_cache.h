// The KV cache: a preallocated pool of fixed-size blocks shared by sequences. A block holds
// `block_tokens` entries of every layer: K and V as f16, per layer [kv_heads][block_tokens][head_dim]
// (keys after RoPE). Blocks are reference-counted so a forked sequence shares its parent's blocks;
// a shared block is copied before it is written (copy-on-write).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

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

// One sequence's cache entries: token, position and K/V slot of each.
class Sequence {
 public:
  explicit Sequence(KvPool& pool) : pool_(&pool) {}
  ~Sequence();
  Sequence(Sequence&& other) noexcept;
  Sequence& operator=(Sequence&& other) noexcept;
  Sequence(const Sequence&) = delete;
  Sequence& operator=(const Sequence&) = delete;

  int64_t size() const { return int64_t(tokens_.size()); }
  const std::vector<Token>& tokens() const { return tokens_; }
  const std::vector<int32_t>& positions() const { return positions_; }
  int32_t next_position() const { return positions_.empty() ? 0 : positions_.back() + 1; }

  // Shares every block with the new sequence (no K/V copied).
  Sequence fork() const;
  // Keeps the first n entries.
  void truncate(int64_t n);
  void clear() { truncate(0); }

  // Adds n entries (tokens and positions) and makes their blocks writable; returns the first index.
  int64_t append(const Token* tokens, const int32_t* positions, int64_t n);
  // Removes the last n entries again (a failed forward pass).
  void pop(int64_t n) { truncate(size() - n); }

  int32_t block_of(int64_t entry) const { return blocks_[size_t(entry / pool_->shape().block_tokens)]; }
  int slot_of(int64_t entry) const { return int(entry % pool_->shape().block_tokens); }
  const std::vector<int32_t>& blocks() const { return blocks_; }
  KvPool& pool() const { return *pool_; }

 private:
  KvPool* pool_;
  std::vector<int32_t> blocks_;
  std::vector<Token> tokens_;
  std::vector<int32_t> positions_;
};

}  // namespace kvstash
