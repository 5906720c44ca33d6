// kvstash: capture, keep and reuse the attention state of llama-family models.
// Every failure is one line on stderr, "kvstash: error: ...", and an exit status that says its kind
// (README, "Exit codes").
#include <cstdio>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include "argv_check.h"
#include "commands.h"
#include "kvstash/error.h"
#include "kvstash/kernels.h"
#include "version.h"

namespace {

int fail(kvstash::ErrorKind kind, std::string message) {
  for (char& c : message)
    if (c == '\n' || c == '\r') c = ' ';
  std::fflush(stdout);
  std::fprintf(stderr, "kvstash: error: %s\n", message.c_str());
  return kvstash::exit_code(kind);
}

// The current exception (inside a catch block) as one line and an exit status.
int fail_current() {
  try {
    kvstash::rethrow_as_error();
  } catch (const kvstash::Error& e) {
    return fail(e.kind(), e.what());
  }
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvstash: run llama-family GGUF models and reuse their attention state"};
  app.require_subcommand(1);
  app.set_version_flag("--version", [] { return kvstash::cli::version_text(); },
                       "print the version, the SIMD kernels in use and the build");
  std::map<CLI::App*, kvstash::cli::Command> commands;
  std::vector<std::string> names;
  for (auto add : {kvstash::cli::add_run, kvstash::cli::add_prefill, kvstash::cli::add_generate,
                   kvstash::cli::add_inspect, kvstash::cli::add_compress, kvstash::cli::add_decompress,
                   kvstash::cli::add_perplexity, kvstash::cli::add_tokenize, kvstash::cli::add_cache, kvstash::cli::add_serve}) {
    const size_t before = app.get_subcommands({}).size();
    kvstash::cli::Command c = add(app);
    CLI::App* sub = app.get_subcommands({})[before];
    commands[sub] = c;
    names.push_back(sub->get_name());
  }
  try {
    kvstash::cli::check_argv(std::vector<std::string>(argv + 1, argv + argc), names);
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    return fail(kvstash::ErrorKind::InvalidArgument, e.what());
  } catch (...) {
    return fail_current();
  }
  try {
    (void)kvstash::Kernels::active();  // a bad KVSTASH_SIMD fails every command, not only the ones that compute
    for (auto& [sub, run] : commands)
      if (sub->parsed()) return run();
  } catch (...) {
    return fail_current();
  }
  return 1;
}
