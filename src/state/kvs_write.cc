// StateOutput / save_state: the .kvs writer (docs/format-kvs.md), atomic through AtomicFile.
#include <bit>
#include <nlohmann/json.hpp>

#include "kvstash/error.h"
#include "state/check.h"
#include "state/kvs_format.h"
#include "state/kvs_metadata.h"
#include "util/atomic_file.h"

namespace kvstash {

// K/V are written from memory as they are: f16 bit patterns in host order, which must be the
// file's little-endian order (as for GGUF, which kvstash also maps in place).
static_assert(std::endian::native == std::endian::little, "kvstash .kvs I/O assumes a little-endian host");

namespace {

template <class T>
std::vector<uint8_t> encode_le32(const std::vector<T>& values) {
  static_assert(sizeof(T) == 4);
  std::vector<uint8_t> out(values.size() * 4);
  for (size_t i = 0; i < values.size(); ++i) kvs::put_u32le(&out[i * 4], std::bit_cast<uint32_t>(values[i]));
  return out;
}

// The book's per-lane rows, back to back: [lane][slot] as the file's [n_layer, n_head_kv, slots].
template <class T>
std::vector<uint8_t> encode_lanes32(const std::vector<std::vector<T>>& lanes) {
  std::vector<uint8_t> out;
  for (const std::vector<T>& lane : lanes) {
    const std::vector<uint8_t> bytes = encode_le32(lane);
    out.insert(out.end(), bytes.begin(), bytes.end());
  }
  return out;
}

std::vector<uint8_t> encode_le64(const std::vector<int64_t>& values) {
  std::vector<uint8_t> out(values.size() * 8);
  for (size_t i = 0; i < values.size(); ++i) kvs::put_u64le(&out[i * 8], uint64_t(values[i]));
  return out;
}

}  // namespace

StateOutput::StateOutput(const std::string& path) : path_(path), file_(std::make_unique<AtomicFile>(path)) {}

StateOutput::~StateOutput() = default;

void StateOutput::commit(const State& s, const StateSaveOptions& options) {
  if (!file_) throw Error(ErrorKind::Internal, path_ + ": state already committed");
  check_state(s, path_ + ": cannot save state", ErrorKind::InvalidArgument);
  const StateArch& a = s.arch;
  const bool hf = options.key_order == KeyOrder::HuggingFace;
  if (hf && a.head_dim % 2 != 0)
    throw Error(ErrorKind::InvalidArgument, path_ + ": cannot save keys in Hugging Face order with an odd head_dim (" +
                                                std::to_string(a.head_dim) + ")");
  const std::vector<uint8_t> logits = encode_le32(s.logits), tokens = encode_le32(s.tokens),
                             positions = encode_le32(s.positions);
  static const uint8_t zeros[kvs::kAlign] = {};
  std::vector<uint8_t> book_entry, book_score, book_merged;
  if (s.book) {
    book_entry = encode_lanes32(s.book->entry);
    book_score = encode_lanes32(s.book->score);
    book_merged = encode_le64(s.book->merged);
  }

  const std::optional<uint64_t> book_slots =
      s.book ? std::optional<uint64_t>(uint64_t(s.kv_entries())) : std::nullopt;
  const std::vector<kvs::TensorSlot> slots = kvs::tensor_layout(a, uint64_t(s.size()), s.logits.size(), book_slots);
  // Hugging Face-ordered keys are permuted one layer at a time into `scratch`, once to hash and
  // once to write: one layer of extra memory instead of a copy of every K.
  std::vector<uint16_t> scratch;
  auto bytes_of = [&](const kvs::TensorSlot& t) -> const uint8_t* {
    if (t.padding()) return zeros;
    if (t.name == "logits") return logits.data();
    if (t.name == "tokens") return tokens.data();
    if (t.name == "positions") return positions.data();
    if (t.name == "book.entry") return book_entry.data();
    if (t.name == "book.score") return book_score.data();
    if (t.name == "book.merged") return book_merged.data();
    const int layer = std::stoi(t.name.substr(2));  // "k.L" or "v.L"
    if (t.name[0] == 'v') return reinterpret_cast<const uint8_t*>(s.v(layer));
    if (!hf || s.kv_elements() == 0) return reinterpret_cast<const uint8_t*>(s.k(layer));
    scratch.resize(s.kv_elements());
    kvs::keys_to_hf(s.k(layer), scratch.data(), s.kv_elements() / size_t(a.head_dim), size_t(a.head_dim));
    return reinterpret_cast<const uint8_t*>(scratch.data());
  };

  std::map<std::string, std::string> meta = kvs::state_metadata(s, options.key_order);
  meta["format"] = kvs::kFormatName;
  meta["format_version"] = std::to_string(kvs::kVersion);
  for (const kvs::TensorSlot& t : slots)
    if (!t.padding()) meta[kvs::kChecksumPrefix + t.name] = kvs::hash_hex64(bytes_of(t), size_t(t.end - t.begin));
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

  file_->write(len, 8);
  file_->write(json.data(), json.size());
  for (const kvs::TensorSlot& t : slots) file_->write(bytes_of(t), size_t(t.end - t.begin));
  file_->commit();
  file_.reset();
}

void save_state(const State& state, const std::string& path, const StateSaveOptions& options) {
  StateOutput(path).commit(state, options);
}

}  // namespace kvstash
