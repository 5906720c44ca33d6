// kvstash: capture, keep and reuse the attention state of llama-family models.
#include <cstdio>
#include <exception>
#include <map>

#include "commands.h"
#include "kvstash/error.h"

int main(int argc, char** argv) {
  CLI::App app{"kvstash: run llama-family GGUF models and reuse their attention state"};
  app.require_subcommand(1);
  std::map<CLI::App*, kvstash::cli::Command> commands;
  auto add = [&](kvstash::cli::Command (*f)(CLI::App&)) {
    const size_t before = app.get_subcommands({}).size();
    kvstash::cli::Command c = f(app);
    commands[app.get_subcommands({})[before]] = c;
  };
  add(kvstash::cli::add_run);
  add(kvstash::cli::add_perplexity);
  add(kvstash::cli::add_prefill);
  add(kvstash::cli::add_generate);
  add(kvstash::cli::add_inspect);
  add(kvstash::cli::add_tokenize);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : commands)
      if (sub->parsed()) return run();
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "kvstash: error: %s\n", e.what());
    return 1;
  }
  return 1;
}
