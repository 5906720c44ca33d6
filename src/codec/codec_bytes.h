// Little-endian byte writing and bounds-checked reading for chunk payloads. Every read of a chunk
// goes through ByteReader, so a crafted chunk can only make decoding throw Corruption.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kvstash/error.h"

namespace kvstash::codec {

[[noreturn]] inline void corrupt(const std::string& what) {
  throw Error(ErrorKind::Corruption, "codec chunk: " + what);
}

struct ByteWriter {
  std::vector<uint8_t>& out;
  void u8(uint32_t v) { out.push_back(uint8_t(v)); }
  void u16(uint32_t v) { u8(v); u8(v >> 8); }
  void u32(uint32_t v) { u16(v); u16(v >> 16); }
  void varint(uint32_t v) {  // LEB128
    while (v >= 0x80) { u8(v | 0x80); v >>= 7; }
    u8(v);
  }
  void bytes(const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    out.insert(out.end(), b, b + n);
  }
};

struct ByteReader {
  const uint8_t* p;
  const uint8_t* end;
  size_t left() const { return size_t(end - p); }
  const uint8_t* take(size_t n, const char* what) {
    if (n > left()) corrupt(std::string("truncated ") + what);
    const uint8_t* r = p;
    p += n;
    return r;
  }
  uint32_t u8(const char* what) { return *take(1, what); }
  uint32_t u16(const char* what) {
    const uint8_t* b = take(2, what);
    return uint32_t(b[0]) | uint32_t(b[1]) << 8;
  }
  uint32_t u32(const char* what) {
    const uint8_t* b = take(4, what);
    return uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24;
  }
  uint32_t varint(const char* what) {
    uint32_t v = 0;
    for (int shift = 0; shift < 35; shift += 7) {
      const uint32_t b = u8(what);
      if (shift == 28 && b > 0x0F) corrupt(std::string("oversized varint in ") + what);
      v |= (b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    corrupt(std::string("oversized varint in ") + what);
  }
};

}  // namespace kvstash::codec
