// kvstash perplexity: perplexity of a text file in consecutive windows of --ctx tokens.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "kvstash/generate.h"

namespace kvstash::cli {

namespace {
struct PerplexityArgs {
  ModelOptions model;
  std::string file;
  int64_t ctx = 512;
  bool json = false;
};
}  // namespace

Command add_perplexity(CLI::App& app) {
  auto a = std::make_shared<PerplexityArgs>();
  CLI::App* sub = app.add_subcommand("perplexity", "perplexity of a text file");
  sub->add_option("-f,--file", a->file, "text file")->required();
  sub->add_option("--ctx", a->ctx, "window size in tokens")->capture_default_str();
  sub->add_flag("--json", a->json, "print one JSON object");
  add_model_options(*sub, a->model);
  return [a]() {
    const std::string text = read_text_file(a->file);
    if (a->model.ctx_size == 0) a->model.ctx_size = a->ctx;
    Loaded l = load(a->model);
    const std::vector<Token> tokens = l.model->tokenizer().encode(text, true, false);
    const PerplexityResult r = perplexity(*l.engine, tokens, a->ctx);
    if (a->json) {
      nlohmann::json j = {{"perplexity", r.perplexity}, {"mean_nll", r.mean_nll}, {"tokens", r.tokens},
                          {"scored_tokens", r.scored}, {"windows", r.windows}, {"ctx", a->ctx},
                          {"tokens_per_s", r.tokens_per_s}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("perplexity %.4f over %lld tokens (%lld windows of %lld, %.1f tokens/s)\n", r.perplexity,
                  (long long)r.tokens, (long long)r.windows, (long long)a->ctx, r.tokens_per_s);
    }
    return 0;
  };
}

}  // namespace kvstash::cli
