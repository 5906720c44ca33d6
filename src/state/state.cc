// State storage and its consistency check.
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstring>
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
  kv_shape_[2] = size();
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
  if (s.n_ctx < s.size() || s.n_ctx > KvPool::kMaxTokens)
    fail("context of " + std::to_string(s.n_ctx) + " tokens for " + std::to_string(s.size()) + " entries");
  for (size_t i = 0; i < s.tokens.size(); ++i) {
    if (s.tokens[i] < 0 || s.tokens[i] >= a.n_vocab)
      fail("token id " + std::to_string(s.tokens[i]) + " at entry " + std::to_string(i) +
           " is outside the vocabulary of " + std::to_string(a.n_vocab));
    if (s.positions[i] < 0 || (i > 0 && s.positions[i] <= s.positions[i - 1]))
      fail("positions are not increasing at entry " + std::to_string(i));
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
  if (!s.tokens.empty() && !s.has_kv()) fail("no K/V data");
}

}  // namespace kvstash
