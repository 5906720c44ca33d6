#include "text_input.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "kvstash/error.h"

namespace kvstash::cli {

namespace {
constexpr size_t kSniffBytes = 64 * 1024;

// Length of the valid UTF-8 sequence at s[i], or 0. A sequence cut by the end of s counts as valid
// (the sniffed head may end inside one).
size_t utf8_length(std::string_view s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  const size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || (n == 2 && c < 0xC2)) return 0;
  for (size_t k = 1; k < n; ++k) {
    if (i + k >= s.size()) return s.size() - i;
    if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return 0;
  }
  return n;
}

[[noreturn]] void fail_open(const std::string& path, int err) {
  throw Error(err == ENOENT || err == ENOTDIR ? ErrorKind::NotFound : ErrorKind::IOError,
              "cannot open text file '" + path + "': " + std::strerror(err));
}
}  // namespace

bool looks_binary(std::string_view head) {
  head = head.substr(0, kSniffBytes);
  size_t invalid = 0;
  for (size_t i = 0; i < head.size();) {
    if (head[i] == '\0') return true;
    const size_t n = utf8_length(head, i);
    if (n == 0) ++invalid;
    i += n ? n : 1;
  }
  return invalid * 10 > head.size();  // more than 10% of bytes: not text in any UTF-8 sense
}

std::string read_text_file(const std::string& path) {
  const bool is_stdin = path == "-";
  const std::string name = is_stdin ? "stdin" : "'" + path + "'";
  FILE* f = stdin;
  std::unique_ptr<FILE, int (*)(FILE*)> owned(nullptr, fclose);
  if (!is_stdin) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) fail_open(path, errno);
    if (S_ISDIR(st.st_mode))
      throw Error(ErrorKind::InvalidArgument, "'" + path + "' is a directory, not a text file");
    f = std::fopen(path.c_str(), "rb");
    if (!f) fail_open(path, errno);
    owned.reset(f);
  }
  std::string text;
  char buf[1 << 16];
  bool sniffed = false;
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) {
    text.append(buf, n);
    // Refuse a binary file (a model, a .kvs) before reading all of it.
    if (!sniffed && text.size() >= kSniffBytes) {
      sniffed = true;
      if (looks_binary(text))
        throw Error(ErrorKind::InvalidArgument, name + " looks like a binary file, not text");
    }
  }
  if (std::ferror(f)) throw Error(ErrorKind::IOError, "cannot read text file " + name + ": " + std::strerror(errno));
  if (!sniffed && looks_binary(text))
    throw Error(ErrorKind::InvalidArgument, name + " looks like a binary file, not text");
  return text;
}

}  // namespace kvstash::cli
