// Telling a safetensors file that another tool wrote whole from a damaged kvstash file (see
// kvs_foreign.h).
#include "state/kvs_foreign.h"

#include <algorithm>
#include <map>
#include <utility>

namespace kvstash::kvs {

namespace {

using json = nlohmann::json;

// Bytes per element of a safetensors dtype; 0 for one not listed (sub-byte floats).
uint64_t dtype_bytes(const std::string& d) {
  static const std::map<std::string, uint64_t> sizes = {
      {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1}, {"I16", 2}, {"U16", 2},
      {"F16", 2}, {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4}, {"I64", 8}, {"U64", 8}, {"F64", 8}};
  const auto it = sizes.find(d);
  return it == sizes.end() ? 0 : it->second;
}

}  // namespace

bool complete_safetensors(const json& header, uint64_t n, uint64_t file_size) {
  if (!header.is_object()) return false;
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const auto& [name, e] : header.items()) {
    if (name == "__metadata__") {
      if (!e.is_object()) return false;
      for (const auto& [key, value] : e.items())
        if (!value.is_string()) return false;
      continue;
    }
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets")) return false;
    const json &dtype = e["dtype"], &shape = e["shape"], &offsets = e["data_offsets"];
    if (!dtype.is_string() || !shape.is_array() || !offsets.is_array() || offsets.size() != 2 ||
        !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
      return false;
    const uint64_t begin = offsets[0], end = offsets[1];
    if (begin > end) return false;
    unsigned __int128 bytes = dtype_bytes(dtype.get<std::string>());
    for (const json& d : shape) {
      if (!d.is_number_unsigned()) return false;
      bytes *= d.get<uint64_t>();
      if (bytes > ~uint64_t(0)) return false;
    }
    if (dtype_bytes(dtype.get<std::string>()) != 0 && bytes != end - begin) return false;
    spans.emplace_back(begin, end);
  }
  std::sort(spans.begin(), spans.end());
  uint64_t at = 0;
  for (const auto& [begin, end] : spans) {
    if (begin != at) return false;
    at = end;
  }
  return at <= file_size && 8 + n == file_size - at;
}

std::string rearranged(const json& header, const std::vector<TensorSlot>& slots, uint64_t data_start) {
  size_t found = 0;
  std::string how;
  for (const TensorSlot& t : slots) {
    if (t.padding()) continue;
    const auto it = header.find(t.name);
    if (it == header.end() || !it->is_object() || it->value("dtype", json()) != t.dtype ||
        it->value("shape", json()) != json(t.shape))
      return "";
    ++found;
    if (const json offsets = it->value("data_offsets", json()); how.empty() && offsets != json({t.begin, t.end}))
      how = "tensor '" + t.name + "' at " + offsets.dump() + ", kvstash puts it at [" +
            std::to_string(t.begin) + "," + std::to_string(t.end) + "]";
  }
  for (const auto& [key, value] : header.items())
    if (key != "__metadata__" && key.rfind(kPadPrefix, 0) != 0) --found;
  if (found != 0) return "";
  if (data_start % kAlign != 0) return "data starts at byte " + std::to_string(data_start) + ", not a multiple of 64";
  return how.empty() ? "other padding tensors" : how;
}

}  // namespace kvstash::kvs
