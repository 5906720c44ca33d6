// .kvs reader fuzzer (load_state through a memfd). The first input byte picks a mode:
//   0: the rest of the input is the file, as is;
//   1: the harness first recomputes every tensor checksum and checksum.metadata, so that mutated
//      payloads and metadata get past the checksums to the checks behind them;
//   2: as 1, and the tensor directory and file size are first rebuilt from the metadata
//      (kvs::tensor_layout, budgeted layouts included), so that mutated dimensions reach the value
//      checks.
// kvstash::Error is the expected outcome for bad input; anything else is a finding.
#include <algorithm>
#include <charconv>
#include <cstring>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "kvstash/error.h"
#include "kvstash/state.h"
#include "state/kvs_format.h"

using namespace kvstash;
using json = nlohmann::json;

namespace {

struct TooDeep {};

json parse_json(const std::string& text) {
  try {
    return json::parse(text, [](int depth, json::parse_event_t, json&) {
      if (depth > 6) throw TooDeep{};
      return true;
    }, false);
  } catch (const TooDeep&) {
    return json::value_t::discarded;
  }
}

bool meta_int(const json& meta, const char* key, uint64_t max, uint64_t& out) {
  const auto it = meta.find(key);
  if (it == meta.end() || !it->is_string()) return false;
  const std::string& s = it->get_ref<const std::string&>();
  const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && out <= max;
}

// Mode 2: the directory and buffer size the metadata implies (false if it implies too much).
bool rebuild_layout(json& header, std::vector<uint8_t>& buffer) {
  const json& meta = header["__metadata__"];
  uint64_t layers, heads_kv, head_dim, tokens, vocab;
  if (!meta_int(meta, "n_layer", 64, layers) || !meta_int(meta, "n_head_kv", 64, heads_kv) ||
      !meta_int(meta, "head_dim", 256, head_dim) || !meta_int(meta, "n_tokens", 1024, tokens) ||
      !meta_int(meta, "n_vocab", 1 << 16, vocab))
    return false;
  // A budgeted state (version 3, budget.policy set) keeps book.slots entries per layer and head.
  std::optional<uint64_t> book_slots;
  uint64_t kv = tokens;
  if (meta.contains(kvs::kBudgetPolicy) && meta.value("format_version", json()) != "2") {
    if (!meta_int(meta, kvs::kBookSlots, 1024, kv)) return false;
    book_slots = kv;
  }
  if (4 * layers * heads_kv * head_dim * kv + 8 * layers * heads_kv * (kv + 1) + 4 * vocab > (1u << 20))
    return false;  // K+V f16, the book, logits
  StateArch a;
  a.n_layer = int(layers);
  a.n_head_kv = int(heads_kv);
  a.head_dim = int(head_dim);
  json dir = {{"__metadata__", meta}};
  const auto slots = kvs::tensor_layout(a, tokens, tokens > 0 ? vocab : 0, book_slots);
  for (const kvs::TensorSlot& t : slots)
    dir[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {t.begin, t.end}}};
  buffer.resize(size_t(slots.back().end));
  header = std::move(dir);
  return true;
}

// Modes 1 and 2: the file with every checksum recomputed, or the input unchanged if its header
// is not a JSON object with a metadata object.
std::vector<uint8_t> fix_checksums(const uint8_t* data, size_t size, bool layout) {
  const std::vector<uint8_t> as_is(data, data + size);
  if (size < 8) return as_is;
  const uint64_t n = kvs::get_u64le(data);
  if (n > size - 8) return as_is;
  json header = parse_json(std::string(reinterpret_cast<const char*>(data + 8), size_t(n)));
  if (!header.is_object() || !header.contains("__metadata__") || !header["__metadata__"].is_object())
    return as_is;
  std::vector<uint8_t> buffer(data + 8 + n, data + size);
  if (layout && !rebuild_layout(header, buffer)) return as_is;

  json& meta = header["__metadata__"];
  for (const auto& [name, t] : header.items()) {
    if (name == "__metadata__" || name.rfind(kvs::kPadPrefix, 0) == 0 || !t.is_object()) continue;
    const auto off = t.find("data_offsets");
    if (off == t.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      continue;
    const uint64_t b = (*off)[0], e = (*off)[1];
    if (b <= e && e <= buffer.size()) meta[kvs::kChecksumPrefix + name] = kvs::hash_hex64(buffer.data() + b, e - b);
  }
  std::map<std::string, std::string> strings;
  for (const auto& [k, v] : meta.items())
    if (v.is_string()) strings[k] = v.get<std::string>();
  meta[kvs::kMetadataChecksumKey] = kvs::metadata_checksum(strings);

  std::string text = header.dump(-1, ' ', false, json::error_handler_t::replace);
  text.append((kvs::kAlign - (8 + text.size()) % kvs::kAlign) % kvs::kAlign, ' ');
  std::vector<uint8_t> out(8);
  kvs::put_u64le(out.data(), text.size());
  out.insert(out.end(), text.begin(), text.end());
  out.insert(out.end(), buffer.begin(), buffer.end());
  return out;
}

// What load_state promises about a state it returns.
void check_loaded(const State& s, size_t file_size) {
  const size_t n = s.tokens.size();
  if (s.positions.size() != n || (n > 0 && s.logits.size() != size_t(s.arch.n_vocab))) __builtin_trap();
  if (n > 0 && !s.has_kv()) __builtin_trap();
  if (!s.has_kv()) return;
  // V views lie inside the file's mapping, K views too or (key_order hf: permuted on load) inside
  // one owned buffer; each group spans at most the file's size, and no two views overlap.
  using Range = std::pair<const uint16_t*, const uint16_t*>;
  std::vector<Range> all, group[2];
  uint32_t sum = 0;
  for (int l = 0; l < s.arch.n_layer; ++l)
    for (int g = 0; g < 2; ++g) {
      const uint16_t* p = g == 0 ? s.k(l) : s.v(l);
      if (p == nullptr || reinterpret_cast<uintptr_t>(p) % 64 != 0) __builtin_trap();
      group[g].push_back({p, p + s.kv_elements()});
      all.push_back(group[g].back());
      for (size_t i = 0; i < s.kv_elements(); ++i) sum += p[i];
    }
  std::sort(all.begin(), all.end());
  for (size_t i = 1; i < all.size(); ++i)
    if (all[i].first < all[i - 1].second) __builtin_trap();
  for (std::vector<Range>& ranges : group) {
    std::sort(ranges.begin(), ranges.end());
    if (size_t(reinterpret_cast<const uint8_t*>(ranges.back().second) -
               reinterpret_cast<const uint8_t*>(ranges.front().first)) > file_size)
      __builtin_trap();
  }
  asm volatile("" : : "r"(sum));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemFile file("kvs_fuzz");
  if (size == 0) return 0;
  const int mode = data[0] % 3;
  const std::vector<uint8_t> bytes =
      mode == 0 ? std::vector<uint8_t>(data + 1, data + size) : fix_checksums(data + 1, size - 1, mode == 2);
  try {
    const State s = load_state(file.write(bytes.data(), bytes.size()));
    check_loaded(s, bytes.size());
    fuzz::note("(none: loaded)");
  } catch (const Error& e) {
    fuzz::note(e.what());
  }
  return 0;
}
