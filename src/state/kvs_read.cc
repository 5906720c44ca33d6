// load_state: the .kvs reader (docs/format-kvs.md). Maps the file, checks every byte (header
// structure, metadata checksum, the fixed tensor layout, file size, tensor checksums, zero padding)
// and returns a State whose K/V point into the mapping. Never reads outside the mapping.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <optional>
#include <nlohmann/json.hpp>

#include "kvstash/error.h"
#include "state/check.h"
#include "state/kvs_foreign.h"
#include "state/kvs_format.h"
#include "state/kvs_metadata.h"
#include "state/kvs_read.h"
#include "util/quote.h"

namespace kvstash {

static_assert(std::endian::native == std::endian::little, "kvstash .kvs I/O assumes a little-endian host");

void set_views(State& s, std::shared_ptr<const void> keep, std::vector<const uint16_t*> k,
               std::vector<const uint16_t*> v);

namespace {

using json = nlohmann::json;

bool is_kv_tensor(const std::string& name) { return name.size() > 2 && (name[0] == 'k' || name[0] == 'v') && name[1] == '.'; }

constexpr char kForeignHint[] = "kvstash needs its metadata, tensor order and 64-byte alignment: docs/format-kvs.md";

struct Mapping {
  const uint8_t* data = nullptr;
  size_t size = 0;
  std::shared_ptr<const void> keep;  // unmaps when the last user goes
  std::shared_ptr<const int> fd;     // kept open when asked for (closes when the last user goes)
};

// populate: fault every page in now (the reader hashes them all); otherwise pages are mapped as
// they are read and the file stays open in `fd` for pread.
Mapping map_file(const std::string& path, bool populate) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw Error(errno == ENOENT ? ErrorKind::NotFound : ErrorKind::IOError, path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw Error(ErrorKind::IOError, path + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorKind::InvalidArgument, path + ": not a regular file");
  }
  Mapping m;
  m.size = size_t(st.st_size);
  if (m.size > 0) {
    void* p = ::mmap(nullptr, m.size, PROT_READ, MAP_PRIVATE | (populate ? MAP_POPULATE : 0), fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw Error(ErrorKind::IOError, path + ": cannot map: " + std::strerror(err));
    }
    const size_t size = m.size;
    m.data = static_cast<const uint8_t*>(p);
    m.keep = std::shared_ptr<const void>(p, [size](const void* q) { ::munmap(const_cast<void*>(q), size); });
  }
  if (populate) {
    ::close(fd);
  } else {
    m.fd = std::shared_ptr<const int>(new int(fd), [](const int* f) {
      ::close(*f);
      delete f;
    });
  }
  return m;
}

class Reader {
 public:
  Reader(const std::string& path, const Mapping& m) : path_(path), m_(m) {}
  // deferred: K/V tensors' checksums are handed back there instead of verified, and the keys are
  // left in the file's order, said in *order.
  State read(std::vector<kvs::DeferredChecksum>* deferred = nullptr, KeyOrder* order = nullptr);

 private:
  [[noreturn]] void fail(const std::string& what, ErrorKind kind = ErrorKind::Corruption) const {
    throw Error(kind, path_ + ": " + what);
  }
  uint64_t header_length() const;
  json parse_header(uint64_t n) const;
  std::map<std::string, std::string> metadata(const json& header, uint64_t n) const;
  kvs::MetadataValues values(const std::map<std::string, std::string>& meta) const {
    return kvs::MetadataValues(meta, [this](const std::string& what, ErrorKind kind) { fail(what, kind); });
  }
  // "" when the header holds exactly `slots`, else what differs.
  std::string directory_problem(const json& header, const std::vector<kvs::TensorSlot>& slots) const;

