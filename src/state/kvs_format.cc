#include "state/kvs_format.h"

#include <xxhash.h>

#include <charconv>
#include <cstdio>

namespace kvstash::kvs {

std::vector<TensorSlot> tensor_layout(const StateArch& a, uint64_t tokens, uint64_t logits_len,
                                      std::optional<uint64_t> book_slots) {
  const uint64_t slots = book_slots.value_or(tokens);
  const std::vector<uint64_t> kv_shape = {uint64_t(a.n_head_kv), slots, uint64_t(a.head_dim)};
  std::vector<TensorSlot> out;
  uint64_t at = 0;
  auto add = [&](std::string name, const char* dtype, std::vector<uint64_t> shape, uint64_t elem) {
    uint64_t bytes = elem;
    for (uint64_t d : shape) bytes *= d;
    if (at % kAlign != 0) {  // pad after the previous tensor so this one starts aligned
      const uint64_t pad = kAlign - at % kAlign;
      out.push_back({kPadPrefix + out.back().name, "U8", {pad}, at, at + pad});
      at += pad;
    }
    out.push_back({std::move(name), dtype, std::move(shape), at, at + bytes});
    at += bytes;
  };
  for (int l = 0; l < a.n_layer; ++l) {
    add("k." + std::to_string(l), "F16", kv_shape, 2);
    add("v." + std::to_string(l), "F16", kv_shape, 2);
  }
  add("logits", "F32", {logits_len}, 4);
  add("tokens", "I32", {tokens}, 4);
  add("positions", "I32", {tokens}, 4);
  if (book_slots) {
    const uint64_t lanes[] = {uint64_t(a.n_layer), uint64_t(a.n_head_kv)};
    add("book.entry", "I32", {lanes[0], lanes[1], slots}, 4);
    add("book.score", "F32", {lanes[0], lanes[1], slots}, 4);
    add("book.merged", "I64", {lanes[0], lanes[1]}, 8);
  }
  return out;
}

void keys_to_hf(const uint16_t* gguf, uint16_t* hf, size_t rows, size_t head_dim) {
  const size_t half = head_dim / 2;
  for (size_t r = 0; r < rows; ++r, gguf += head_dim, hf += head_dim)
    for (size_t i = 0; i < half; ++i) {
      hf[i] = gguf[2 * i];
      hf[i + half] = gguf[2 * i + 1];
    }
}

void keys_from_hf(const uint16_t* hf, uint16_t* gguf, size_t rows, size_t head_dim) {
  const size_t half = head_dim / 2;
  for (size_t r = 0; r < rows; ++r, gguf += head_dim, hf += head_dim)
    for (size_t i = 0; i < half; ++i) {
      gguf[2 * i] = hf[i];
      gguf[2 * i + 1] = hf[i + half];
    }
}

std::string hash_hex64(const void* data, size_t size) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(XXH3_64bits(data, size)));
  return buf;
}

std::string metadata_checksum(const std::map<std::string, std::string>& metadata) {
  std::string bytes;
  auto put = [&](const std::string& s) {
    uint8_t len[4];
    put_u32le(len, uint32_t(s.size()));
    bytes.append(reinterpret_cast<const char*>(len), 4);
    bytes += s;
  };
  for (const auto& [key, value] : metadata) {
    if (key == kMetadataChecksumKey) continue;
    put(key);
    put(value);
  }
  return hash_hex64(bytes.data(), bytes.size());
}

std::string double_text(double d) {
  char buf[512];  // fixed notation of any finite double fits
  const auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::fixed);
  return std::string(buf, r.ptr);
}

std::string float_text(float f) {
  char buf[128];  // fixed notation of any finite float fits
  const auto r = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::fixed);
  return std::string(buf, r.ptr);
}

}  // namespace kvstash::kvs
