#include "argv_check.h"

#include <cctype>

#include "kvstash/error.h"

namespace kvstash::cli {

namespace {
bool is_letter(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// "-ngl", "-fa", "-cnv": a short option followed by letters. "-n64" and "-1" stay allowed.
bool is_multi_letter_short(const std::string& a) {
  return a.size() > 2 && a[0] == '-' && is_letter(a[1]) && is_letter(a[2]);
}

std::string hint(const std::string& a) {
  if (a == "-ngl") return " (kvstash runs on the CPU: there is no GPU offload)";
  return " (options of more than one letter start with '--'; see --help)";
}
}  // namespace

void check_argv(const std::vector<std::string>& args, const std::vector<std::string>& commands) {
  for (const std::string& a : args) {
    if (a == "--") break;  // what follows is not options
    if (is_multi_letter_short(a)) throw Error(ErrorKind::InvalidArgument, "unknown option '" + a + "'" + hint(a));
  }
  if (args.empty()) throw Error(ErrorKind::InvalidArgument, "no command given (commands: " + join(commands) + "; see --help)");
  const std::string& first = args[0];
  if (first.empty() || first[0] == '-') return;  // --help, --version; CLI11 reports the rest
  for (const std::string& c : commands)
    if (c == first) return;
  throw Error(ErrorKind::InvalidArgument, "unknown command '" + first + "' (commands: " + join(commands) + ")");
}

}  // namespace kvstash::cli
