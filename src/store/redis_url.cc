#include "store/redis_url.h"

#include <charconv>
#include <string_view>

#include "kvstash/error.h"

namespace kvstash {
namespace {

[[noreturn]] void bad(const std::string& url, const std::string& what) {
  throw Error(ErrorKind::InvalidArgument, "redis URL '" + url + "': " + what);
}

// A decimal integer in [lo, hi], nothing else (no sign, no spaces).
bool parse_int(std::string_view s, long lo, long hi, int& out) {
  long v = 0;
  if (s.empty() || s[0] < '0' || s[0] > '9') return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < lo || v > hi) return false;
  out = static_cast<int>(v);
  return true;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Passwords may hold '@', ':' or '/' only percent-encoded.
std::string percent_decode(const std::string& url, std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    int hi = i + 2 < s.size() ? hex_digit(s[i + 1]) : -1, lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
    if (lo < 0) bad(url, "bad percent escape in the user or password");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

}  // namespace

RedisUrl parse_redis_url(const std::string& url) {
  constexpr std::string_view scheme = "redis://";
  std::string_view rest = url;
  if (rest.substr(0, scheme.size()) != scheme) bad(url, "must start with redis://");
  rest.remove_prefix(scheme.size());
  if (rest.find('#') != std::string_view::npos) bad(url, "a fragment (#) is not allowed");

  RedisUrl r;
  size_t q = rest.find('?');
  std::string_view query = q == std::string_view::npos ? std::string_view() : rest.substr(q + 1);
  rest = rest.substr(0, q);
  size_t slash = rest.find('/');
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  std::string_view authority = rest.substr(0, slash);

  size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    std::string_view info = authority.substr(0, at);
    size_t colon = info.find(':');
    if (colon == std::string_view::npos) bad(url, "the user info needs ':' before the password (redis://:password@host)");
    r.user = percent_decode(url, info.substr(0, colon));
    r.password = percent_decode(url, info.substr(colon + 1));
    if (r.password.empty()) bad(url, "empty password");
    authority.remove_prefix(at + 1);
  }

  std::string_view port;
  bool has_port = false;
  if (!authority.empty() && authority[0] == '[') {  // [IPv6]
    size_t close = authority.find(']');
    if (close == std::string_view::npos) bad(url, "unterminated '[' in the host");
    r.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty() && after[0] != ':') bad(url, "unexpected text after ']'");
    has_port = !after.empty();
    if (has_port) port = after.substr(1);
  } else {
    size_t colon = authority.find(':');
    r.host = std::string(authority.substr(0, colon));
    has_port = colon != std::string_view::npos;
    if (has_port) port = authority.substr(colon + 1);
  }
  if (r.host.empty()) bad(url, "no host");
  if (has_port && !parse_int(port, 1, 65535, r.port)) bad(url, "bad port '" + std::string(port) + "' (1 to 65535)");

  if (!path.empty() && !parse_int(path, 0, 1 << 30, r.db))
    bad(url, "bad database '" + std::string(path) + "' (a number, such as /0)");

  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (item.empty()) continue;
    size_t eq = item.find('=');
    std::string_view key = item.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
    if (key != "timeout_ms") bad(url, "unknown option '" + std::string(key) + "' (known: timeout_ms)");
    // Zero would mean no timeout at all to the socket: a dead server would hang every call.
    if (!parse_int(value, 1, 3600 * 1000, r.timeout_ms))
      bad(url, "bad timeout_ms '" + std::string(value) + "' (milliseconds, 1 or more)");
  }
  return r;
}

std::string redis_label(const RedisUrl& url, bool with_db) {
  bool v6 = url.host.find(':') != std::string::npos;
  std::string s = (v6 ? "[" + url.host + "]" : url.host) + ":" + std::to_string(url.port);
  return with_db ? s + "/" + std::to_string(url.db) : s;
}

}  // namespace kvstash
