// The Redis tier's URL: redis://[[user]:password@]host[:port][/db][?timeout_ms=N].
#pragma once
#include <string>

namespace kvstash {

struct RedisUrl {
  std::string host;
  int port = 6379;
  std::string user, password;  // percent-decoded; user empty: the default user (or no AUTH at all)
  int db = 0;
  int timeout_ms = 1000;  // connect and each command
};

// Throws Error(InvalidArgument, "redis URL '<url>': <what is wrong>").
RedisUrl parse_redis_url(const std::string& url);

// "host:port/db" ("[::1]:6379/0" for an IPv6 host), for names and messages.
std::string redis_label(const RedisUrl& url, bool with_db = true);

}  // namespace kvstash
