// State storage and its consistency check.
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <new>

#include "kvstash/error.h"
#include "state/check.h"

namespace kvstash {

namespace {

// Uninitialised memory, 64-byte aligned. Large buffers come from their own mapping in transparent
// huge pages where the kernel offers them: faulting in 4 KiB pages costs more than the copy.
std::shared_ptr<const void> allocate_bytes(size_t bytes) {
  constexpr size_t kHuge = size_t(2) << 20;
  if (bytes >= 2 * kHuge) {
    const size_t len = bytes + kHuge;
    void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~uintptr_t(kHuge - 1));
    ::madvise(aligned, bytes, MADV_HUGEPAGE);  // advice only: failure is harmless
    return std::shared_ptr<const void>(aligned, [p, len](const void*) { ::munmap(p, len); });
  }
  void* p = ::operator new(std::max<size_t>(bytes, 64), std::align_val_t(64));
  return std::shared_ptr<const void>(p, [](const void* q) { ::operator delete(const_cast<void*>(q), std::align_val_t(64)); });
}

}  // namespace

void State::allocate_kv() {
  constexpr size_t kAlignElems = 32;  // 64 bytes: every layer's K and V start aligned
  const size_t stride = (kv_elements() + kAlignElems - 1) / kAlignElems * kAlignElems;
  storage_ = allocate_bytes(2 * size_t(arch.n_layer) * stride * sizeof(uint16_t));
  uint16_t* base = static_cast<uint16_t*>(const_cast<void*>(storage_.get()));
  owned_ = true;
  kv_shape_[0] = arch.n_layer;
  kv_shape_[1] = arch.n_head_kv;
  kv_shape_[2] = kv_entries();
  kv_shape_[3] = arch.head_dim;
  k_.assign(size_t(arch.n_layer), nullptr);
  v_.assign(size_t(arch.n_layer), nullptr);
  for (size_t l = 0; l < size_t(arch.n_layer); ++l) {
    k_[l] = base + 2 * l * stride;
    v_[l] = base + (2 * l + 1) * stride;
  }
}

uint16_t* State::mutable_k(int layer) {
  if (!owned_) throw Error(ErrorKind::Internal, "state K/V storage is read-only (not allocated by allocate_kv)");
  return const_cast<uint16_t*>(k_.at(size_t(layer)));
}

uint16_t* State::mutable_v(int layer) {
  if (!owned_) throw Error(ErrorKind::Internal, "state K/V storage is read-only (not allocated by allocate_kv)");
  return const_cast<uint16_t*>(v_.at(size_t(layer)));
}

StateArch state_arch(const ModelConfig& c) {
  return StateArch{c.n_layer, c.n_head, c.n_head_kv, c.head_dim, c.n_rot, c.n_vocab,
                   c.rope_base, c.rope_linear_scale};
}

