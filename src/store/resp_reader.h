// Reads RESP2 replies straight from a blocking socket, for the Redis tier's bulk GETs: a value is
// received into its final vector with one copy from the kernel, where hiredis would read it 16 KB at
// a time into a growing buffer, then copy it into a reply object (and the tier into a vector).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvstash {

class RespReader {
 public:
  enum class Status { Ok, ServerError, Eof, Io, Protocol };
  struct Result {
    Status status = Status::Ok;
    std::string why;  // the server's error line, or what went wrong; errno_ for Io
    int errno_ = 0;
  };

  // buffered: bytes already read from fd by someone else (hiredis), which come first.
  RespReader(int fd, std::string_view buffered);

  // One reply expected to be a bulk string: out is its value, or nullopt for nil (or a non-string
  // scalar, as hiredis' callers treat it). An error reply is Status::ServerError with its text.
  Result read_value(std::optional<std::vector<uint8_t>>& out);

  // Consumes one reply nobody waits for (a hit count); an error reply is ignored.
  Result skip();

  // Bytes read from the socket past the last reply consumed: to be handed back to hiredis.
  std::string_view leftover() const { return {buf_.data() + pos_, len_ - pos_}; }

 private:
  Result line(std::string_view& out);  // next header line, without its \r\n
  Result fill(uint8_t* direct, size_t direct_len, size_t& got_direct);
  Result payload(uint8_t* dst, size_t n);  // n bytes, then the \r\n that ends a bulk string
  static Result parse_length(std::string_view digits, int64_t& n);

  int fd_;
  std::vector<char> buf_;
  size_t pos_ = 0, len_ = 0;  // unread bytes of buf_
};

}  // namespace kvstash
