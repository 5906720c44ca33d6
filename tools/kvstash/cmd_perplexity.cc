// kvstash perplexity: perplexity of a text file in consecutive windows of -c tokens (as llama.cpp's
// llama-perplexity: the context size is the window).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "kvstash/generate.h"
#include "text_input.h"

namespace kvstash::cli {

namespace {
struct PerplexityArgs {
  ModelOptions model;
  std::string file;
  bool json = false;
};
}  // namespace

Command add_perplexity(CLI::App& app) {
  auto a = std::make_shared<PerplexityArgs>();
  a->model.ctx_size = 512;
  CLI::App* sub = app.add_subcommand("perplexity", "perplexity of a text file");
  sub->add_option("-f,--file", a->file, "text file ('-': stdin)")->required();
  sub->add_flag("--json", a->json, "print one JSON object");
  add_model_options(*sub, a->model);
  add_ctx_options(*sub, a->model, "window size in tokens, also the KV cache size")->capture_default_str();
  return [a]() {
    const std::string text = read_text_file(a->file);
    Loaded l = load_model(a->model);
    const std::vector<Token> tokens = l.model->tokenizer().encode(text, true, false);
    start_engine(l, a->model, a->model.ctx_size, 0, "window");
    const int64_t window = a->model.ctx_size;
    const PerplexityResult r = perplexity(*l.engine, tokens, window);
    if (a->json) {
      nlohmann::json j = {{"perplexity", r.perplexity}, {"mean_nll", r.mean_nll}, {"tokens", r.tokens},
                          {"scored_tokens", r.scored}, {"windows", r.windows}, {"ctx", window},
                          {"tokens_per_s", r.tokens_per_s}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("perplexity %.4f over %lld tokens (%lld windows of %lld, %.1f tokens/s)\n", r.perplexity,
                  (long long)r.tokens, (long long)r.windows, (long long)window, r.tokens_per_s);
    }
    return 0;
  };
}

}  // namespace kvstash::cli
