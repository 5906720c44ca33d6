#include <algorithm>
#include <cstring>
#include <limits>
#include <new>

#include <unistd.h>

#include "kvstash/error.h"
#include "kvstash/kv_cache.h"

namespace kvstash {

KvPool::KvPool(const KvShape& shape, int64_t capacity_tokens) : shape_(shape) {
  if (shape.n_layer <= 0 || shape.n_head_kv <= 0 || shape.head_dim <= 0 || shape.block_tokens <= 0 ||
      shape.block_tokens > kMaxBlockTokens)
    throw Error(ErrorKind::InvalidArgument, "invalid KV cache shape (block_tokens must be in 1.." +
                                                std::to_string(kMaxBlockTokens) + ")");
  if (capacity_tokens <= 0 || capacity_tokens > kMaxTokens)
    throw Error(ErrorKind::InvalidArgument, "KV cache of " + std::to_string(capacity_tokens) +
                                                " tokens: must be between 1 and " + std::to_string(kMaxTokens));
  const int64_t blocks = (capacity_tokens + shape.block_tokens - 1) / shape.block_tokens;
  block_elems_ = size_t(2) * size_t(shape.n_layer) * size_t(shape.n_head_kv) *
                 size_t(shape.block_tokens) * size_t(shape.head_dim);
  // Shapes are below 2^16 each and blocks below 2^24, so the product fits 64 bits.
  const unsigned __int128 bytes = (unsigned __int128)blocks * block_elems_ * sizeof(uint16_t);
  // More than the machine's memory would not fail here (pages are committed lazily) but get the
  // process killed later, as the cache fills: refuse it up front.
  const unsigned __int128 ram = (unsigned __int128)::sysconf(_SC_PHYS_PAGES) * uint64_t(::sysconf(_SC_PAGESIZE));
  try {
    if (bytes > (unsigned __int128)(data_.max_size()) || bytes > ram) throw std::bad_alloc();
    data_.assign(size_t(blocks) * block_elems_, 0);
  } catch (const std::bad_alloc&) {
    throw Error(ErrorKind::ResourceExhausted,
                "cannot allocate a KV cache of " + std::to_string(capacity_tokens) + " tokens (" +
                    std::to_string(uint64_t(bytes >> 20)) + " MiB, this machine has " + std::to_string(uint64_t(ram >> 20)) +
                    " MiB); use a smaller --ctx-size");
  }
  refcount_.assign(size_t(blocks), 0);
  for (int64_t b = blocks - 1; b >= 0; --b) free_.push_back(int32_t(b));
}

int32_t KvPool::allocate() {
  if (free_.empty())
    throw Error(ErrorKind::ResourceExhausted, "KV cache is full (" + std::to_string(n_blocks() * shape_.block_tokens) +
                " tokens); raise --ctx-size");
  const int32_t b = free_.back();
  free_.pop_back();
  refcount_[size_t(b)] = 1;
  return b;
}

void KvPool::release(int32_t block) {
  if (--refcount_[size_t(block)] == 0) free_.push_back(block);
}

int32_t KvPool::copy_block(int32_t block) {
  const int32_t b = allocate();
  std::memcpy(&data_[size_t(b) * block_elems_], &data_[size_t(block) * block_elems_],
              block_elems_ * sizeof(uint16_t));
  return b;
}

size_t KvPool::offset(int32_t block, int layer, int head, int which) const {
  const size_t per_head = size_t(shape_.block_tokens) * size_t(shape_.head_dim);
  return size_t(block) * block_elems_ +
         ((size_t(layer) * 2 + size_t(which)) * size_t(shape_.n_head_kv) + size_t(head)) * per_head;
}

uint16_t* KvPool::k(int32_t b, int l, int h) { return &data_[offset(b, l, h, 0)]; }
uint16_t* KvPool::v(int32_t b, int l, int h) { return &data_[offset(b, l, h, 1)]; }
const uint16_t* KvPool::k(int32_t b, int l, int h) const { return &data_[offset(b, l, h, 0)]; }
const uint16_t* KvPool::v(int32_t b, int l, int h) const { return &data_[offset(b, l, h, 1)]; }

Sequence::Sequence(KvPool& pool, const KvBudget& budget) : pool_(&pool) {
  if (!budget.enabled()) return;
  validate(budget);
  book_ = std::make_unique<EvictionBook>();
  book_->budget = budget;
  const size_t lanes = size_t(pool.shape().n_layer) * size_t(pool.shape().n_head_kv);
  book_->entry.resize(lanes);
  book_->score.resize(lanes);
  book_->merged.assign(lanes, 0);
  if (budget.policy != EvictionPolicy::SnapKV)
    for (size_t l = 0; l < lanes; ++l) {
      book_->entry[l].reserve(size_t(budget.budget + budget.interval));
      book_->score[l].reserve(size_t(budget.budget + budget.interval));
    }
}

Sequence::~Sequence() {
  if (pool_) clear();
}

Sequence::Sequence(Sequence&& o) noexcept
    : pool_(o.pool_), blocks_(std::move(o.blocks_)), tokens_(std::move(o.tokens_)),
      positions_(std::move(o.positions_)), used_(o.used_), book_(std::move(o.book_)) {
  o.blocks_.clear();
  o.tokens_.clear();
  o.positions_.clear();
  o.used_ = 0;
}

Sequence& Sequence::operator=(Sequence&& o) noexcept {
  if (this != &o) {
    clear();
    pool_ = o.pool_;
    blocks_ = std::move(o.blocks_);
    tokens_ = std::move(o.tokens_);
    positions_ = std::move(o.positions_);
    used_ = o.used_;
    book_ = std::move(o.book_);
    o.blocks_.clear();
    o.tokens_.clear();
    o.positions_.clear();
    o.used_ = 0;
  }
  return *this;
}

int32_t Sequence::next_position() const {
  if (book_ && book_->budget.positions == PositionMode::Contiguous) return int32_t(used_);
  return positions_.empty() ? 0 : positions_.back() + 1;
}

int64_t Sequence::room() const {
  if (!book_ || (book_->budget.policy == EvictionPolicy::SnapKV && !book_->selected))
    return std::numeric_limits<int64_t>::max();
  return std::max<int64_t>(0, book_->budget.budget + book_->budget.interval - used_);
}

Sequence Sequence::fork() const {
  Sequence s(*pool_);
  s.blocks_ = blocks_;
  s.tokens_ = tokens_;
  s.positions_ = positions_;
  s.used_ = used_;
  if (book_) s.book_ = std::make_unique<EvictionBook>(*book_);
  for (int32_t b : blocks_) pool_->retain(b);
  return s;
}

bool Sequence::can_truncate(int64_t n) const {
  if (n < 0 || n > used_) return false;
  if (!book_ || n == used_ || n == 0) return true;
  const EvictionBook& b = *book_;
  // Nothing evicted yet and no scores: slots are the stream, and cutting it loses nothing.
  return used_ == n_processed() && !b.has_summary && !b.selected && !scores_attention(b.budget.policy);
}

void Sequence::drop_blocks_beyond(int64_t slots) {
  const int bt = pool_->shape().block_tokens;
  const size_t keep = size_t((slots + bt - 1) / bt);
  while (blocks_.size() > keep) {
    pool_->release(blocks_.back());
    blocks_.pop_back();
  }
}

void Sequence::clear() {
  drop_blocks_beyond(0);
  tokens_.clear();
  positions_.clear();
  used_ = 0;
  if (book_) {
    for (auto& e : book_->entry) e.clear();
    for (auto& s : book_->score) s.clear();
    std::fill(book_->merged.begin(), book_->merged.end(), 0);
    book_->pinned = 0;
    book_->has_summary = book_->selected = false;
  }
}

void Sequence::truncate(int64_t n) {
  if (!can_truncate(n))
    throw Error(ErrorKind::InvalidArgument, "cannot truncate a sequence of " + std::to_string(used_) + " entries to " +
                                                std::to_string(n) +
                                                (n >= 0 && n <= used_ ? " (a budgeted sequence cannot drop entries it has scored or evicted)" : ""));
  if (n == 0) return clear();
  drop_blocks_beyond(n);
  if (book_) {
    for (auto& e : book_->entry) e.resize(size_t(n));
    for (auto& s : book_->score) s.resize(size_t(n));
  }
  if (!book_ || used_ == n_processed()) {
    tokens_.resize(size_t(n));
    positions_.resize(size_t(n));
  }
  used_ = n;
}

int64_t Sequence::append(const Token* tokens, const int32_t* positions, int64_t n) {
  const int64_t first = used_;
  if (n > room())
    throw Error(ErrorKind::Internal, "append of " + std::to_string(n) + " entries passes the next eviction point");
  for (int64_t i = 0; i < n; ++i)
    if (positions[i] < 0 || positions[i] >= kMaxPosition)
      throw Error(ErrorKind::InvalidArgument, "position " + std::to_string(positions[i]) + " is outside [0, " +
                                                  std::to_string(kMaxPosition) + ")");
  if (n_processed() + n > int64_t(std::numeric_limits<int32_t>::max()))
    throw Error(ErrorKind::InvalidArgument, "a sequence processes at most 2^31 - 1 tokens");
  const int bt = pool_->shape().block_tokens;
  const size_t need = size_t((first + n + bt - 1) / bt);
  const bool copy_last = first % bt != 0 && pool_->refcount(blocks_.back()) > 1;
  if (need - blocks_.size() + (copy_last ? 1 : 0) > size_t(pool_->free_blocks()))
    throw Error(ErrorKind::ResourceExhausted, "KV cache is full: " + std::to_string(first + n) + " entries do not fit in " +
                std::to_string(pool_->n_blocks() * bt) + "; raise --ctx-size");
  // The partly filled last block may be shared with a fork: write into a private copy.
  if (copy_last) {
    const int32_t copy = pool_->copy_block(blocks_.back());
    pool_->release(blocks_.back());
    blocks_.back() = copy;
  }
  while (blocks_.size() < need) blocks_.push_back(pool_->allocate());
  if (book_)
    for (size_t l = 0; l < book_->entry.size(); ++l)
      for (int64_t i = 0; i < n; ++i) {
        book_->entry[l].push_back(int32_t(n_processed() + i));
        book_->score[l].push_back(0.0f);
      }
  tokens_.insert(tokens_.end(), tokens, tokens + n);
  positions_.insert(positions_.end(), positions, positions + n);
  used_ += n;
  return first;
}

}  // namespace kvstash
