// ByteSource over a file (pread on one descriptor shared by copies of the source) or over memory.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "codec/kvz_format.h"
#include "kvstash/error.h"
#include "kvstash/kvz.h"

namespace kvstash {

namespace {

[[noreturn]] void past_end(const std::string& name, uint64_t offset, uint64_t size, uint64_t total) {
  throw Error(ErrorKind::IOError, name + ": read of " + std::to_string(size) + " bytes at " + std::to_string(offset) +
                                      " runs past the end (" + std::to_string(total) + " bytes)");
}

}  // namespace

ByteSource file_source(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw Error(errno == ENOENT ? ErrorKind::NotFound : ErrorKind::IOError, path + ": cannot open: " + std::strerror(errno));
  auto keep = std::shared_ptr<int>(new int(fd), [](int* p) {
    ::close(*p);
    delete p;
  });
  struct stat st;
  if (::fstat(fd, &st) != 0) throw Error(ErrorKind::IOError, path + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw Error(ErrorKind::InvalidArgument, path + ": not a regular file");
  ByteSource s;
  s.name = path;
  s.size = uint64_t(st.st_size);
  s.read = [keep, path, total = s.size](uint64_t offset, uint64_t size, uint8_t* dst) {
    if (offset > total || size > total - offset) past_end(path, offset, size, total);
    while (size > 0) {
      const ssize_t n = ::pread(*keep, dst, size_t(std::min<uint64_t>(size, 1u << 30)), off_t(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw Error(ErrorKind::IOError, path + ": read failed: " + std::strerror(errno));
      if (n == 0)
        throw Error(ErrorKind::IOError, path + ": file ended at " + std::to_string(offset) + " while reading (it shrank)");
      dst += n;
      offset += uint64_t(n);
      size -= uint64_t(n);
    }
  };
  return s;
}

ByteSource memory_source(const uint8_t* data, size_t size, std::string name) {
  ByteSource s;
  s.name = name;
  s.size = size;
  s.read = [data, name, total = uint64_t(size)](uint64_t offset, uint64_t n, uint8_t* dst) {
    if (offset > total || n > total - offset) past_end(name, offset, n, total);
    if (n > 0) std::memcpy(dst, data + offset, size_t(n));
  };
  return s;
}

bool is_kvz(const ByteSource& source) {
  if (source.size < sizeof kvz::kMagic) return false;
  uint8_t head[sizeof kvz::kMagic];
  source.read(0, sizeof head, head);
  return kvz::has_magic(head, sizeof head);
}

bool is_kvz_file(const std::string& path) {
  try {
    return is_kvz(file_source(path));
  } catch (const Error&) {
    return false;
  }
}

}  // namespace kvstash
