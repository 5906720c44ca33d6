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

// Runs fn, turning the standard library's exceptions into kinds (std::bad_alloc ->
// ResourceExhausted, std::filesystem::filesystem_error -> IOError or NotFound, std::length_error ->
// ResourceExhausted, anything else std::exception -> Internal). Error passes through unchanged.
template <class Fn>
auto with_error_kinds(Fn&& fn) -> decltype(fn());
[[noreturn]] void rethrow_as_error();  // inside a catch block: the current exception as an Error

template <class Fn>
auto with_error_kinds(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (...) {
    rethrow_as_error();
  }
}

}  // namespace kvstash
