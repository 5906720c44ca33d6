// Checks on the raw command line that CLI11 does not make: it reads "-ngl 99" (llama.cpp's GPU
// flag) as "-n gl" and says "A subcommand is required" for a misspelt command.
#pragma once
#include <string>
#include <vector>

namespace kvstash::cli {

// Throws InvalidArgument for a single-dash word of several letters ("-ngl", "-fa") and for a first
// word that is not a command. `commands` are the subcommand names.
void check_argv(const std::vector<std::string>& args, const std::vector<std::string>& commands);

}  // namespace kvstash::cli