  const std::string& path_;
  const Mapping& m_;
};

uint64_t Reader::header_length() const {
  const uint8_t* b = m_.data;
  if (m_.size == 0) fail("empty file (not a .kvs state)");
  if (m_.size < 8) {
    // A prefix of a plausible header length (below kMaxHeaderBytes = 2^26) is a truncated file.
    bool plausible = m_.size < 4 || b[3] < 4;
    for (size_t i = 4; i < m_.size; ++i) plausible = plausible && b[i] == 0;
    if (plausible) fail("truncated file (" + std::to_string(m_.size) + " bytes, shorter than the 8-byte header length)");
    fail("not a .kvs file (no safetensors header)");
  }
  const uint64_t n = kvs::get_u64le(b);
  if (n < 2 || n > kvs::kMaxHeaderBytes)
    fail("not a .kvs file (no safetensors header: header length " + std::to_string(n) + " is implausible)");
  if (m_.size > 8 && b[8] != '{') fail("not a .kvs file (no safetensors JSON header)");
  if (n > m_.size - 8)
    fail("truncated file (" + std::to_string(m_.size) + " bytes; the header alone needs " +
         std::to_string(8 + n) + ")");
  return n;
}

json Reader::parse_header(uint64_t n) const {
  const char* h = reinterpret_cast<const char*>(m_.data + 8);
  // The JSON object, then only spaces (0x20) up to the end of the header.
  uint64_t end = n;
  while (end > 0 && h[end - 1] == ' ') --end;
  if (end == 0 || h[end - 1] != '}') fail("corrupt header (the JSON object must end in '}' followed only by spaces)");
  struct TooDeep {};
  try {
    return json::parse(h, h + end, [](int depth, json::parse_event_t, json&) {
      if (depth > 4) throw TooDeep{};
      return true;
    });
  } catch (const TooDeep&) {
    fail("corrupt header (JSON nested too deeply)");
  } catch (const json::parse_error& e) {
    // e.byte counts from 1 at the first header byte, which is at file offset 8.
    fail("corrupt header (invalid JSON at byte " + std::to_string(8 + e.byte - (e.byte > 0)) + ")");
  } catch (const json::exception&) {
    fail("corrupt header (invalid JSON)");
  }
}

std::map<std::string, std::string> Reader::metadata(const json& header, uint64_t n) const {
  if (!header.is_object()) fail("not a .kvs file (the safetensors header is not a JSON object)");
  const auto it = header.find("__metadata__");
  const bool has_format = it != header.end() && it->is_object() && it->contains("format");
  if ((!has_format || (*it)["format"] != kvs::kFormatName) && kvs::complete_safetensors(header, n, m_.size)) {
    std::string what = std::string("no __metadata__ 'format': '") + kvs::kFormatName + "'";
    if (has_format) {
      const json& f = (*it)["format"];
      what = "__metadata__ 'format' is " + quote(f.is_string() ? f.get<std::string>() : f.dump(), 64) + ", not '" +
             kvs::kFormatName + "'";
    }
    fail("a safetensors file, but not a kvstash state (" + what + "; " + kForeignHint + ")", ErrorKind::NotSupported);
  }
  if (!has_format) fail("not a .kvs file (a safetensors file without kvstash.state metadata)");
  std::map<std::string, std::string> meta;
  for (const auto& [key, value] : it->items()) {
    if (!value.is_string()) fail("corrupt header (metadata value of " + quote(key, 64) + " is not a string)");
    meta[key] = value.get<std::string>();
  }
  if (meta["format"] != kvs::kFormatName)
    fail("not a .kvs file (format " + quote(meta["format"], 64) + ", expected '" + kvs::kFormatName + "')");
  const std::string& version = meta["format_version"];
  if (version == "1")
    fail("a .kvs file of format version 1, from an older kvstash whose model fingerprint misses values that "
         "change the computation; make it again with kvstash prefill", ErrorKind::NotSupported);
  bool known = false;
  for (int v = kvs::kOldestVersion; v <= kvs::kVersion; ++v) known = known || version == std::to_string(v);
  if (!known)
    fail("unsupported .kvs format version " + (version.empty() ? std::string("(missing)") : quote(version, 64)) +
             " (this kvstash reads " + std::to_string(kvs::kOldestVersion) + " to " + std::to_string(kvs::kVersion) + ")",
         version.empty() ? ErrorKind::Corruption : ErrorKind::NotSupported);
  const auto sum = meta.find(kvs::kMetadataChecksumKey);
  if (sum == meta.end())
    fail(std::string("metadata checksum missing (") + kvs::kMetadataChecksumKey +
         "): the file was not written by kvstash or its metadata was edited (docs/format-kvs.md, \"Checksums\")");
  if (sum->second != kvs::metadata_checksum(meta)) fail("metadata checksum mismatch (header corrupted)");
  return meta;
}

std::string Reader::directory_problem(const json& header, const std::vector<kvs::TensorSlot>& slots) const {
  for (const kvs::TensorSlot& t : slots) {
    const auto it = header.find(t.name);
    if (it == header.end()) return "missing tensor '" + t.name + "'";
    const json& e = *it;
    const bool ok = e.is_object() && e.size() == 3 && e.contains("dtype") && e.contains("shape") &&
                    e.contains("data_offsets") && e["dtype"] == t.dtype && e["shape"] == json(t.shape) &&
                    e["data_offsets"] == json({t.begin, t.end});
    if (!ok)
      return "tensor '" + t.name + "' is " + quote(e.dump(), 64) + ", expected dtype " + t.dtype + " shape " +
             json(t.shape).dump() + " data_offsets [" + std::to_string(t.begin) + "," + std::to_string(t.end) +
             "] (docs/format-kvs.md)";
  }
  if (header.size() != slots.size() + 1)
    for (const auto& [key, value] : header.items()) {
      bool known = key == "__metadata__";
      for (const kvs::TensorSlot& t : slots) known = known || key == t.name;
      if (!known) return "unexpected tensor " + quote(key, 64);
    }
  return "";
}

State Reader::read(std::vector<kvs::DeferredChecksum>* deferred, KeyOrder* order) {
  const uint64_t n = header_length();
  const json header = parse_header(n);
  const std::map<std::string, std::string> meta = metadata(header, n);

  State s;
  const StateArch& a = s.arch;
  // Version 3 adds budgeted states: their book in metadata and three tensors.
  const bool budgeted = meta.at("format_version") != "2" && meta.count(kvs::kBudgetPolicy) > 0;
  KeyOrder key_order = KeyOrder::Gguf;
  const kvs::MetadataValues::Sizes sizes = values(meta).read_state(s, budgeted, &key_order);
  if (order) *order = key_order;
  const int64_t n_tokens = sizes.n_tokens;
  const uint64_t kv_slots = sizes.slots;
  const std::optional<uint64_t> book_slots = budgeted ? std::optional<uint64_t>(kv_slots) : std::nullopt;

  // The payload size (without padding) in 128 bits: garbage dimensions must not overflow.
  const uint64_t logits_len = n_tokens > 0 ? uint64_t(a.n_vocab) : 0;
  const uint64_t lanes = uint64_t(a.n_layer) * uint64_t(a.n_head_kv);  // below 2^32
  const unsigned __int128 at_least = (unsigned __int128)(8 + n) +
      (unsigned __int128)(4 * lanes * uint64_t(a.head_dim)) * kv_slots +
      4 * (logits_len + 2 * uint64_t(n_tokens)) +
      (budgeted ? (unsigned __int128)(8 * lanes) * kv_slots + 8 * lanes : 0);
  if (at_least > m_.size)
    fail("truncated file (" + std::to_string(m_.size) + " bytes; its header describes more than that)");
  const std::vector<kvs::TensorSlot> slots = kvs::tensor_layout(a, uint64_t(n_tokens), logits_len, book_slots);
  const uint64_t data_start = 8 + n, file_size = data_start + slots.back().end;
  const std::string problem = directory_problem(header, slots);
  if (m_.size != file_size || data_start % kvs::kAlign != 0 || !problem.empty()) {
    // A whole safetensors file with kvstash's tensors laid out another way was rewritten by
    // another tool (e.g. safetensors.numpy.save_file): not damage.
    const std::string how = kvs::rearranged(header, slots, data_start);
    if (!how.empty() && kvs::complete_safetensors(header, n, m_.size))
      fail("a safetensors file with kvstash.state metadata and tensors, but not kvstash's layout (" + how +
               "): rewritten by another tool? kvstash reads only its own tensor order, padding and 64-byte alignment: "
           "docs/format-kvs.md", ErrorKind::NotSupported);
  }
  if (m_.size < file_size)
    fail("truncated file (" + std::to_string(m_.size) + " bytes, expected " + std::to_string(file_size) + ")");
  if (m_.size > file_size)
    fail(std::to_string(m_.size - file_size) + " unexpected bytes after the last tensor (expected " +
         std::to_string(file_size) + " bytes)");
  if (data_start % kvs::kAlign != 0) fail("corrupt header (data does not start at a multiple of 64 bytes)");
  if (!problem.empty()) fail(problem);

  const uint8_t* data = m_.data + data_start;
  for (const kvs::TensorSlot& t : slots) {
    const uint8_t* p = data + t.begin;
    const size_t bytes = size_t(t.end - t.begin);
    if (t.padding()) {
      for (size_t i = 0; i < bytes; ++i)
        if (p[i] != 0) fail("nonzero padding in '" + t.name + "' (file corrupted)");
      continue;
    }
    const auto sum = meta.find(kvs::kChecksumPrefix + t.name);
    if (sum == meta.end()) fail("missing checksum for tensor '" + t.name + "'");
    if (deferred && is_kv_tensor(t.name)) {
      deferred->push_back({t.name, sum->second, data_start + t.begin, bytes});
      continue;
    }
    if (sum->second != kvs::hash_hex64(p, bytes)) fail("checksum mismatch in tensor '" + t.name + "' (file corrupted)");
  }

  // Small tensors are decoded; K/V stay in the mapping.
  auto slot = [&](const std::string& name) -> const kvs::TensorSlot& {
    for (const kvs::TensorSlot& t : slots)
      if (t.name == name) return t;
    fail("missing tensor '" + name + "'");
  };
  auto decode32 = [&](const std::string& name, auto& out) {
    const kvs::TensorSlot& t = slot(name);
    out.resize(size_t(t.end - t.begin) / 4);
    for (size_t i = 0; i < out.size(); ++i)
      out[i] = std::bit_cast<typename std::decay_t<decltype(out)>::value_type>(kvs::get_u32le(data + t.begin + 4 * i));
  };
  decode32("tokens", s.tokens);
  decode32("positions", s.positions);
  decode32("logits", s.logits);
  if (budgeted) {  // [n_layer, n_head_kv, slots] into lanes of slots
    EvictionBook& b = *s.book;
    const size_t per_lane = size_t(kv_slots);
    auto lanes32 = [&](const std::string& name, auto& out) {
      const uint8_t* p = data + slot(name).begin;
      out.assign(size_t(lanes), {});
      for (size_t l = 0; l < out.size(); ++l) {
        out[l].resize(per_lane);
        for (size_t i = 0; i < per_lane; ++i)
          out[l][i] = std::bit_cast<typename std::decay_t<decltype(out[l])>::value_type>(
              kvs::get_u32le(p + 4 * (l * per_lane + i)));
      }
    };
    lanes32("book.entry", b.entry);
    lanes32("book.score", b.score);
    const uint8_t* p = data + slot("book.merged").begin;
    b.merged.resize(size_t(lanes));
    for (size_t l = 0; l < b.merged.size(); ++l) b.merged[l] = int64_t(kvs::get_u64le(p + 8 * l));
  }
  std::vector<const uint16_t*> k(size_t(a.n_layer)), v(size_t(a.n_layer));
  for (const kvs::TensorSlot& t : slots)
    if (!t.padding() && is_kv_tensor(t.name))
      (t.name[0] == 'k' ? k : v)[std::stoul(t.name.substr(2))] =
          reinterpret_cast<const uint16_t*>(data + t.begin);
  set_views(s, m_.keep, std::move(k), std::move(v));
  if (key_order == KeyOrder::HuggingFace && !deferred && s.kv_elements() > 0) {  // verified above
    const kvs::KeyBuffer keys = kvs::allocate_keys(s);
    const size_t hd = size_t(a.head_dim);
    for (int l = 0; l < a.n_layer; ++l) kvs::keys_from_hf(s.k(l), keys.layer(l), s.kv_elements() / hd, hd);
    kvs::use_keys(s, keys, m_.keep);
  }
  check_state(s, path_ + ": invalid state", ErrorKind::Corruption);
  return s;
}

}  // namespace

