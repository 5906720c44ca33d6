// RespReader over a socketpair: replies split at every byte, bytes buffered before it started,
// nil, empty and large values, server errors, skipped replies, and broken streams.
#include "store/resp_reader.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

namespace kvstash {
namespace {

using S = RespReader::Status;

struct Pair {
  int fd[2] = {-1, -1};
  Pair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0); }
  ~Pair() {
    for (int f : fd)
      if (f >= 0) ::close(f);
  }
  void send(const std::string& s) { ASSERT_EQ(::write(fd[1], s.data(), s.size()), ssize_t(s.size())); }
  void close_writer() {
    ::close(fd[1]);
    fd[1] = -1;
  }
};

TEST(RespReader, RepliesSplitAnywhereAfterBufferedBytesReadInOrder) {
  std::string big(3000000, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = char(i * 7);
  const std::string stream = ":1\r\n-ERR wrongtype\r\n$-1\r\n$" + std::to_string(big.size()) + "\r\n" + big +
                             "\r\n$0\r\n\r\n+OK\r\n-ERR boom\r\n$3\r\nabc\r\n:5\r\n";
  Pair p;
  std::thread writer([&] {  // byte by byte at first, then in large pieces
    for (size_t i = 7; i < stream.size();) {
      const size_t n = std::min<size_t>(i < 40 ? 1 : 100000, stream.size() - i);
      (void)!::write(p.fd[1], stream.data() + i, n);
      i += n;
    }
  });
  RespReader r(p.fd[0], stream.substr(0, 7));  // ":1\r\n-ER" already buffered by hiredis
  std::optional<std::vector<uint8_t>> v;
  EXPECT_EQ(r.skip().status, S::Ok);
  EXPECT_EQ(r.skip().status, S::Ok);  // a skipped reply's error is ignored
  EXPECT_EQ(r.read_value(v).status, S::Ok);
  EXPECT_FALSE(v.has_value());
  ASSERT_EQ(r.read_value(v).status, S::Ok);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(std::string(v->begin(), v->end()), big);
  ASSERT_EQ(r.read_value(v).status, S::Ok);
  EXPECT_TRUE(v.has_value() && v->empty());
  EXPECT_EQ(r.read_value(v).status, S::Ok);  // +OK: not a value
  EXPECT_FALSE(v.has_value());
  const auto e = r.read_value(v);
  EXPECT_EQ(e.status, S::ServerError);
  EXPECT_EQ(e.why, "ERR boom");
  ASSERT_EQ(r.read_value(v).status, S::Ok);
  EXPECT_EQ(std::string(v->begin(), v->end()), "abc");
  writer.join();
  p.close_writer();
  EXPECT_EQ(r.read_value(v).status, S::Ok);  // :5
  EXPECT_EQ(r.read_value(v).status, S::Eof);
}

TEST(RespReader, BrokenStreamsAreEofOrProtocolErrors) {
  const struct {
    std::string bytes;
    S want;
  } cases[] = {{"$5\r\nab", S::Eof}, {"$2\r\nabXY", S::Protocol}, {"*1\r\n", S::Protocol}, {"?x\r\n", S::Protocol}};
  for (const auto& c : cases) {
    Pair p;
    p.send(c.bytes);
    p.close_writer();
    RespReader r(p.fd[0], "");
    std::optional<std::vector<uint8_t>> v;
    EXPECT_EQ(r.read_value(v).status, c.want) << c.bytes;
  }
}

}  // namespace
}  // namespace kvstash
