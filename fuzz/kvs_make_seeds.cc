// Writes a few tiny valid .kvs files (small made-up architectures, so each stays far below the
// fuzzer's -max_len) into the directory given: seeds for kvs_fuzz, via fuzz/make_corpus.py.
#include <cstdio>
#include <string>

#include "kvstash/error.h"
#include "kvstash/state.h"

using namespace kvstash;

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
      save_state(s, std::string(argv[1]) + "/seed" + std::to_string(n++) + ".kvs");
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "kvs_make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
