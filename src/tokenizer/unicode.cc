#include "tokenizer/unicode.h"

#include <array>

namespace kvstash::tok {

size_t utf8_seq_len(uint8_t lead) {
  if (lead < 0xC0) return 1;  // ASCII, or a stray continuation byte
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

namespace {

bool is_cont(uint8_t b) { return (b & 0xC0) == 0x80; }

// Decodes one lenient sequence at text[i]; returns false if malformed (llama.cpp rules).
bool decode_one(std::string_view text, size_t i, uint32_t& cpt, size_t& len) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(text[i + k]); };
  const uint8_t lead = b(0);
  const size_t avail = text.size() - i;
  if (lead < 0x80) {
    cpt = lead, len = 1;
    return true;
  }
  if ((lead & 0x40) == 0) return false;  // continuation byte
  if ((lead & 0x20) == 0) {
    if (avail < 2 || !is_cont(b(1))) return false;
    cpt = (uint32_t(lead & 0x1F) << 6) | (b(1) & 0x3F), len = 2;
    return true;
  }
  if ((lead & 0x10) == 0) {
    if (avail < 3 || !is_cont(b(1)) || !is_cont(b(2))) return false;
    cpt = (uint32_t(lead & 0x0F) << 12) | (uint32_t(b(1) & 0x3F) << 6) | (b(2) & 0x3F), len = 3;
    return true;
  }
  if ((lead & 0x08) == 0) {
    if (avail < 4 || !is_cont(b(1)) || !is_cont(b(2)) || !is_cont(b(3))) return false;
    cpt = (uint32_t(lead & 0x07) << 18) | (uint32_t(b(1) & 0x3F) << 12) |
          (uint32_t(b(2) & 0x3F) << 6) | (b(3) & 0x3F);
    len = 4;
    return cpt <= 0x10FFFF;
  }
  return false;
}

// Length of the strictly valid sequence at text[i], 0 if invalid, or -1 if text ends inside a
// sequence that could still become valid.
int strict_len(std::string_view text, size_t i) {
  const auto lead = static_cast<uint8_t>(text[i]);
  if (lead < 0x80) return 1;
  int n;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    n = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    n = 3;
    if (lead == 0xE0) lo = 0xA0;  // no overlongs
    if (lead == 0xED) hi = 0x9F;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    n = 4;
    if (lead == 0xF0) lo = 0x90;
    if (lead == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (int k = 1; k < n; ++k) {
    if (i + k >= text.size()) return -1;
    const auto c = static_cast<uint8_t>(text[i + k]);
    if (k == 1 ? (c < lo || c > hi) : !is_cont(c)) return 0;
  }
  return n;
}

struct Gpt2Tables {
  std::array<std::string, 256> byte_to_utf8;
  std::array<int, 324> cpt_to_byte;  // mapped characters are all below U+0144
  Gpt2Tables() {
    cpt_to_byte.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const uint32_t cpt = printable ? b : next++;
      append_utf8(byte_to_utf8[b], cpt);
      cpt_to_byte[cpt] = b;
    }
  }
};

const Gpt2Tables& gpt2_tables() {
  static const Gpt2Tables tables;
  return tables;
}

}  // namespace

std::vector<uint32_t> decode_utf8_lenient(std::string_view text) {
  std::vector<uint32_t> cpts;
  cpts.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    uint32_t cpt;
    size_t len;
    if (decode_one(text, i, cpt, len)) {
      cpts.push_back(cpt);
      i += len;
    } else {
      cpts.push_back(kReplacementChar);
      i += 1;
    }
  }
  return cpts;
}

void append_utf8(std::string& out, uint32_t cpt) {
  if (cpt < 0x80) {
    out.push_back(static_cast<char>(cpt));
  } else if (cpt < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cpt >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  }
}

std::string take_valid_utf8(std::string& bytes, bool final) {
  std::string out;
  size_t i = 0;
  while (i < bytes.size()) {
    const int n = strict_len(bytes, i);
    if (n > 0) {
      out.append(bytes, i, n);
      i += n;
    } else if (n < 0 && !final) {
      break;  // incomplete sequence at the end: hold it back
    } else {
      append_utf8(out, kReplacementChar);
      i += 1;
      if (n < 0) {  // final: the whole incomplete tail counts as one bad sequence
        while (i < bytes.size() && is_cont(static_cast<uint8_t>(bytes[i]))) ++i;
      }
    }
  }
  bytes.erase(0, i);
  return out;
}

const std::string& gpt2_byte_to_utf8(uint8_t byte) { return gpt2_tables().byte_to_utf8[byte]; }

int gpt2_cpt_to_byte(uint32_t cpt) {
  return cpt < 324 ? gpt2_tables().cpt_to_byte[cpt] : -1;
}

}  // namespace kvstash::tok
