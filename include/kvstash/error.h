// The one exception type kvstash throws at module boundaries. Every error has a kind (in the spirit
// of LevelDB's Status) that callers branch on; the message is one line for people. The CLI maps
// kinds to exit codes, the server to HTTP statuses.
#pragma once
#include <stdexcept>
#include <string>

namespace kvstash {

enum class ErrorKind {
  InvalidArgument,    // a value the caller passed (flag, option, prompt, request) is not acceptable
  NotFound,           // a file, tensor or key that must exist does not
  Corruption,         // bytes on disk or in memory are not what their format says
  IOError,            // the operating system refused a read, write, sync or rename
  NotSupported,       // well-formed but beyond what kvstash runs (architecture, type, version)
  ResourceExhausted,  // memory, KV cache or context full
  ModelMismatch,      // a state or file made by another model than the one loaded
  Internal,           // a broken invariant of kvstash itself (a bug)
};

// "InvalidArgument", "NotFound", ...
const char* error_kind_name(ErrorKind kind);
// The CLI's exit status for a kind (README, "Exit codes"): 2 and up; 1 is left for anything else.
int exit_code(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// Inside a catch block: rethrows the current exception as an Error, turning the standard
// library's into kinds (std::bad_alloc and std::length_error -> ResourceExhausted,
// std::filesystem::filesystem_error -> NotFound or IOError, other std::system_error -> IOError,
// anything else -> Internal). An Error passes through unchanged. For the boundaries (CLI, server,
// Python module), so that no caller sees "std::bad_alloc".
[[noreturn]] void rethrow_as_error();

}  // namespace kvstash
