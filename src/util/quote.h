// Bytes from a file or a request, made safe for a one-line message.
#pragma once
#include <string>
#include <string_view>

namespace kvstash {

// s in single quotes: bytes below 0x20, 0x7f, quotes and backslashes become \xNN (so a name that
// holds a newline or a NUL stays on one line and is printed whole); cut after max bytes with "...".
inline std::string quote(std::string_view s, size_t max = 200) {
  static const char* const kHex = "0123456789abcdef";
  std::string q = "'";
  for (size_t k = 0; k < s.size() && k < max; ++k) {
    const unsigned char c = static_cast<unsigned char>(s[k]);
    if (c < 0x20 || c == 0x7f || c == '\\' || c == '\'') q += {'\\', 'x', kHex[c >> 4], kHex[c & 15]};
    else q += char(c);
  }
  return q + (s.size() > max ? "...'" : "'");
}

}  // namespace kvstash
