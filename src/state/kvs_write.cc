// save_state: the .kvs writer (docs/format-kvs.md). Atomic: temp file in the target's directory,
// fsync, rename over the target, fsync the directory.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "kvstash/error.h"
#include "state/check.h"
#include "state/kvs_format.h"

namespace kvstash {

// K/V are written from memory as they are: f16 bit patterns in host order, which must be the
// file's little-endian order (as for GGUF, which kvstash also maps in place).
static_assert(std::endian::native == std::endian::little, "kvstash .kvs I/O assumes a little-endian host");

namespace {

struct Piece {
  const uint8_t* data;
  size_t size;
};

template <class T>
std::vector<uint8_t> encode_le32(const std::vector<T>& values) {
  static_assert(sizeof(T) == 4);
  std::vector<uint8_t> out(values.size() * 4);
  for (size_t i = 0; i < values.size(); ++i) kvs::put_u32le(&out[i * 4], std::bit_cast<uint32_t>(values[i]));
  return out;
}

bool is_hex32(const std::string& s) {
  if (s.size() != 32) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// Writes all pieces to a new temp file and renames it over `path`; removes the temp on failure.
void write_atomically(const std::string& path, const std::vector<Piece>& pieces) {
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(path + ": cannot create temp file " + tmp + ": " + std::strerror(errno));
  auto fail = [&](const char* step) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw Error(path + ": cannot save state (" + step + " " + tmp + "): " + std::strerror(err));
  };
  for (const Piece& p : pieces) {
    for (size_t done = 0; done < p.size;) {
      const ssize_t n = ::write(fd, p.data + done, p.size - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        if (n == 0) errno = EIO;
        fail("writing");
      }
      done += size_t(n);
    }
  }
  if (::fsync(fd) != 0) fail("syncing");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw Error(path + ": cannot save state (closing " + tmp + "): " + std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw Error(path + ": cannot save state (renaming " + tmp + "): " + std::strerror(err));
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || ::fsync(dfd) != 0) {
    const int err = errno;
    if (dfd >= 0) ::close(dfd);
    throw Error(path + ": saved, but cannot sync directory " + dir.string() + ": " + std::strerror(err));
  }
  ::close(dfd);
}

}  // namespace

void save_state(const State& s, const std::string& path) {
  check_state(s, path + ": cannot save state");
  if (!is_hex32(s.model_fingerprint))
    throw Error(path + ": cannot save state: model fingerprint '" + s.model_fingerprint +
                "' is not 32 hex digits");
  const StateArch& a = s.arch;
  const std::vector<uint8_t> logits = encode_le32(s.logits), tokens = encode_le32(s.tokens),
                             positions = encode_le32(s.positions);
  static const uint8_t zeros[kvs::kAlign] = {};

  const std::vector<kvs::TensorSlot> slots = kvs::tensor_layout(a, uint64_t(s.size()), s.logits.size());
  std::vector<Piece> data;
  for (size_t i = 0; i < slots.size(); ++i) {
    const kvs::TensorSlot& t = slots[i];
    const size_t bytes = size_t(t.end - t.begin);
    const uint8_t* p;
    if (t.padding()) p = zeros;
    else if (t.name == "logits") p = logits.data();
    else if (t.name == "tokens") p = tokens.data();
    else if (t.name == "positions") p = positions.data();
    else {  // "k.L" or "v.L", in layer order
      const int layer = std::stoi(t.name.substr(2));
      p = reinterpret_cast<const uint8_t*>(t.name[0] == 'k' ? s.k(layer) : s.v(layer));
    }
    data.push_back({p, bytes});
  }

  std::map<std::string, std::string> meta = {
      {"format", kvs::kFormatName},
      {"format_version", std::to_string(kvs::kVersion)},
      {"model_fingerprint", s.model_fingerprint},
      {"n_tokens", std::to_string(s.size())},
      {"n_layer", std::to_string(a.n_layer)},
      {"n_head", std::to_string(a.n_head)},
      {"n_head_kv", std::to_string(a.n_head_kv)},
      {"head_dim", std::to_string(a.head_dim)},
      {"n_rot", std::to_string(a.n_rot)},
      {"n_vocab", std::to_string(a.n_vocab)},
      {"rope_base", kvs::float_text(a.rope_base)},
      {"rope_linear_scale", kvs::float_text(a.rope_linear_scale)},
      {"cache_dtype", "f16"},
      {"key_order", "gguf"},
  };
  for (size_t i = 0; i < slots.size(); ++i)
    if (!slots[i].padding())
      meta[kvs::kChecksumPrefix + slots[i].name] = kvs::hash_hex64(data[i].data, data[i].size);
  meta[kvs::kMetadataChecksumKey] = kvs::metadata_checksum(meta);

  nlohmann::ordered_json header;
  header["__metadata__"] = nlohmann::ordered_json(meta);
  for (const kvs::TensorSlot& t : slots)
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {t.begin, t.end}}};
  std::string json = header.dump();
  // Pad with spaces so the byte buffer starts at a multiple of kAlign from the file start.
  json.append(size_t((kvs::kAlign - (8 + json.size()) % kvs::kAlign) % kvs::kAlign), ' ');
  uint8_t len[8];
  kvs::put_u64le(len, json.size());

  std::vector<Piece> pieces = {{len, 8}, {reinterpret_cast<const uint8_t*>(json.data()), json.size()}};
  pieces.insert(pieces.end(), data.begin(), data.end());
  write_atomically(path, pieces);
}

}  // namespace kvstash
