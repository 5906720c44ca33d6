// Writes a few tiny valid .kvs and .kvz files (small made-up architectures, so each stays far below the
// fuzzer's -max_len; unbudgeted and budgeted states) into the directory given: seeds for kvs_fuzz and kvz_fuzz,
// via fuzz/make_corpus.py.
#include <cstdio>
#include <string>

#include "kvstash/error.h"
#include "kvstash/kvz.h"
#include "kvstash/state.h"

using namespace kvstash;

namespace {
// Each state as seedN.kvs, seedNhf.kvs (key_order hf) and, for kvz_fuzz, seedN.kvz: two lossy
// levels and lossless, in chunks of 2 slots, so that every part of a .kvz (several chunks, a short
// last one, levels side by side) is in the seeds.
void write_seed(const State& s, const std::string& dir, int n) {
  const std::string base = dir + "/seed" + std::to_string(n);
  save_state(s, base + ".kvs");
  save_state(s, base + "hf.kvs", StateSaveOptions{KeyOrder::HuggingFace});  // keys permuted on load
  KvzOptions o;
  o.levels = {1, 2, kvz_lossless_level()};
  o.chunk_tokens = 2;
  save_kvz(s, base + ".kvz", o);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: kvs_make_seeds DIR\n");
    return 2;
  }
  struct Spec { int layers, heads, heads_kv, dim, vocab, tokens; };
  const Spec specs[] = {{1, 1, 1, 4, 8, 0}, {1, 2, 1, 4, 8, 1}, {2, 2, 2, 8, 16, 3}, {3, 4, 2, 6, 5, 5}};
  try {
    int n = 0;
    for (const Spec& sp : specs) {
      State s;
      s.arch = {sp.layers, sp.heads, sp.heads_kv, sp.dim, sp.dim, sp.vocab, 10000.0f, 1.0f};
      s.n_ctx = 64;
      for (int i = 0; i < sp.tokens; ++i) {
        s.tokens.push_back((3 * i + 1) % sp.vocab);
        s.positions.push_back(2 * i + (i > 1));  // gaps, as after eviction
      }
      if (sp.tokens > 0)
        for (int i = 0; i < sp.vocab; ++i) s.logits.push_back(0.25f * float(i) - 1.0f);
      for (size_t i = 0; i < s.model_fingerprint.bytes.size(); ++i) s.model_fingerprint.bytes[i] = uint8_t(17 * i);
      if (sp.tokens > 0) {
        s.allocate_kv();
        for (int l = 0; l < sp.layers; ++l)
          for (size_t i = 0; i < s.kv_elements(); ++i) {
            s.mutable_k(l)[i] = uint16_t(0x3c00 + 7 * i + l);  // f16 values near 1
            s.mutable_v(l)[i] = uint16_t(0xbc00 + 5 * i + l);
          }
      }
      write_seed(s, argv[1], n++);
    }
    // Budgeted states (format version 3): a book with a summary slot, and one with contiguous
    // positions, so that mutations reach the book's checks.
    for (int contiguous = 0; contiguous < 2; ++contiguous) {
      State s;
      s.arch = {2, 2, 1, 4, 4, 8, 10000.0f, 1.0f};
      for (size_t i = 0; i < s.model_fingerprint.bytes.size(); ++i) s.model_fingerprint.bytes[i] = uint8_t(17 * i);
      const int n_tokens = 9;
      EvictionBook b;
      b.budget.budget = 3;
      b.budget.interval = 2;
      b.budget.policy = contiguous ? EvictionPolicy::Sinks : EvictionPolicy::H2O;
      b.budget.sinks = 1;
      b.budget.summary = contiguous ? SummaryMode::None : SummaryMode::Mean;
      b.budget.positions = contiguous ? PositionMode::Contiguous : PositionMode::Original;
      b.pinned = contiguous ? 1 : 0;
      b.has_summary = !contiguous;
      // Slots: h2o [kept, kept, summary, new]; sinks [sink, recent ...].
      const std::vector<std::vector<int32_t>> entries =
          contiguous ? std::vector<std::vector<int32_t>>{{0, 6, 7, 8}, {0, 5, 7, 8}}
                     : std::vector<std::vector<int32_t>>{{1, 5, -1, 8}, {4, 6, -1, 8}};
      for (const auto& e : entries) {
        b.entry.push_back(e);
        b.score.push_back({0.5f, 1.25f, 0.0f, 2.0f});
        b.merged.push_back(contiguous ? 0 : 6);
      }
      for (int i = 0; i < n_tokens; ++i) {
        s.tokens.push_back((5 * i + 2) % 8);
        s.positions.push_back(contiguous ? (i < 5 ? i : 2 + (i - 5) % 2) : i);
      }
      for (int i = 0; i < 8; ++i) s.logits.push_back(0.5f * float(i) - 2.0f);
      s.book = b;
      s.n_ctx = 16;
      s.allocate_kv();
      for (int l = 0; l < 2; ++l)
        for (size_t i = 0; i < s.kv_elements(); ++i) {
          s.mutable_k(l)[i] = uint16_t(0x3c00 + 3 * i + l);
          s.mutable_v(l)[i] = uint16_t(0xbc00 + 11 * i + l);
        }
      write_seed(s, argv[1], n++);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "kvs_make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
