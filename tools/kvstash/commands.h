// Each subcommand registers itself on the app and returns the function that runs it.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace kvstash::cli {

using Command = std::function<int()>;
Command add_run(CLI::App& app);
Command add_perplexity(CLI::App& app);
Command add_tokenize(CLI::App& app);
Command add_prefill(CLI::App& app);
Command add_generate(CLI::App& app);
Command add_inspect(CLI::App& app);
Command add_compress(CLI::App& app);
Command add_decompress(CLI::App& app);
Command add_cache(CLI::App& app);
Command add_serve(CLI::App& app);

}  // namespace kvstash::cli
