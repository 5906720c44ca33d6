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

void StateOutput::commit(const State& s) {
  if (!file_) throw Error(ErrorKind::Internal, path_ + ": state already committed");
  check_state(s, path_ + ": cannot save state", ErrorKind::InvalidArgument);
  const StateArch& a = s.arch;
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
  std::vector<Piece> data;
  for (size_t i = 0; i < slots.size(); ++i) {
    const kvs::TensorSlot& t = slots[i];
    const size_t bytes = size_t(t.end - t.begin);
    const uint8_t* p;
    if (t.padding()) p = zeros;
    else if (t.name == "logits") p = logits.data();
    else if (t.name == "tokens") p = tokens.data();
    else if (t.name == "positions") p = positions.data();
    else if (t.name == "book.entry") p = book_entry.data();
    else if (t.name == "book.score") p = book_score.data();
    else if (t.name == "book.merged") p = book_merged.data();
    else {  // "k.L" or "v.L", in layer order
      const int layer = std::stoi(t.name.substr(2));
      p = reinterpret_cast<const uint8_t*>(t.name[0] == 'k' ? s.k(layer) : s.v(layer));
    }
    data.push_back({p, bytes});
  }

  std::map<std::string, std::string> meta = kvs::state_metadata(s);
  meta["format"] = kvs::kFormatName;
  meta["format_version"] = std::to_string(kvs::kVersion);
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

  file_->write(len, 8);
  file_->write(json.data(), json.size());
  for (const Piece& p : data) file_->write(p.data, p.size);
  file_->commit();
  file_.reset();
}

void save_state(const State& state, const std::string& path) { StateOutput(path).commit(state); }

}  // namespace kvstash