namespace {

// The book of a budgeted state: every field against what a Sequence can hold (a crafted file may
// set any of them; Sequence::assign_budgeted checks again).
void check_book(const State& s, const std::function<void(const std::string&)>& fail) {
  const EvictionBook& b = *s.book;
  if (int(b.budget.policy) < 0 || int(b.budget.policy) > int(EvictionPolicy::Fsdc) || int(b.budget.summary) < 0 ||
      int(b.budget.summary) > int(SummaryMode::Mean) || int(b.budget.positions) < 0 ||
      int(b.budget.positions) > int(PositionMode::Contiguous))
    fail("invalid KV budget (unknown policy, summary or position mode)");
  try {
    validate(b.budget);
  } catch (const Error& e) {
    fail(std::string("invalid KV budget (") + e.what() + ")");
  }
  if (!b.budget.enabled()) fail("a book without a budget");
  const size_t lanes = size_t(s.arch.n_layer) * size_t(s.arch.n_head_kv);
  if (b.entry.size() != lanes || b.score.size() != lanes || b.merged.size() != lanes)
    fail("the book holds " + std::to_string(b.entry.size()) + " entry lanes, " + std::to_string(b.score.size()) +
         " score lanes and " + std::to_string(b.merged.size()) + " merged counts for " + std::to_string(lanes) +
         " lanes (layers x KV heads)");
  const int64_t slots = s.kv_entries(), n = s.size();
  // Before SnapKV's selection the prompt's entries all stay (bounded by what was processed);
  // otherwise a lane holds at most budget + interval entries (eviction is due at that count).
  const bool unselected_snapkv = b.budget.policy == EvictionPolicy::SnapKV && !b.selected;
  if (!unselected_snapkv && slots > b.budget.budget + b.budget.interval)
    fail("the book holds " + std::to_string(slots) + " slots per lane, more than budget " +
         std::to_string(b.budget.budget) + " + interval " + std::to_string(b.budget.interval));
  // An eviction leaves exactly `budget` slots and the sequence only grows between two.
  if (slots < std::min<int64_t>(n, b.budget.budget))
    fail("the book holds " + std::to_string(slots) + " slots per lane, fewer than the " +
         std::to_string(std::min<int64_t>(n, b.budget.budget)) + " an eviction leaves");
  if (slots > n)
    fail("the book holds " + std::to_string(slots) + " slots per lane but only " + std::to_string(n) +
         " tokens were processed");
  if (b.selected && b.budget.policy != EvictionPolicy::SnapKV) fail("a selection is marked for a policy other than snapkv");
  if (b.pinned < 0 || b.pinned > b.budget.budget || b.pinned > slots)
    fail("pinned slot count " + std::to_string(b.pinned) + " does not fit " + std::to_string(slots) +
         " slots (budget " + std::to_string(b.budget.budget) + ")");
  // The policies pin nothing, Sinks its sinks (from the first eviction on), SnapKV its selection.
  const bool pins = b.pinned == 0 ||
                    (b.budget.policy == EvictionPolicy::Sinks && b.pinned == b.budget.sinks) ||
                    (b.budget.policy == EvictionPolicy::SnapKV && b.selected &&
                     b.pinned == b.budget.budget - b.budget.snapkv_window - (b.budget.summary != SummaryMode::None));
  if (!pins) fail("pinned slot count " + std::to_string(b.pinned) + " is not one policy " + to_string(b.budget.policy) + " sets");
  // Eviction folds entries into slot budget - 1 (src/kv/eviction.cc): the kept entries come
  // before it, the ones appended since after it.
  const int64_t summary_slot = b.has_summary ? b.budget.budget - 1 : -1;
  if (b.has_summary && (b.budget.summary == SummaryMode::None || summary_slot >= slots))
    fail("a summary slot where the budget allows none (summary " + to_string(b.budget.summary) + ", " +
         std::to_string(slots) + " slots)");
  for (size_t lane = 0; lane < lanes; ++lane) {
    const std::vector<int32_t>& e = b.entry[lane];
    const std::string where = " in lane " + std::to_string(lane) + " (layer " +
                              std::to_string(lane / size_t(s.arch.n_head_kv)) + ", KV head " +
                              std::to_string(lane % size_t(s.arch.n_head_kv)) + ")";
    if (int64_t(e.size()) != slots || int64_t(b.score[lane].size()) != slots)
      fail("the book's lanes differ in length" + where);
    int64_t last = -1, kept = 0;
    for (int64_t i = 0; i < slots; ++i) {
      const int32_t x = e[size_t(i)];
      if (i == summary_slot) {
        if (x != -1) fail("slot " + std::to_string(i) + " must hold the summary (-1), holds " + std::to_string(x) + where);
      } else {
        if (x < 0 || x >= n)
          fail("slot " + std::to_string(i) + " holds entry " + std::to_string(x) + ", outside [0, " + std::to_string(n) +
               ")" + where);
        if (x <= last) fail("entries are not increasing at slot " + std::to_string(i) + where);
        last = x;
        ++kept;
      }
      if (!std::isfinite(b.score[lane][size_t(i)])) fail("score of slot " + std::to_string(i) + " is not finite" + where);
    }
    const int64_t merged = b.merged[lane];
    if (merged < 0 || (merged > 0) != b.has_summary || merged > n - kept)
      fail("merged count " + std::to_string(merged) + where + (b.has_summary ? " with" : " without") +
           " a summary slot, " + std::to_string(kept) + " entries kept of " + std::to_string(n));
  }
}

}  // namespace

