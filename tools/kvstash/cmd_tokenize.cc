// kvstash tokenize: print the token ids of a text.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "kvstash/gguf.h"
#include "kvstash/tokenizer.h"

namespace kvstash::cli {

namespace {
struct TokenizeArgs {
  std::string model;
  std::string prompt;
  bool json = false;
  bool no_parse_special = false;
};
}  // namespace

Command add_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  CLI::App* sub = app.add_subcommand("tokenize", "print the token ids of a text");
  sub->add_option("-p,--prompt", a->prompt, "text")->required();
  sub->add_option("-m,--model", a->model, "GGUF model file");
  sub->add_flag("--no-parse-special", a->no_parse_special, "treat special-token text as plain text");
  sub->add_flag("--json", a->json, "print {\"tokens\": [...]}");
  return [a]() {
    // Only the vocabulary is needed: no weights are touched.
    auto file = GgufFile::open(a->model.empty() ? default_model_path() : a->model);
    auto tok = Tokenizer::from_gguf(*file);
    const std::vector<Token> ids = tok->encode(a->prompt, true, !a->no_parse_special);
    if (a->json) {
      print_json({{"tokens", ids}});
    } else {
      for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %d" : "%d", ids[i]);
      std::printf("\n");
    }
    return 0;
  };
}

}  // namespace kvstash::cli
