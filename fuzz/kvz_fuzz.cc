// .kvz reader fuzzer (read_kvz_info + load_kvz on a memory source). The first input byte picks a
// mode:
//   0: the rest of the input is the file, as is;
//   1: the harness first recomputes every chunk checksum the index names and then the header
//      checksum, so that mutated metadata, tables, index and payloads reach the checks behind them
//      (and the codec's decoder).
// Every stored level is loaded, one after the other. kvstash::Error is the expected outcome for bad
// input; anything else is a finding.
#include <xxhash.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "codec/kvz_format.h"
#include "fuzz_util.h"
#include "kvstash/error.h"
#include "kvstash/kvz.h"
#include "state/kvs_format.h"

using namespace kvstash;

namespace {

// Mode 1: the input with its checksums recomputed where its header can be read (else as is).
std::vector<uint8_t> fix_checksums(std::vector<uint8_t> f) {
  if (f.size() < kvz::kFixedBytes) return f;
  const uint64_t m = kvs::get_u32le(&f[12]), t = kvs::get_u64le(&f[16]);
  if (m > kvz::kMaxMetadataBytes || t > f.size() || kvz::kFixedBytes + m + t + 8 > f.size()) return f;
  const uint64_t prefix = kvz::kFixedBytes + m + t + 8;
  const nlohmann::json meta = nlohmann::json::parse(f.begin() + kvz::kFixedBytes, f.begin() + long(kvz::kFixedBytes + m),
                                                    nullptr, false);
  if (meta.is_object() && meta.contains("n_chunks") && meta["n_chunks"].is_string() && meta.contains("levels") &&
      meta["levels"].is_string()) {
    std::vector<int> levels;
    uint64_t chunks = 0;
    const std::string& n = meta["n_chunks"].get_ref<const std::string&>();
    for (char c : n) chunks = c >= '0' && c <= '9' && chunks < (1u << 20) ? chunks * 10 + uint64_t(c - '0') : (1u << 30);
    if (!kvz::parse_level_list(meta["levels"].get<std::string>(), levels)) levels.clear();
    const uint64_t per = kvz::kIndexChunkBytes + kvz::kIndexLevelBytes * uint64_t(levels.size());
    if (!levels.empty() && chunks * per <= t) {
      const uint64_t index = prefix - 8 - chunks * per;
      for (uint64_t c = 0; c < chunks; ++c)
        for (size_t l = 0; l < levels.size(); ++l) {
          uint8_t* e = &f[index + c * per + kvz::kIndexChunkBytes + l * kvz::kIndexLevelBytes];
          const uint64_t off = kvs::get_u64le(e), size = kvs::get_u64le(e + 8);
          if (off <= f.size() && size <= f.size() - off) kvs::put_u64le(e + 16, XXH3_64bits(f.data() + off, size));
        }
    }
  }
  kvs::put_u64le(&f[prefix - 8], XXH3_64bits(f.data(), prefix - 8));
  return f;
}

// What load_kvz promises about a state it returns.
void check_loaded(const State& s, const KvzInfo& info) {
  if (s.tokens != info.meta.tokens || s.positions.size() != s.tokens.size()) __builtin_trap();
  if (s.kv_entries() > 0 && !s.has_kv()) __builtin_trap();
  uint32_t sum = 0;
  for (int l = 0; l < s.arch.n_layer && s.has_kv(); ++l)
    for (const uint16_t* p : {s.k(l), s.v(l)})
      for (size_t i = 0; i < s.kv_elements(); ++i) sum += p[i];  // every value was written (ASan/MSan)
  asm volatile("" : : "r"(sum));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::vector<uint8_t> bytes(data + 1, data + size);
  if (data[0] % 2 == 1) bytes = fix_checksums(std::move(bytes));
  const ByteSource src = memory_source(bytes.data(), bytes.size(), "fuzz.kvz");
  try {
    const KvzInfo info = read_kvz_info(src);
    if (info.file_size != bytes.size()) __builtin_trap();
    for (int level : info.levels) {
      LevelChoice c;
      c.level = level;
      try {
        check_loaded(load_kvz(src, c), info);
        fuzz::note("(none: loaded)");
      } catch (const Error& e) {
        fuzz::note(e.what());
      }
    }
  } catch (const Error& e) {
    fuzz::note(e.what());
  }
  return 0;
}