void check_state(const State& s, const std::string& context, ErrorKind kind) {
  auto fail = [&](const std::string& what) { throw Error(kind, context + ": " + what); };
  const StateArch& a = s.arch;
  if (a.n_layer <= 0 || a.n_head <= 0 || a.n_head_kv <= 0 || a.head_dim <= 0 || a.n_rot <= 0 ||
      a.n_vocab <= 0 || a.n_layer > kMaxStateDim || a.n_head > kMaxStateDim || a.head_dim > kMaxStateDim ||
      a.n_vocab > kMaxStateVocab || a.n_rot > a.head_dim || a.n_head % a.n_head_kv != 0 ||
      !(std::isfinite(a.rope_base) && a.rope_base > 0) ||
      !(std::isfinite(a.rope_linear_scale) && a.rope_linear_scale > 0))
    fail("invalid architecture parameters");
  if (s.cache_type != DType::F16) fail("cache type " + dtype_name(uint32_t(s.cache_type)) + " is not f16");
  if (s.positions.size() != s.tokens.size())
    fail(std::to_string(s.tokens.size()) + " tokens but " + std::to_string(s.positions.size()) +
         " positions");
  if (s.book) check_book(s, fail);
  // An unbudgeted state's entries are its tokens; a budgeted one's stream may be longer (up to one
  // token per position) while its slots are what the context must hold.
  if (s.size() > (s.book ? int64_t(kMaxPosition) : KvPool::kMaxTokens))
    fail(std::to_string(s.size()) + " tokens are more than a state may hold");
  if (s.n_ctx < s.kv_entries() || s.n_ctx > KvPool::kMaxTokens)
    fail("context of " + std::to_string(s.n_ctx) + " tokens for " + std::to_string(s.kv_entries()) + " entries");
  // Contiguous positions (budgeted only) are each token's slot when it was processed: they restart
  // after every eviction, so they are bounded but not increasing.
  const bool increasing = !(s.book && s.book->budget.positions == PositionMode::Contiguous);
  for (size_t i = 0; i < s.tokens.size(); ++i) {
    if (s.tokens[i] < 0 || s.tokens[i] >= a.n_vocab)
      fail("token id " + std::to_string(s.tokens[i]) + " at entry " + std::to_string(i) +
           " is outside the vocabulary of " + std::to_string(a.n_vocab));
    if (s.positions[i] < 0 || (increasing && i > 0 && s.positions[i] <= s.positions[i - 1]))
      fail("positions are not increasing at entry " + std::to_string(i));
    if (!increasing && s.positions[i] > int64_t(i))
      fail("contiguous position " + std::to_string(s.positions[i]) + " at entry " + std::to_string(i) +
           " is beyond the entries before it");
  }
  // Room to continue: the next position must exist (Sequence refuses positions past kMaxPosition).
  if (!s.positions.empty() && s.positions.back() >= kMaxPosition - 1)
    fail("position " + std::to_string(s.positions.back()) + " leaves no room to continue (limit " +
         std::to_string(kMaxPosition) + ")");
  const size_t want_logits = s.tokens.empty() ? 0 : size_t(a.n_vocab);
  if (s.logits.size() != want_logits)
    fail("logits hold " + std::to_string(s.logits.size()) + " values, expected " +
         std::to_string(want_logits));
  for (size_t i = 0; i < s.logits.size(); ++i)
    if (!std::isfinite(s.logits[i])) fail("logit " + std::to_string(i) + " is not finite");
  if (s.kv_entries() > 0 && !s.has_kv()) fail("no K/V data");
}

}  // namespace kvstash
