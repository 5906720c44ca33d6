// kvstash run: generate text from a prompt, streaming it (or one JSON object with --json).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "kvstash/prefix.h"

namespace kvstash::cli {

namespace {
struct RunArgs {
  ModelOptions model;
  std::string prompt;
  GenerateOptions gen;
  bool seed_given = false;
  bool chat = false;
  bool json = false;
};

std::string prompt_text(const Model& m, const std::string& prompt, bool chat) {
  return chat ? format_chat(detect_chat_template(m.gguf()), {{"user", prompt}}, true) : prompt;
}
}  // namespace

Command add_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* sub = app.add_subcommand("run", "generate text from a prompt");
  sub->add_option("-p,--prompt", a->prompt, "prompt text (special-token text such as <|im_start|> is parsed)")->required();
  sub->add_option("-n,--n-predict", a->gen.n_predict, "tokens to generate")->capture_default_str()->check(CLI::NonNegativeNumber);
  sub->add_flag("--chat", a->chat, "wrap the prompt in the model's chat template as a user message");
  sub->add_flag("--json", a->json, "print one JSON object instead of streaming text");
  add_model_options(*sub, a->model);
  add_sampling_options(*sub, a->gen.sampling, a->seed_given);
  return [a]() {
    if (!a->seed_given) a->gen.sampling.seed = random_seed();
    validate(a->gen.sampling);
    Loaded l = load(a->model);
    const std::vector<Token> prompt = prompt_tokens(l.model->tokenizer(), prompt_text(*l.model, a->prompt, a->chat));
    Sequence seq = l.engine->new_sequence();
    std::function<void(const std::string&)> print;
    if (!a->json) print = print_now;
    GenerateResult r = generate(*l.engine, seq, prompt, a->gen, print);
    if (!a->json) {
      std::printf("\n");
      return 0;
    }
    nlohmann::json j = {{"tokens", r.tokens},
                        {"text", r.text},
                        {"prompt_tokens", r.prompt_tokens},
                        {"stop_reason", r.stop_reason},
                        {"seed", a->gen.sampling.seed},
                        {"threads", l.engine->n_threads()},
                        {"time_to_first_token_ms", r.time_to_first_token_ms},
                        {"prefill_tokens_per_s", r.prefill_tokens_per_s},
                        {"decode_tokens_per_s", r.decode_tokens_per_s}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  };
}

}  // namespace kvstash::cli
