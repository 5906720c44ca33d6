// kvstash generate: load a saved state and generate one continuation per --prompt.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "kvstash/prefix.h"

namespace kvstash::cli {

namespace {
struct GenerateArgs {
  ModelOptions model;
  std::string state;
  std::vector<std::string> prompts;
  GenerateOptions gen;
  bool seed_given = false;
  bool json = false;
};
}  // namespace

Command add_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* sub = app.add_subcommand("generate", "continue a saved state; one continuation per --prompt");
  sub->add_option("--state", a->state, "state file (.kvs) from prefill")->required();
  sub->add_option("-p,--prompt", a->prompts, "continuation text appended to the prefix (repeatable)")->required();
  sub->add_option("-n,--n-predict", a->gen.n_predict, "tokens to generate")->capture_default_str()->check(CLI::NonNegativeNumber);
  sub->add_flag("--json", a->json, "one JSON object per continuation, one per line");
  add_model_options(*sub, a->model);
  add_sampling_options(*sub, a->gen.sampling, a->seed_given);
  return [a]() {
    if (!a->seed_given) a->gen.sampling.seed = random_seed();
    validate(a->gen.sampling);
    const auto t0 = std::chrono::steady_clock::now();
    Loaded l = load(a->model);
    const State state = load_state(a->state);
    LoadedPrefix prefix(*l.engine, state);
    const double load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    for (const std::string& p : a->prompts) {
      std::function<void(const std::string&)> print;
      if (!a->json) {
        print = print_now;
        print_now(p);
      }
      const Continuation c = prefix.generate(p, a->gen, print);
      if (!a->json) {
        std::printf("\n");
        continue;
      }
      const GenerateResult& r = c.result;
      nlohmann::json j = {{"tokens", r.tokens}, {"text", r.text}, {"prompt_tokens", r.prompt_tokens},
                          {"reused_tokens", c.reused_tokens}, {"stop_reason", r.stop_reason},
                          {"seed", a->gen.sampling.seed}, {"threads", l.engine->n_threads()},
                          {"load_ms", load_ms}, {"time_to_first_token_ms", r.time_to_first_token_ms},
                          {"prefill_tokens_per_s", r.prefill_tokens_per_s},
                          {"decode_tokens_per_s", r.decode_tokens_per_s}};
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      std::fflush(stdout);
    }
    return 0;
  };
}

}  // namespace kvstash::cli
