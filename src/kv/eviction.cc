// Eviction in a budgeted sequence: choosing the entries each lane keeps (by the policy), folding
// the rest into the summary entry, and compacting the kept entries in place (stream order kept).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "kvstash/error.h"
#include "kvstash/kernels.h"
#include "kvstash/kv_cache.h"

namespace kvstash {

namespace {

// The n candidates with the highest score, ascending by slot; ties keep the newer entry.
std::vector<int32_t> top_by_score(std::vector<int32_t> candidates, const std::vector<float>& score, size_t n) {
  n = std::min(n, candidates.size());
  auto better = [&](int32_t a, int32_t b) {
    return score[size_t(a)] != score[size_t(b)] ? score[size_t(a)] > score[size_t(b)] : a > b;
  };
  std::nth_element(candidates.begin(), candidates.begin() + long(n), candidates.end(), better);
  candidates.resize(n);
  std::sort(candidates.begin(), candidates.end());
  return candidates;
}

// Slots of one lane the policy keeps among [first, used) minus the summary slot, `n` of them.
std::vector<int32_t> choose(const EvictionBook& b, size_t lane, int64_t first, int64_t used, int64_t n_processed,
                            int64_t summary_slot, int64_t n) {
  std::vector<int32_t> cand;
  for (int64_t s = first; s < used; ++s)
    if (s != summary_slot) cand.push_back(int32_t(s));
  const size_t keep = size_t(std::max<int64_t>(0, n));
  if (keep >= cand.size()) return cand;
  const KvBudget& c = b.budget;
  switch (c.policy) {
    case EvictionPolicy::Window:
    case EvictionPolicy::Sinks:
    case EvictionPolicy::SnapKV:  // after its selection: a window over what came later
      return std::vector<int32_t>(cand.end() - long(keep), cand.end());
    case EvictionPolicy::Tova:
    case EvictionPolicy::Fsdc:
      return top_by_score(cand, b.score[lane], keep);
    case EvictionPolicy::H2O: {
      const size_t recent = std::min(keep, size_t(std::llround(c.recent * double(c.budget))));
      std::vector<int32_t> old(cand.begin(), cand.end() - long(recent));
      std::vector<float> score = b.score[lane];
      if (c.normalize)  // each entry's attention per query that saw it (the stream after it)
        for (int32_t s : old) score[size_t(s)] /= float(n_processed - b.entry[lane][size_t(s)]);
      std::vector<int32_t> kept = top_by_score(old, score, keep - recent);
      kept.insert(kept.end(), cand.end() - long(recent), cand.end());
      return kept;
    }
  }
  return cand;
}

// Max over a window of `width` neighbours (SnapKV's pooling), within [0, n).
std::vector<float> max_pool(const std::vector<float>& x, int64_t n, int width) {
  std::vector<float> out(static_cast<size_t>(n));
  const int64_t half = width / 2;
  for (int64_t i = 0; i < n; ++i) {
    float m = x[size_t(i)];
    for (int64_t j = std::max<int64_t>(0, i - half); j <= std::min(n - 1, i + half); ++j) m = std::max(m, x[size_t(j)]);
    out[size_t(i)] = m;
  }
  return out;
}

}  // namespace

void Sequence::make_blocks_private() {
  int64_t shared = 0;
  for (int32_t b : blocks_) shared += pool_->refcount(b) > 1 ? 1 : 0;
  if (shared > pool_->free_blocks())
    throw Error(ErrorKind::ResourceExhausted, "KV cache is full: evicting in a forked sequence needs " +
                                                  std::to_string(shared) + " free blocks for private copies; raise the pool size");
  for (int32_t& b : blocks_)
    if (pool_->refcount(b) > 1) {
      const int32_t copy = pool_->copy_block(b);
      pool_->release(b);
      b = copy;
    }
}

// keep[lane]: slots (ascending, none below `pinned`, never the summary slot) that stay, moved down
// to pinned, pinned + 1, ...; with `summary`, the others fold into slot budget - 1.
void Sequence::compact(const std::vector<std::vector<int32_t>>& keep, bool summary, const KeyRotator& rotate) {
  EvictionBook& b = *book_;
  const KvShape& sh = pool_->shape();
  const size_t hd = size_t(sh.head_dim);
  const int64_t summary_slot = b.budget.budget - 1;
  const int64_t new_used = int64_t(keep[0].size()) + b.pinned + (summary ? 1 : 0);
  const bool mean = b.budget.summary == SummaryMode::Mean;
  const bool contiguous = b.budget.positions == PositionMode::Contiguous;
  std::vector<float> sk(hd), sv(hd);
  std::vector<uint8_t> kept(static_cast<size_t>(used_));
  for (int l = 0; l < sh.n_layer; ++l)
    for (int h = 0; h < sh.n_head_kv; ++h) {
      const size_t lane = size_t(l) * size_t(sh.n_head_kv) + size_t(h);
      auto krow = [&](int64_t s) { return pool_->k(block_of(s), l, h) + size_t(slot_of(s)) * hd; };
      auto vrow = [&](int64_t s) { return pool_->v(block_of(s), l, h) + size_t(slot_of(s)) * hd; };
      if (summary) {
        // Fold the evicted entries (read before compaction overwrites them) into the summary.
        std::fill(kept.begin(), kept.end(), 0);
        for (int32_t s : keep[lane]) kept[size_t(s)] = 1;
        const bool had = b.has_summary;
        const double old_n = double(b.merged[lane]);
        for (size_t d = 0; d < hd; ++d) {
          sk[d] = had ? f16_to_f32(krow(summary_slot)[d]) * float(mean ? old_n : 1.0) : 0.0f;
          sv[d] = had ? f16_to_f32(vrow(summary_slot)[d]) * float(mean ? old_n : 1.0) : 0.0f;
        }
        int64_t n_new = 0;
        for (int64_t s = b.pinned; s < used_; ++s) {
          if (kept[size_t(s)] || (had && s == summary_slot)) continue;
          for (size_t d = 0; d < hd; ++d) {
            sk[d] += f16_to_f32(krow(s)[d]);
            sv[d] += f16_to_f32(vrow(s)[d]);
          }
          ++n_new;
        }
        b.merged[lane] += n_new;
        const float div = mean ? float(b.merged[lane]) : 1.0f;
        for (size_t d = 0; d < hd; ++d) {  // f16's range: a sum of many entries must not become inf
          sk[d] = std::clamp(sk[d] / div, -65504.0f, 65504.0f);
          sv[d] = std::clamp(sv[d] / div, -65504.0f, 65504.0f);
        }
      }
      std::vector<int32_t>& entry = b.entry[lane];
      std::vector<float>& score = b.score[lane];
      int64_t dst = b.pinned;
      for (int32_t s : keep[lane]) {
        if (s != dst) {
          std::memmove(krow(dst), krow(s), hd * 2);
          std::memmove(vrow(dst), vrow(s), hd * 2);
          if (contiguous) rotate(krow(dst), int32_t(dst - s));  // its position is its slot
          entry[size_t(dst)] = entry[size_t(s)];
          score[size_t(dst)] = score[size_t(s)];
        }
        ++dst;
      }
      if (summary) {
        for (size_t d = 0; d < hd; ++d) {
          krow(summary_slot)[d] = f32_to_f16(sk[d]);
          vrow(summary_slot)[d] = f32_to_f16(sv[d]);
        }
        entry[size_t(summary_slot)] = -1;
        score[size_t(summary_slot)] = 0.0f;
      }
      entry.resize(size_t(new_used));
      score.resize(size_t(new_used));
    }
  if (summary) b.has_summary = true;
  used_ = new_used;
  drop_blocks_beyond(used_);
}

void Sequence::evict(const KeyRotator& rotate) {
  if (!book_ || !eviction_due()) return;
  make_blocks_private();
  EvictionBook& b = *book_;
  const KvBudget& c = b.budget;
  if (c.policy == EvictionPolicy::Sinks) b.pinned = c.sinks;
  const bool summary = c.summary != SummaryMode::None;
  const int64_t summary_slot = b.has_summary ? c.budget - 1 : -1;
  const int64_t keep_n = c.budget - b.pinned - (summary ? 1 : 0);
  std::vector<std::vector<int32_t>> keep(b.entry.size());
  for (size_t lane = 0; lane < keep.size(); ++lane)
    keep[lane] = choose(b, lane, b.pinned, used_, n_processed(), summary_slot, keep_n);
  compact(keep, summary, rotate);
  if (c.policy == EvictionPolicy::Fsdc)  // the seed scores with the current pass only
    for (auto& s : b.score) std::fill(s.begin(), s.end(), 0.0f);
}

void Sequence::select_after_prefill(const KeyRotator& rotate) {
  if (!book_ || book_->budget.policy != EvictionPolicy::SnapKV || book_->selected) return;
  EvictionBook& b = *book_;
  const KvBudget& c = b.budget;
  if (used_ > c.budget) {
    make_blocks_private();
    const bool summary = c.summary != SummaryMode::None;
    const int64_t window = std::min<int64_t>(c.snapkv_window, used_);
    const int64_t prefix = used_ - window, top = c.budget - window - (summary ? 1 : 0);
    std::vector<std::vector<int32_t>> keep(b.entry.size());
    std::vector<int32_t> cand(static_cast<size_t>(prefix));
    std::iota(cand.begin(), cand.end(), 0);
    for (size_t lane = 0; lane < keep.size(); ++lane) {
      keep[lane] = top_by_score(cand, max_pool(b.score[lane], prefix, c.snapkv_pool), size_t(top));
      for (int64_t s = prefix; s < used_; ++s) keep[lane].push_back(int32_t(s));
    }
    b.pinned = 0;
    compact(keep, summary, rotate);
    b.pinned = int32_t(top);
  }
  for (auto& s : b.score) std::fill(s.begin(), s.end(), 0.0f);
  b.selected = true;
}

void Sequence::assign_budgeted(const std::vector<Token>& tokens, const std::vector<int32_t>& positions,
                               int64_t slots, const EvictionBook& book) {
  const size_t lanes = size_t(pool_->shape().n_layer) * size_t(pool_->shape().n_head_kv);
  auto bad = [](const std::string& what) { throw Error(ErrorKind::InvalidArgument, "budgeted state: " + what); };
  validate(book.budget);
  if (tokens.size() != positions.size()) bad("tokens and positions differ in length");
  if (book.entry.size() != lanes || book.score.size() != lanes || book.merged.size() != lanes)
    bad("bookkeeping for " + std::to_string(book.entry.size()) + " lanes, the model has " + std::to_string(lanes));
  const bool snap_open = book.budget.policy == EvictionPolicy::SnapKV && !book.selected;
  if (slots < 0 || slots > int64_t(tokens.size()) || (!snap_open && slots > book.budget.budget + book.budget.interval))
    bad(std::to_string(slots) + " entries per head for " + std::to_string(tokens.size()) + " tokens and " +
        describe(book.budget));
  if (book.pinned < 0 || book.pinned > slots) bad("pinned count out of range");
  const int64_t summary_slot = book.has_summary ? book.budget.budget - 1 : -1;
  if (book.has_summary && (book.budget.summary == SummaryMode::None || summary_slot >= slots))
    bad("summary entry where the settings allow none");
  for (size_t l = 0; l < lanes; ++l) {
    if (int64_t(book.entry[l].size()) != slots || int64_t(book.score[l].size()) != slots)
      bad("lane " + std::to_string(l) + " holds another number of entries");
    if (book.merged[l] < 0 || (book.merged[l] > 0) != book.has_summary) bad("summary counts do not match");
    int64_t prev = -1;
    for (int64_t s = 0; s < slots; ++s) {
      const int32_t e = book.entry[l][size_t(s)];
      if (!std::isfinite(book.score[l][size_t(s)])) bad("a score is not finite");
      if (s == summary_slot) {
        if (e != -1) bad("the summary slot holds an entry");
        continue;
      }
      if (e <= prev || e >= int64_t(tokens.size())) bad("entries are not increasing stream indices");
      prev = e;
    }
  }
  const int bt = pool_->shape().block_tokens;
  int64_t freed = 0;
  for (int32_t blk : blocks_) freed += pool_->refcount(blk) == 1 ? 1 : 0;
  if ((slots + bt - 1) / bt > pool_->free_blocks() + freed)
    throw Error(ErrorKind::ResourceExhausted, "state of " + std::to_string(slots) + " entries per head does not fit the free KV cache");
  clear();
  while (int64_t(blocks_.size()) * bt < slots) blocks_.push_back(pool_->allocate());
  tokens_ = tokens;
  positions_ = positions;
  used_ = slots;
  book_ = std::make_unique<EvictionBook>(book);
}

}  // namespace kvstash
