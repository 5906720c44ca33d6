#include "store/resp_reader.h"

#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <string>

namespace kvstash {
namespace {

constexpr size_t kBufSize = 256 * 1024;  // headers and small tails; values bypass it
constexpr size_t kMaxLine = 64 * 1024;   // a header or error line longer than this is garbage

RespReader::Result protocol(std::string why) { return {RespReader::Status::Protocol, std::move(why), 0}; }

}  // namespace

RespReader::RespReader(int fd, std::string_view buffered)
    : fd_(fd), buf_(std::max(kBufSize, buffered.size() + kBufSize / 2)) {
  std::memcpy(buf_.data(), buffered.data(), buffered.size());
  len_ = buffered.size();
}

// One read(v) from the socket: first into direct (the rest of a value), then into buf_.
RespReader::Result RespReader::fill(uint8_t* direct, size_t direct_len, size_t& got_direct) {
  if (pos_ == len_) pos_ = len_ = 0;
  if (buf_.size() - len_ < kBufSize / 4 && pos_ > 0) {  // make room by moving the unread bytes down
    std::memmove(buf_.data(), buf_.data() + pos_, len_ - pos_);
    len_ -= pos_, pos_ = 0;
  }
  if (len_ == buf_.size()) buf_.resize(buf_.size() * 2);
  iovec iov[2] = {{direct, direct_len}, {buf_.data() + len_, buf_.size() - len_}};
  int first = direct_len > 0 ? 0 : 1;
  ssize_t n;
  do n = readv(fd_, iov + first, 2 - first);
  while (n < 0 && errno == EINTR);
  if (n == 0) return {Status::Eof, "Server closed the connection", 0};
  if (n < 0) return {Status::Io, std::strerror(errno), errno};  // EAGAIN: SO_RCVTIMEO ran out
  got_direct = std::min(size_t(n), direct_len);
  len_ += size_t(n) - got_direct;
  return {};
}

RespReader::Result RespReader::line(std::string_view& out) {
  for (size_t scanned = 0;;) {
    std::string_view have(buf_.data() + pos_, len_ - pos_);
    size_t end = have.find("\r\n", scanned);
    if (end != std::string_view::npos) {
      out = have.substr(0, end);
      pos_ += end + 2;
      return {};
    }
    if (have.size() > kMaxLine) return protocol("reply line too long");
    scanned = have.empty() ? 0 : have.size() - 1;  // a \r may end what we have
    size_t unused;
    if (Result r = fill(nullptr, 0, unused); r.status != Status::Ok) return r;
  }
}

RespReader::Result RespReader::payload(uint8_t* dst, size_t n) {
  size_t done = std::min(n, len_ - pos_);
  if (done > 0) std::memcpy(dst, buf_.data() + pos_, done);  // dst is null for an empty value
  pos_ += done;
  while (done < n) {
    size_t got = 0;
    if (Result r = fill(dst + done, n - done, got); r.status != Status::Ok) return r;
    done += got;
  }
  while (len_ - pos_ < 2) {
    size_t unused;
    if (Result r = fill(nullptr, 0, unused); r.status != Status::Ok) return r;
  }
  if (buf_[pos_] != '\r' || buf_[pos_ + 1] != '\n') return protocol("bad bulk string terminator");
  pos_ += 2;
  return {};
}

RespReader::Result RespReader::parse_length(std::string_view digits, int64_t& n) {
  if (digits == "-1") {
    n = -1;
    return {};
  }
  if (digits.empty() || digits.size() > 18) return protocol("bad bulk length");
  n = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return protocol("bad bulk length");
    n = n * 10 + (c - '0');
  }
  return {};
}

RespReader::Result RespReader::read_value(std::optional<std::vector<uint8_t>>& out) {
  out.reset();
  std::string_view l;
  if (Result r = line(l); r.status != Status::Ok) return r;
  if (l.empty()) return protocol("empty reply line");
  switch (l[0]) {
    case '$': {
      int64_t n;
      if (Result r = parse_length(l.substr(1), n); r.status != Status::Ok || n < 0) return r;
      try {
        out.emplace(size_t(n));  // zero-filled: the page faults would come in readv anyway
      } catch (const std::bad_alloc&) {
        return protocol("out of memory for a " + std::to_string(n) + "-byte value");
      }
      return payload(out->data(), out->size());
    }
    case '-': return {Status::ServerError, std::string(l.substr(1)), 0};
    case '+':
    case ':': return {};  // not a string: a miss, as before
    case '*': return protocol("unexpected array reply");
    default: return protocol(std::string("Protocol error, got \"") + l[0] + "\" as reply type byte");
  }
}

RespReader::Result RespReader::skip() {
  std::optional<std::vector<uint8_t>> ignored;
  Result r = read_value(ignored);
  if (r.status == Status::ServerError) return {};
  return r;
}

}  // namespace kvstash
