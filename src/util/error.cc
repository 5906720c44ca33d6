// Error kinds: names, exit codes, and the translation of standard exceptions at the boundary.
#include "kvstash/error.h"

#include <cerrno>
#include <filesystem>
#include <new>
#include <system_error>

namespace kvstash {

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::InvalidArgument: return "InvalidArgument";
    case ErrorKind::NotFound: return "NotFound";
    case ErrorKind::Corruption: return "Corruption";
    case ErrorKind::IOError: return "IOError";
    case ErrorKind::NotSupported: return "NotSupported";
    case ErrorKind::ResourceExhausted: return "ResourceExhausted";
    case ErrorKind::ModelMismatch: return "ModelMismatch";
    case ErrorKind::Internal: return "Internal";
  }
  return "Internal";
}

int exit_code(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::InvalidArgument: return 2;
    case ErrorKind::NotFound: return 3;
    case ErrorKind::Corruption: return 4;
    case ErrorKind::IOError: return 5;
    case ErrorKind::NotSupported: return 6;
    case ErrorKind::ResourceExhausted: return 7;
    case ErrorKind::ModelMismatch: return 8;
    case ErrorKind::Internal: return 9;
  }
  return 9;
}

void rethrow_as_error() {
  try {
    throw;
  } catch (const Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw Error(ErrorKind::ResourceExhausted, "out of memory");
  } catch (const std::length_error&) {
    throw Error(ErrorKind::ResourceExhausted, "out of memory (size beyond what can be allocated)");
  } catch (const std::filesystem::filesystem_error& e) {
    const bool missing = e.code() == std::errc::no_such_file_or_directory;
    throw Error(missing ? ErrorKind::NotFound : ErrorKind::IOError,
                (e.path1().empty() ? std::string() : e.path1().string() + ": ") + e.code().message());
  } catch (const std::system_error& e) {
    throw Error(ErrorKind::IOError, e.what());
  } catch (const std::exception& e) {
    throw Error(ErrorKind::Internal, std::string("internal error: ") + e.what());
  } catch (...) {
    throw Error(ErrorKind::Internal, "internal error: unknown exception");
  }
}

}  // namespace kvstash