// A friend of State: K/V become views into the mapping, which `keep` holds open.
void set_views(State& s, std::shared_ptr<const void> keep, std::vector<const uint16_t*> k,
               std::vector<const uint16_t*> v) {
  s.storage_ = std::move(keep);
  s.owned_ = false;
  s.k_ = std::move(k);
  s.v_ = std::move(v);
  s.kv_shape_[0] = s.arch.n_layer;
  s.kv_shape_[1] = s.arch.n_head_kv;
  s.kv_shape_[2] = s.kv_entries();
  s.kv_shape_[3] = s.arch.head_dim;
}

State load_state(const std::string& path) {
  const Mapping m = map_file(path, true);
  return Reader(path, m).read();
}

kvs::UnverifiedKv kvs::open_unverified_kv(const std::string& path) {
  const Mapping m = map_file(path, false);
  UnverifiedKv u;
  u.state = Reader(path, m).read(&u.sums, &u.key_order);
  u.fd = m.fd;
  u.mapping = m.keep;
  return u;
}

kvs::KeyBuffer kvs::allocate_keys(const State& s) {
  KeyBuffer b;
  b.stride = (s.kv_elements() + 31) / 32 * 32;  // 64 bytes: every layer starts aligned
  const size_t bytes = std::max<size_t>(b.stride * size_t(std::max(s.arch.n_layer, 0)) * sizeof(uint16_t), 64);
  auto* p = static_cast<uint16_t*>(::operator new(bytes, std::align_val_t(64)));
  b.base = std::shared_ptr<uint16_t>(p, [](uint16_t* q) { ::operator delete(q, std::align_val_t(64)); });
  return b;
}

void kvs::use_keys(State& s, const KeyBuffer& keys, std::shared_ptr<const void> mapping) {
  std::vector<const uint16_t*> k(size_t(s.arch.n_layer)), v(size_t(s.arch.n_layer));
  for (int l = 0; l < s.arch.n_layer; ++l) {
    k[size_t(l)] = keys.layer(l);
    v[size_t(l)] = s.v(l);
  }
  using Both = std::pair<std::shared_ptr<const void>, std::shared_ptr<uint16_t>>;
  auto both = std::make_shared<Both>(std::move(mapping), keys.base);
  set_views(s, std::move(both), std::move(k), std::move(v));
}

}  // namespace kvstash
