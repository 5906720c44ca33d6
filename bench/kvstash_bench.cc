// Engine timing for bench/speed.sh (a benchmark, not a test). One measurement per process so that
// ru_maxrss is the peak of that run alone. Prints one JSON object.
//   kvstash_bench --tokens FILE --model GGUF --threads N --ctx C --prefill P [--decode G]
// FILE holds whitespace-separated token ids (the same ids the llama.cpp side reads).
//   --prefill P: time one forward call over the first P tokens (prefill tokens/s);
//   --decode G: then generate G tokens greedily, one forward call each (decode tokens/s).
//   kvstash_bench --model GGUF --tokenize TEXTFILE: print the token ids of a text (BOS added as
//   the CLI does).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "kvstash/engine.h"
#include "kvstash/kernels.h"
#include "kvstash/model.h"

using namespace kvstash;

int main(int argc, char** argv) {
  std::string model_path = default_model_path(), tokens_file, tokenize_file;
  int threads = 0;
  int64_t ctx = 0, n_prefill = 0, n_decode = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model") model_path = v;
    else if (k == "--tokens") tokens_file = v;
    else if (k == "--tokenize") tokenize_file = v;
    else if (k == "--threads") threads = std::stoi(v);
    else if (k == "--ctx") ctx = std::stoll(v);
    else if (k == "--prefill") n_prefill = std::stoll(v);
    else if (k == "--decode") n_decode = std::stoll(v);
    else { std::fprintf(stderr, "unknown option %s\n", k.c_str()); return 2; }
  }
  try {
    const auto t_load = std::chrono::steady_clock::now();
    std::unique_ptr<Model> model = Model::load(model_path);
    if (!tokenize_file.empty()) {
      std::ifstream in(tokenize_file, std::ios::binary);
      const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      for (Token t : model->tokenizer().encode(text, true, true)) std::printf("%d\n", t);
      return 0;
    }
    std::vector<Token> tokens;
    {
      std::ifstream in(tokens_file);
      for (Token t; in >> t;) tokens.push_back(t);
    }
    if (int64_t(tokens.size()) < n_prefill) {
      std::fprintf(stderr, "only %zu tokens in %s\n", tokens.size(), tokens_file.c_str());
      return 1;
    }
    EngineOptions eo;
    eo.n_ctx = ctx;
    ThreadPool pool(threads);
    Engine engine(*model, pool, eo);
    Sequence seq = engine.new_sequence();
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();

    const int n_vocab = model->config().n_vocab;
    auto t0 = std::chrono::steady_clock::now();
    const float* logits = engine.forward(seq, tokens.data(), n_prefill);
    const double prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    Token next = Token(std::max_element(logits, logits + n_vocab) - logits);

    double decode_s = 0;
    if (n_decode > 0) {
      t0 = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < n_decode; ++i) {
        logits = engine.forward(seq, &next, 1);
        next = Token(std::max_element(logits, logits + n_vocab) - logits);
      }
      decode_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    // Bytes of weights one decode step streams: every layer matrix and the output matrix.
    size_t weight_bytes = size_t(model->output().rows) * model->output().row_stride;
    for (int il = 0; il < model->config().n_layer; ++il) {
      const LayerWeights& l = model->layer(il);
      for (const Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
        weight_bytes += size_t(w->rows) * w->row_stride;
    }
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    std::printf(
        "{\"engine\": \"kvstash\", \"threads\": %d, \"n_prompt\": %lld, \"n_decode\": %lld, "
        "\"load_s\": %.4f, \"prefill_s\": %.6f, \"prefill_tokens_per_s\": %.3f, \"decode_s\": %.6f, "
        "\"decode_tokens_per_s\": %.3f, \"weight_bytes_per_token\": %zu, \"maxrss_kb\": %ld, "
        "\"last_token\": %d, \"simd\": \"%s\"}\n",
        engine.n_threads(), (long long)n_prefill, (long long)n_decode, load_s, prefill_s,
        double(n_prefill) / prefill_s, decode_s, n_decode > 0 ? double(n_decode) / decode_s : 0.0,
        weight_bytes, ru.ru_maxrss, next, Kernels::active().name());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvstash_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
